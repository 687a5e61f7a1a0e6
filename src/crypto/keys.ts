// The repository master key and the subkeys derived from it. The master key is
// random, created once at `ferry init`, and only ever stored wrapped in key
// slots; every other key is derived so one 32-byte secret opens everything.
import { Blake3Hasher } from '@napi-rs/blake-hash';
import { randomBytes, KEY_BYTES } from './aead';

export interface RepositoryKeys {
  /** Encrypts blobs and repository objects (XChaCha20-Poly1305). */
  readonly dataKey: Buffer;
  /** Keys the chunk-id hash, so ids reveal nothing without the key. */
  readonly idKey: Buffer;
  /** Seeds the chunker's gear table, so chunk sizes do not fingerprint content across repositories. */
  readonly gearKey: Buffer;
}

export function newMasterKey(): Buffer {
  return randomBytes(KEY_BYTES);
}

export function deriveKeys(master: Buffer): RepositoryKeys {
  return {
    dataKey: Blake3Hasher.deriveKey('ferry 2026-11 repository data encryption', master),
    idKey: Blake3Hasher.deriveKey('ferry 2026-11 chunk id', master),
    gearKey: Blake3Hasher.deriveKey('ferry 2026-11 chunker gear table', master),
  };
}
