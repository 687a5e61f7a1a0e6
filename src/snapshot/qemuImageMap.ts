// Reading `qemu-img map --output=json` of an incremental backup target: the
// ranges the backup job wrote are exactly the ranges present in the image.
import { HypervisorError } from '../errors';

export interface ByteRange {
  start: number;
  end: number;
}

interface MapEntry {
  start: number;
  length: number;
  /** This image (or a backing file) defines the range: data or a zero cluster. Absent before QEMU 6.2. */
  present?: boolean;
  data: boolean;
  zero: boolean;
}

/**
 * The ranges an image without a backing file defines itself, ascending and
 * merged: clusters with data AND zero-flagged clusters (a backup job writes a
 * dirty range that reads as zeros as a zero cluster: it changed too).
 */
export function presentRanges(mapJson: string, image: string): ByteRange[] {
  let entries: MapEntry[];
  try {
    entries = JSON.parse(mapJson) as MapEntry[];
  } catch (err) {
    throw new HypervisorError(`qemu-img map of ${image} printed no JSON`, { cause: err });
  }
  if (!Array.isArray(entries)) throw new HypervisorError(`qemu-img map of ${image} printed no JSON array`);
  const ranges: ByteRange[] = [];
  for (const e of entries) {
    if (typeof e.start !== 'number' || typeof e.length !== 'number') {
      throw new HypervisorError(`qemu-img map of ${image}: entry without start/length: ${JSON.stringify(e)}`);
    }
    if (e.present === undefined) {
      // Without `present` an unallocated cluster and a zero cluster look alike;
      // guessing could drop a changed range, so refuse.
      throw new HypervisorError(`qemu-img map of ${image} does not report "present": ferry needs qemu-img 6.2 or newer`);
    }
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
