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
});
