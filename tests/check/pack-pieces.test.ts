// check --read-data reads a pack in pieces: they cover it in order, never cut a blob, and stay
// within the piece size wherever the blobs allow.
import { describe, expect, it } from 'vitest';
import { BlobSpan, packPieces } from '../../src/check/packPieces';
import { SeededRandom } from '../support';

const MiB = 1024 * 1024;

function expectWellFormed(size: number, blobs: BlobSpan[], pieceBytes: number) {
  const pieces = packPieces(size, blobs, pieceBytes);
  expect(pieces[0].start).toBe(0);
  expect(pieces[pieces.length - 1].end).toBe(size);
  for (let i = 1; i < pieces.length; i++) expect(pieces[i].start).toBe(pieces[i - 1].end);
  const placed = pieces.flatMap((p) => p.blobs).sort((a, b) => a - b);
  expect(placed).toEqual([...blobs.keys()]);
  for (const p of pieces) {
    for (const i of p.blobs) {
      expect(blobs[i].offset).toBeGreaterThanOrEqual(p.start);
      expect(blobs[i].offset + blobs[i].storedLength).toBeLessThanOrEqual(p.end);
    }
  }
  return pieces;
}

describe('packPieces', () => {
  it('cuts a 16 MiB pack of 1 MiB blobs and its header into 4 MiB pieces', () => {
    const blobs = Array.from({ length: 16 }, (_, i) => ({ offset: i * MiB, storedLength: MiB - 100 }));
    const pieces = expectWellFormed(16 * MiB + 5000, blobs, 4 * MiB);
    // The header (and the 100 bytes each blob leaves) would not fit the fourth piece: it is a piece of its own.
    expect(pieces.map((p) => p.blobs.length)).toEqual([4, 4, 4, 4, 0]);
    expect(pieces.every((p) => p.end - p.start <= 4 * MiB)).toBe(true);
    expect(pieces[4].start).toBe(16 * MiB - 100);
  });

  it('gives a blob larger than a piece a piece of its own', () => {
    const blobs = [{ offset: 0, storedLength: MiB }, { offset: MiB, storedLength: 9 * MiB }, { offset: 10 * MiB, storedLength: MiB }];
    const pieces = expectWellFormed(11 * MiB + 300, blobs, 4 * MiB);
    expect(pieces.map((p) => p.blobs)).toEqual([[0], [1], [2]]);
  });

  it('keeps overlapping entries (an index and a header that disagree) in one piece', () => {
    const blobs = [{ offset: 0, storedLength: 3 * MiB }, { offset: 2 * MiB, storedLength: 3 * MiB }, { offset: 6 * MiB, storedLength: MiB }];
    const pieces = expectWellFormed(8 * MiB, blobs, 4 * MiB);
    expect(pieces[0].blobs).toEqual([0, 1]);
  });

  it('cuts a pack with no blob to verify into pieces of the piece size', () => {
    const pieces = expectWellFormed(10 * MiB, [], 4 * MiB);
    expect(pieces.map((p) => p.end - p.start)).toEqual([4 * MiB, 4 * MiB, 2 * MiB]);
  });

  it('is well formed on random packs', () => {
    const rng = new SeededRandom(7);
    for (let round = 0; round < 200; round++) {
      const blobs: BlobSpan[] = [];
      let at = rng.int(1000);
      while (blobs.length < 1 + rng.int(40)) {
        const length = 1 + rng.int(2 * MiB);
        blobs.push({ offset: at, storedLength: length });
        at += rng.int(10) === 0 ? -Math.min(at, rng.int(length)) + length : length + rng.int(3000);
      }
      const end = Math.max(...blobs.map((b) => b.offset + b.storedLength));
      expectWellFormed(end + rng.int(70_000), blobs, 1 + rng.int(4 * MiB));
    }
  });
});
