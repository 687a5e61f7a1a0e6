// The region fingerprint (docs/FORMAT.md, "Region fingerprints"): keyed
// BLAKE3 of the region's length, data extents and their bytes, the same
// however the bytes are read, and no fingerprint at all when a read left
// data out.
import { Blake3Hasher } from '@napi-rs/blake-hash';
import { describe, expect, it } from 'vitest';
import { RegionFingerprinter } from '../../src/dedupe/regionFingerprint';
import { deriveKeys, newMasterKey } from '../../src/crypto/keys';
import { Span } from '../../src/dedupe/spans';
import { pseudoRandomBytes } from '../support/files';

const LENGTH = 1024 * 1024;
const key = deriveKeys(newMasterKey()).fingerprintKey;
const region = pseudoRandomBytes(7, 0, LENGTH);
const extents: Span[] = [{ start: 0, end: 300_000 }, { start: 500_000, end: 700_000 }, { start: 900_000, end: LENGTH }];

/** Feed `bytes` as reads of [from, to), each handing over the region's bytes there. */
function fingerprint(bytes: Buffer, reads: Span[], opts: { key?: Buffer; extents?: Span[]; length?: number } = {}): string | undefined {
  const f = new RegionFingerprinter(opts.key ?? key, opts.length ?? LENGTH, opts.extents ?? extents);
  for (const r of reads) f.feed(r.start, r.end, bytes.subarray(r.start, r.end));
  return f.digest()?.toString('hex');
}

/** Reads of `size` bytes from 0 to the end. */
function windows(size: number): Span[] {
  const out: Span[] = [];
  for (let at = 0; at < LENGTH; at += size) out.push({ start: at, end: Math.min(LENGTH, at + size) });
  return out;
}

describe('a region fingerprint', () => {
  const whole = fingerprint(region, [{ start: 0, end: LENGTH }])!;

  it('is the same whether the region is read whole, in windows, overlapping, or with its holes skipped', () => {
    expect(whole).toMatch(/^[0-9a-f]{64}$/);
    expect(fingerprint(region, windows(4096))).toBe(whole);
    expect(fingerprint(region, windows(3 * 65536 + 4096))).toBe(whole);
    expect(fingerprint(region, [{ start: 0, end: 400_000 }, { start: 200_000, end: 600_000 }, { start: 550_000, end: LENGTH }])).toBe(whole);
    expect(fingerprint(region, [{ start: 0, end: 300_000 }, { start: 500_000, end: 700_000 }, { start: 900_000, end: LENGTH }])).toBe(whole);
  });

  it('ignores the bytes of holes (they are zeros on any read) but not the extents that say where the holes are', () => {
    const otherHoleBytes = Buffer.from(region);
    otherHoleBytes.fill(0, 300_000, 500_000);
    expect(fingerprint(otherHoleBytes, windows(65536))).toBe(whole);
    expect(fingerprint(region, windows(65536), { extents: [{ start: 0, end: 300_000 }, { start: 500_000, end: LENGTH }] })).not.toBe(whole);
    expect(fingerprint(region, windows(65536), { length: LENGTH + 4096 })).not.toBe(whole);
  });

  it('changes with any data byte', () => {
    for (const at of [0, 299_999, 500_000, 654_321, LENGTH - 1]) {
      const changed = Buffer.from(region);
      changed[at] ^= 1;
      expect(fingerprint(changed, windows(65536)), `byte ${at}`).not.toBe(whole);
    }
  });

  it('is keyed: another repository\'s key, or no key, gives another value', () => {
    expect(fingerprint(region, windows(65536), { key: deriveKeys(newMasterKey()).fingerprintKey })).not.toBe(whole);
    const plain = new Blake3Hasher();
    for (const e of extents) plain.update(region.subarray(e.start, e.end));
    expect(plain.digest('hex')).not.toBe(whole);
    const keys = deriveKeys(newMasterKey());
    expect([keys.idKey, keys.gearKey, keys.dataKey].some((k) => k.equals(keys.fingerprintKey))).toBe(false);
  });

  it('is not taken when a read skipped data: no fingerprint rather than a wrong one', () => {
    expect(fingerprint(region, [{ start: 0, end: 300_000 }, { start: 600_000, end: LENGTH }])).toBeUndefined();
    expect(fingerprint(region, [{ start: 0, end: 800_000 }])).toBeUndefined();
  });

  it('is its own while others are taken at the same time, also after one that was left incomplete', () => {
    const a = new RegionFingerprinter(key, LENGTH, extents);
    const b = new RegionFingerprinter(key, LENGTH, extents);
    const skipped = new RegionFingerprinter(key, LENGTH, extents);
    skipped.feed(600_000, LENGTH, region.subarray(600_000));
    expect(skipped.digest()).toBeUndefined();
    const changed = Buffer.from(region);
    changed[0] ^= 1;
    for (const w of windows(65536)) {
      a.feed(w.start, w.end, region.subarray(w.start, w.end));
      b.feed(w.start, w.end, changed.subarray(w.start, w.end));
    }
    expect(a.digest()!.toString('hex')).toBe(whole);
    expect(b.digest()!.toString('hex')).toBe(fingerprint(changed, windows(65536)));
    expect(fingerprint(region, windows(4096))).toBe(whole);
  });

  it('is taken once: its hasher goes back for the next region, so a second digest or a later feed is a bug', () => {
    const f = new RegionFingerprinter(key, LENGTH, extents);
    f.feed(0, LENGTH, region);
    f.digest();
    expect(() => f.digest()).toThrow(/twice/);
    expect(() => f.feed(0, LENGTH, region)).toThrow(/after digest/);
  });

  it('one per region of a 512 GiB disk does not pile up native memory (a fresh native hasher each kept ~3 KiB: +48 MiB)', () => {
    const small: Span[] = [{ start: 0, end: 4096 }];
    const page = region.subarray(0, 4096);
    const before = process.memoryUsage().rss;
    for (let r = 0; r < 16384; r++) {
      const f = new RegionFingerprinter(key, 32 * 1024 * 1024, small);
      f.feed(0, 4096, page);
      f.digest();
    }
    expect(process.memoryUsage().rss - before).toBeLessThan(16 * 1024 * 1024);
  });
});
