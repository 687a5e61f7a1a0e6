// Chunk ids: keyed BLAKE3 of the plaintext (32 bytes). Keyed, so equal ids in
// two repositories say nothing about equal content; BLAKE3 because it hashes
// ~6 GB/s per core natively, which keeps the nightly re-hash of unchanged data cheap.
import { Blake3Hasher } from '@napi-rs/blake-hash';

export const ID_BYTES = 32;

export class ChunkHasher {
  constructor(private readonly idKey: Buffer) {}

  hash(data: Buffer): Buffer {
    return Blake3Hasher.newKeyed(this.idKey).update(data).digestBuffer();
  }
}

/** Unkeyed BLAKE3 of a whole stored object (one Buffer, or its parts in order): its storage name. */
export function contentName(data: Buffer | readonly Buffer[]): string {
  const hasher = new Blake3Hasher();
  for (const part of Buffer.isBuffer(data) ? [data] : data) hasher.update(part);
  return hasher.digest('hex');
}
