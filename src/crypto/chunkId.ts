// Chunk ids: keyed BLAKE3 of the plaintext (32 bytes). Keyed, so equal ids in
// two repositories say nothing about equal content; BLAKE3 because it hashes
// ~6 GB/s per core natively, which keeps the nightly re-hash of unchanged data cheap.
import { Blake3Hasher } from '@napi-rs/blake-hash';

export const ID_BYTES = 32;

export class ChunkHasher {
  // One keyed hasher, reset per chunk: a fresh native hasher per chunk (~2.5 KiB that V8 does not see)
  // piled up until a full GC, 250 MiB per 100,000 chunks (check --read-data of a repository with page patches).
  private readonly hasher: Blake3Hasher;

  constructor(idKey: Buffer) {
    this.hasher = Blake3Hasher.newKeyed(idKey);
  }

  hash(data: Buffer): Buffer {
    this.hasher.reset();
    return this.hasher.update(data).digestBuffer();
  }
}

/** Unkeyed BLAKE3 of a whole stored object (one Buffer, or its parts in order): its storage name. */
export function contentName(data: Buffer | readonly Buffer[]): string {
  const hasher = new Blake3Hasher();
  for (const part of Buffer.isBuffer(data) ? [data] : data) hasher.update(part);
  return hasher.digest('hex');
}

/** contentName of an object that arrives in pieces, fed in order. */
export class ContentNameHasher {
  private readonly hasher = new Blake3Hasher();

  update(piece: Uint8Array): void {
    this.hasher.update(Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength));
  }

  digest(): string {
    return this.hasher.digest('hex');
  }
}
