// qemu-img on the qcow2 targets of a libvirt push backup. An incremental
// target holds only the clusters the backup copied (the dirty ones); libvirt
// gives it the live disk as backing file, so it must be opened with
// `backing: null`, or reads and the allocation map would fall through to the
// running guest's disk. Each copied cluster is allocated in the target, as
// data or as a zero cluster (a dirty cluster that now reads as zeros):
// `qemu-img map` reports both with `present: true`, and only those.
import { type CommandRunner, runChecked } from '../hypervisor/commandRunner';
import type { ByteRange } from './provider';
import { presentRanges } from './qemuImageMap';

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

/** Allocated ranges of a qcow2 image, read without its backing file. */
export async function mapQcow2(runner: CommandRunner, qemuImg: string, qcow2Path: string): Promise<ByteRange[]> {
  const { stdout } = await runChecked(runner, qemuImg, qemuImgMapArgs(qcow2Path));
  return presentRanges(stdout, qcow2Path);
}

/** Writes the qcow2 image (without its backing file) as a sparse raw file. */
export async function convertToRaw(runner: CommandRunner, qemuImg: string, qcow2Path: string, rawPath: string): Promise<void> {
  await runChecked(runner, qemuImg, qemuImgConvertArgs(qcow2Path, rawPath));
}
