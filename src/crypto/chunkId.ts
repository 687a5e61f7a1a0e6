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

/**
 * Hashers not in use, by key ('' unkeyed). A native hasher (~3 KiB outside
 * V8's heap) is not given back to the system when its JS object is
 * collected: 16384 fresh ones, one per region of a 512 GiB disk, kept 48 MiB
 * after full collections (napi-rs blake-hash 1.3.4), and a backup of such a
 * sparse disk grew by as much per worker. So hashers are taken and given
 * back, and a thread makes only as many as it uses at once.
 */
const idleHashers = new Map<string, Blake3Hasher[]>();

/** A hasher in its initial state, keyed with `key` (32 bytes) or unkeyed; give it back when done. */
export function takeHasher(key?: Buffer): Blake3Hasher {
  const idle = idleHashers.get(key ? key.toString('hex') : '');
  const reused = idle?.pop();
  if (reused) return reused.reset(), reused;
  return key ? Blake3Hasher.newKeyed(key) : new Blake3Hasher();
}

/** A hasher `takeHasher(key)` gave, no longer used by its taker. */
export function giveBackHasher(hasher: Blake3Hasher, key?: Buffer): void {
  const name = key ? key.toString('hex') : '';
  const idle = idleHashers.get(name) ?? [];
  idle.push(hasher);
  idleHashers.set(name, idle);
}

/** Unkeyed BLAKE3 of a whole stored object (one Buffer, or its parts in order): its storage name. */
export function contentName(data: Buffer | readonly Buffer[]): string {
  const hasher = takeHasher();
  for (const part of Buffer.isBuffer(data) ? [data] : data) hasher.update(part);
  const name = hasher.digest('hex');
  giveBackHasher(hasher);
  return name;
}

/** contentName of an object that arrives in pieces, fed in order. */
export class ContentNameHasher {
  private readonly hasher = takeHasher();
  private digested = false;

  update(piece: Uint8Array): void {
    if (this.digested) throw new Error('ContentNameHasher fed after digest: its hasher was given back');
    this.hasher.update(Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength));
  }

  /** The name; the hasher is given back, so nothing is fed after this. */
  digest(): string {
    if (this.digested) throw new Error('ContentNameHasher.digest called twice: its hasher was given back');
    this.digested = true;
    const name = this.hasher.digest('hex');
    giveBackHasher(this.hasher);
    return name;
  }
}
