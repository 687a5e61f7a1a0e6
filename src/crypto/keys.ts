// The repository master key and the subkeys derived from it. The master key is
// random, created once at `ferry init`, and only ever stored wrapped in key
// slots; every other key is derived so one 32-byte secret opens everything.
//
// After `ferry key rotate` a slot wraps a keyring instead: the original master
// key followed by one 32-byte key per rotation. The chunk-id and chunker keys
// always come from the original (so deduplication continues); new objects are
// sealed with the newest data key, and a reader tries every data key.
import { Blake3Hasher } from '@napi-rs/blake-hash';
import { randomBytes, KEY_BYTES } from './aead';

export interface RepositoryKeys {
  /** Encrypts blobs and repository objects (XChaCha20-Poly1305). */
  readonly dataKey: Buffer;
  /** Keys the chunk-id hash, so ids reveal nothing without the key. */
  readonly idKey: Buffer;
  /** Seeds the chunker's gear table, so chunk sizes do not fingerprint content across repositories. */
  readonly gearKey: Buffer;
  /** Every data key an object may be sealed with, newest (dataKey) first. */
  readonly dataKeys: readonly Buffer[];
  /** Keys the region fingerprints kept in restore points, so they reveal nothing about content without the key. */
  readonly fingerprintKey: Buffer;
}

/** One data key, or all of a repository's (tried newest first). */
export type DataKeys = Buffer | readonly Buffer[];

export function eachDataKey(keys: DataKeys): readonly Buffer[] {
  return Buffer.isBuffer(keys) ? [keys] : keys;
}

/** A keyring is 32-byte keys back to back, the original master key first. */
export function isKeyring(bytes: Buffer): boolean {
  return bytes.length >= KEY_BYTES && bytes.length % KEY_BYTES === 0;
}

export function newMasterKey(): Buffer {
  return randomBytes(KEY_BYTES);
}

/** The subkeys of a master key, or of a keyring (see top of file). */
export function deriveKeys(masterOrKeyring: Buffer): RepositoryKeys {
  if (!isKeyring(masterOrKeyring)) throw new Error(`a keyring is whole ${KEY_BYTES}-byte keys, not ${masterOrKeyring.length} bytes`);
  const ring: Buffer[] = [];
  for (let at = 0; at < masterOrKeyring.length; at += KEY_BYTES) ring.push(masterOrKeyring.subarray(at, at + KEY_BYTES));
  const original = ring[0]!;
  const dataKeys = ring.map((k) => Blake3Hasher.deriveKey('ferry 2026-11 repository data encryption', k)).reverse();
  return {
    dataKey: dataKeys[0]!,
    idKey: Blake3Hasher.deriveKey('ferry 2026-11 chunk id', original),
    gearKey: Blake3Hasher.deriveKey('ferry 2026-11 chunker gear table', original),
    dataKeys,
    fingerprintKey: Blake3Hasher.deriveKey('ferry 2026-12 region fingerprint', original),
  };
}
