// qemu-img on the qcow2 targets of a libvirt push backup. An incremental
// target holds only the clusters the backup copied (the dirty ones); libvirt
// gives it the live disk as backing file, so it must be opened with
// `backing: null`, or reads and the allocation map would fall through to the
// running guest's disk. Each copied cluster is allocated in the target, as
// data or as a zero cluster (a dirty cluster that now reads as zeros):
// `qemu-img map` reports both with `present: true`, and only those.
import { HypervisorError } from '../errors';
import { type CommandRunner, runChecked } from '../hypervisor/commandRunner';

export interface ByteRange {
  start: number;
  end: number;
}

/** `json:` pseudo-filename that opens a qcow2 file alone, ignoring its backing file. */
export function qcow2WithoutBacking(path: string): string {
  return `json:${JSON.stringify({ driver: 'qcow2', backing: null, file: { driver: 'file', filename: path } })}`;
}

export function qemuImgMapArgs(qcow2Path: string): string[] {
  return ['map', '--output=json', qcow2WithoutBacking(qcow2Path)];
}

export function qemuImgConvertArgs(qcow2Path: string, rawPath: string): string[] {
  // convert writes the raw file sparse (-S 4k is its default): holes stay holes.
  return ['convert', '-q', '-O', 'raw', qcow2WithoutBacking(qcow2Path), rawPath];
}

interface MapEntry {
  start: number;
  length: number;
  present?: boolean;
  zero?: boolean;
  data?: boolean;
}

/**
 * The byte ranges allocated in the image itself (data or zero clusters), merged
 * and ascending, from `qemu-img map --output=json`.
 */
export function allocatedRanges(mapJson: string, what: string): ByteRange[] {
  let entries: unknown;
  try {
    entries = JSON.parse(mapJson);
  } catch (err) {
    throw new HypervisorError(`${what}: qemu-img map printed no JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(entries)) throw new HypervisorError(`${what}: qemu-img map printed ${typeof entries}, expected an array`);
  const ranges: ByteRange[] = [];
  let expectedStart = 0;
  for (const raw of entries as unknown[]) {
    const e = raw as MapEntry;
    if (typeof e !== 'object' || e === null || !Number.isSafeInteger(e.start) || !Number.isSafeInteger(e.length) || e.length < 0) {
      throw new HypervisorError(`${what}: unexpected qemu-img map entry ${JSON.stringify(raw)}`);
    }
    if (typeof e.present !== 'boolean') {
      // Without `present` (qemu-img before 6.0) an unallocated cluster and a
      // zero cluster look alike; guessing could drop a zeroed range.
      throw new HypervisorError(`${what}: qemu-img map gives no "present" field (qemu-img too old): cannot tell which clusters the backup copied`);
    }
    if (e.start !== expectedStart) {
      throw new HypervisorError(`${what}: qemu-img map entries are not contiguous at ${expectedStart} (next starts at ${e.start})`);
    }
    expectedStart = e.start + e.length;
    if (!e.present || e.length === 0) continue;
    const last = ranges[ranges.length - 1];
    if (last && last.end === e.start) last.end += e.length;
    else ranges.push({ start: e.start, end: e.start + e.length });
  }
  return ranges;
}

/** Allocated ranges of a qcow2 image, read without its backing file. */
export async function mapQcow2(runner: CommandRunner, qemuImg: string, qcow2Path: string): Promise<ByteRange[]> {
  const { stdout } = await runChecked(runner, qemuImg, qemuImgMapArgs(qcow2Path));
  return allocatedRanges(stdout, `qemu-img map ${qcow2Path}`);
}

/** Writes the qcow2 image (without its backing file) as a sparse raw file. */
export async function convertToRaw(runner: CommandRunner, qemuImg: string, qcow2Path: string, rawPath: string): Promise<void> {
  await runChecked(runner, qemuImg, qemuImgConvertArgs(qcow2Path, rawPath));
}
