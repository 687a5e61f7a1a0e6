// Reading `qemu-img map --output=json` of an incremental copy: which ranges
// the copy job wrote. Input shaped as qemu-img 7.2 prints it.
import { describe, expect, it } from 'vitest';
import { HypervisorError } from '../../src/errors';
import { presentRanges, totalBytes } from '../../src/snapshot/qemuImageMap';

const K = 1024;
const entry = (start: number, length: number, present: boolean, data: boolean, zero: boolean) =>
  ({ start, length, depth: 0, present, zero, data, ...(data ? { offset: 327680 + start } : {}) });

describe('presentRanges', () => {
  it('keeps data and zero-flagged clusters, drops unallocated ones, merges neighbours', () => {
    const map = JSON.stringify([
      entry(0, 64 * K, false, false, true), // never written: not changed
      entry(64 * K, 64 * K, true, true, false), // data
      entry(128 * K, 64 * K, true, false, true), // written as zeros: changed too
      entry(192 * K, 128 * K, false, false, true),
      entry(320 * K, 64 * K, true, true, false),
    ]);
    const ranges = presentRanges(map, 'inc.qcow2');
    expect(ranges).toEqual([{ start: 64 * K, end: 192 * K }, { start: 320 * K, end: 384 * K }]);
    expect(totalBytes(ranges)).toBe(192 * K);
  });

  it('gives no ranges for an image nothing was written to', () => {
    expect(presentRanges(JSON.stringify([entry(0, 256 * K * K, false, false, true)]), 'inc.qcow2')).toEqual([]);
  });

  it('refuses output without "present" (qemu-img before 6.1): a zero cluster and a hole would look alike', () => {
    const old = JSON.stringify([{ start: 0, length: 65536, depth: 0, zero: true, data: false }]);
    expect(() => presentRanges(old, 'inc.qcow2')).toThrow(HypervisorError);
    expect(() => presentRanges(old, 'inc.qcow2')).toThrow(/does not report "present": ferry needs qemu-img 6.1 or newer/);
  });

  it('says which image when the output is not a JSON array', () => {
    expect(() => presentRanges('qemu-img: Could not open', '/w/ferry-r1-0-vda.qcow2')).toThrow(/qemu-img map of \/w\/ferry-r1-0-vda\.qcow2 printed no JSON/);
    expect(() => presentRanges('{}', 'x.qcow2')).toThrow(/printed no JSON array/);
  });
});
