import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { deriveKeys, newMasterKey } from '../../src/crypto/keys';
import { decodePackHeader, encodePackHeader, PackEntry } from '../../src/repo/packFormat';
import { decodeIndexFile, encodeIndexFile } from '../../src/repo/indexFile';
import { ChunkIndex } from '../../src/repo/chunkIndex';
import { decodeRegionMap, encodeRegionMap } from '../../src/repo/regionMap';
import { SeededRandom } from '../support/files';

const keys = deriveKeys(newMasterKey());

function entries(n: number): PackEntry[] {
  let offset = 0;
  return Array.from({ length: n }, (_, i) => {
    const e = { id: randomBytes(32), typeFlags: i % 2 ? 0x10 : 0x01, offset, storedLength: 1000 + i, rawLength: 4000 + i };
    offset += e.storedLength;
    return e;
  });
}

describe('pack header', () => {
  it('round-trips and checks that it accounts for the whole pack', () => {
    const list = entries(50);
    const body = list.reduce((n, e) => n + e.storedLength, 0);
    const tail = encodePackHeader(keys.dataKey, list);
    expect(decodePackHeader(keys.dataKey, body + tail.length, tail)).toEqual(list);
    expect(decodePackHeader(keys.dataKey, body + tail.length + 1, tail)).toBeUndefined();
  });

  it('rejects a damaged or truncated header', () => {
    const list = entries(3);
    const body = list.reduce((n, e) => n + e.storedLength, 0);
    const tail = encodePackHeader(keys.dataKey, list);
    const bad = Buffer.from(tail);
    bad[10] ^= 0xff;
    expect(decodePackHeader(keys.dataKey, body + tail.length, bad)).toBeUndefined();
    expect(decodePackHeader(keys.dataKey, body + tail.length - 5, tail.subarray(5))).toBeUndefined();
  });
});

describe('index files', () => {
  it('round-trip packs and their blobs', () => {
    const packs = [
      { packId: randomBytes(32).toString('hex'), entries: entries(10) },
      { packId: randomBytes(32).toString('hex'), entries: entries(1) },
    ];
    expect(decodeIndexFile(keys.dataKey, encodeIndexFile(keys.dataKey, packs))).toEqual(packs);
  });

  it('fail authentication when any byte changes', () => {
    const sealed = encodeIndexFile(keys.dataKey, [{ packId: randomBytes(32).toString('hex'), entries: entries(2) }]);
    sealed[sealed.length - 20] ^= 1;
    expect(decodeIndexFile(keys.dataKey, sealed)).toBeUndefined();
  });
});

describe('region maps', () => {
  it('round-trip and reject overlapping or out-of-region entries', () => {
    const list = [
      { offset: 0, length: 100, id: randomBytes(32) },
      { offset: 200, length: 50, id: randomBytes(32) },
    ];
    expect(decodeRegionMap(encodeRegionMap(list), 1024)).toEqual(list);
    expect(decodeRegionMap(encodeRegionMap([...list, { offset: 220, length: 10, id: randomBytes(32) }]), 1024)).toBeUndefined();
    expect(decodeRegionMap(encodeRegionMap(list), 240)).toBeUndefined();
  });
});

describe('in-memory chunk index', () => {
  it('finds every inserted id and no other, across growth', () => {
    const index = new ChunkIndex();
    const ids = Array.from({ length: 50_000 }, () => randomBytes(32));
    ids.forEach((id, i) => index.set(id, { pack: i % 7, offset: i, storedLength: i + 1, rawLength: i + 2, typeFlags: i % 2 }));
    expect(index.size).toBe(ids.length);
    ids.forEach((id, i) => expect(index.get(id)).toEqual({ pack: i % 7, offset: i, storedLength: i + 1, rawLength: i + 2, typeFlags: i % 2 }));
    for (let i = 0; i < 1000; i++) expect(index.has(randomBytes(32))).toBe(false);
  });

  it('overwrites an entry instead of duplicating it', () => {
    const index = new ChunkIndex();
    const id = randomBytes(32);
    expect(index.set(id, { pack: 1, offset: 2, storedLength: 3, rawLength: 4, typeFlags: 0 })).toBe(true);
    expect(index.set(id, { pack: 5, offset: 6, storedLength: 7, rawLength: 8, typeFlags: 0 })).toBe(false);
    expect(index.size).toBe(1);
    expect(index.get(id)?.pack).toBe(5);
  });

  it('deletes entries and still finds every other one (probe runs stay unbroken)', () => {
    const index = new ChunkIndex();
    // Few distinct first bytes and colliding probe starts make long probe runs, where a careless delete would hide later entries.
    const ids = Array.from({ length: 4000 }, (_, i) => {
      const id = randomBytes(32);
      id[0] = i % 3;
      id[1] = i % 5;
      id.fill(0, 2, 5);
      return id;
    });
    ids.forEach((id, i) => index.set(id, { pack: i, offset: 0, storedLength: 1, rawLength: 1, typeFlags: 0 }));
    ids.forEach((id, i) => {
      if (i % 3 === 0) expect(index.delete(id)).toBe(true);
    });
    expect(index.delete(ids[0])).toBe(false);
    expect(index.size).toBe(ids.length - Math.ceil(ids.length / 3));
    ids.forEach((id, i) => expect(index.get(id)?.pack, `id ${i}`).toBe(i % 3 === 0 ? undefined : i));
    let seen = 0;
    index.forEach(() => seen++);
    expect(seen).toBe(index.size);
  });

  it('holds a million chunks in under 72 bytes each at any fill, and in at most 64 once refitted (as after loading)', () => {
    const index = new ChunkIndex();
    const id = Buffer.alloc(32);
    let worst = 0;
    for (let i = 0; i < 1_000_000; i++) {
      randomFill(id, i);
      index.set(id, { pack: 0, offset: i, storedLength: 1, rawLength: 1, typeFlags: 0 });
      if (i > 100_000 && i % 50_000 === 0) worst = Math.max(worst, index.memoryBytes / index.size);
    }
    expect(index.size).toBe(1_000_000);
    expect(worst).toBeLessThan(72);
    index.fit();
    expect(index.memoryBytes / index.size).toBeLessThanOrEqual(64);
    // The refit moved every entry: each is still found, with its own location.
    for (let i = 0; i < 1_000_000; i += 997) {
      randomFill(id, i);
      expect(index.get(id)?.offset, `id ${i}`).toBe(i);
    }
  });
});

/** Cheap distinct pseudo-random ids without a million allocations. */
function randomFill(buf: Buffer, i: number): void {
  new SeededRandom(i + 1).fill(buf);
}
