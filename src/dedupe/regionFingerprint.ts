// A region's fingerprint: keyed BLAKE3 of its length, its data extents and
// their bytes (docs/FORMAT.md, "Region fingerprints"). Kept beside the region
// map in the restore point, it lets the next backup that finds the same
// fingerprint for the same region reuse that map instead of cutting and
// hashing the region again. Keyed, so a fingerprint says nothing about the
// content to anyone without the repository's keys.
import type { Blake3Hasher } from '@napi-rs/blake-hash';
import { giveBackHasher, takeHasher } from '../crypto/chunkId';
import { Span, clipSpans, mergeSpans } from './spans';

export const FINGERPRINT_BYTES = 32;

/**
 * Fed a region's bytes as they are read, in ascending order, it hashes the
 * bytes of the data extents once each. Bytes fed again (an overlapping read)
 * are not hashed twice; data left out (a read that skipped part of an extent)
 * leaves no fingerprint rather than a wrong one.
 */
export class RegionFingerprinter {
  private readonly hasher: Blake3Hasher;
  private readonly extents: Span[];
  /** Region offset up to which the data has been hashed. */
  private hashedTo = 0;
  private skippedData = false;
  private digested = false;

  /** `extents`: the region's data extents, relative to its start. */
  constructor(
    private readonly key: Buffer,
    regionLength: number,
    extents: Span[],
  ) {
    this.extents = mergeSpans(extents);
    const header = Buffer.alloc(16 + 16 * this.extents.length);
    header.writeBigUInt64LE(BigInt(regionLength), 0);
    header.writeBigUInt64LE(BigInt(this.extents.length), 8);
    this.extents.forEach((e, i) => {
      header.writeBigUInt64LE(BigInt(e.start), 16 + 16 * i);
      header.writeBigUInt64LE(BigInt(e.end), 24 + 16 * i);
    });
    this.hasher = takeHasher(key).update(header);
  }

  /** Region bytes [from, to) as read; `bytes[0]` is region byte `from`. Holes in between need not be fed. */
  feed(from: number, to: number, bytes: Uint8Array): void {
    if (this.digested) throw new Error('RegionFingerprinter fed after digest: its hasher was given back');
    if (this.skippedData) return;
    if (from > this.hashedTo && clipSpans(this.extents, this.hashedTo, from).length > 0) {
      this.skippedData = true;
      return;
    }
    const start = Math.max(from, this.hashedTo);
    if (start >= to) return;
    for (const e of clipSpans(this.extents, start, to)) {
      this.hasher.update(Buffer.from(bytes.buffer, bytes.byteOffset + start - from + e.start, e.end - e.start));
    }
    this.hashedTo = to;
  }

  /** The fingerprint, or undefined if not every data byte was fed. Called once: the hasher is given back. */
  digest(): Buffer | undefined {
    if (this.digested) throw new Error('RegionFingerprinter.digest called twice: its hasher was given back');
    this.digested = true;
    const dataEnd = this.extents.length > 0 ? this.extents[this.extents.length - 1].end : 0;
    const complete = !this.skippedData && this.hashedTo >= dataEnd;
    const fingerprint = complete ? this.hasher.digestBuffer() : undefined;
    giveBackHasher(this.hasher, this.key);
    return fingerprint;
  }
}
