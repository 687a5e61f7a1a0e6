// Reading `qemu-img map --output=json` of a backup target (qemu-live and
// libvirt-backup incrementals): the ranges the backup job wrote are exactly
// the ranges present in the image, as data or as zero clusters.
import { HypervisorError } from '../errors';
import type { ByteRange } from './provider';

interface MapEntry {
  start: number;
  length: number;
  /** This image (or a backing file) defines the range: data or a zero cluster. Absent before qemu-img 6.1. */
  present?: boolean;
  data?: boolean;
  zero?: boolean;
}

/**
 * The ranges an image opened without a backing file defines itself, ascending
 * and merged: clusters with data AND zero-flagged clusters (a backup job
 * writes a dirty range that reads as zeros as a zero cluster: it changed too).
 * The entries must tile the image from offset 0 without gaps or overlaps.
 */
export function presentRanges(mapJson: string, image: string): ByteRange[] {
  let entries: unknown;
  try {
    entries = JSON.parse(mapJson);
  } catch (err) {
    throw new HypervisorError(`qemu-img map of ${image} printed no JSON`, { cause: err });
  }
  if (!Array.isArray(entries)) throw new HypervisorError(`qemu-img map of ${image} printed no JSON array`);
  const ranges: ByteRange[] = [];
  let expectedStart = 0;
  for (const raw of entries as unknown[]) {
    const e = raw as MapEntry;
    if (typeof e !== 'object' || e === null || !Number.isSafeInteger(e.start) || !Number.isSafeInteger(e.length) || e.length < 0) {
      throw new HypervisorError(`qemu-img map of ${image}: unexpected entry ${JSON.stringify(raw)}`);
    }
    if (typeof e.present !== 'boolean') {
      // Without `present` an unallocated cluster and a zero cluster look alike;
      // guessing could drop a changed range, so refuse.
      throw new HypervisorError(`qemu-img map of ${image} does not report "present": ferry needs qemu-img 6.1 or newer`);
    }
    if (e.start !== expectedStart) {
      throw new HypervisorError(`qemu-img map of ${image}: entries are not contiguous at ${expectedStart} (next starts at ${e.start})`);
    }
    expectedStart = e.start + e.length;
    if (!e.present || e.length === 0) continue;
    const last = ranges[ranges.length - 1];
    if (last && last.end === e.start) last.end = e.start + e.length;
    else ranges.push({ start: e.start, end: e.start + e.length });
  }
  return ranges;
}

export function totalBytes(ranges: readonly ByteRange[]): number {
  return ranges.reduce((sum, r) => sum + (r.end - r.start), 0);
}
