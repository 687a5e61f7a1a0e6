// The image format a restored disk has on its target, for its config. A
// qcow2 disk backed up as its image file (image mode, a static guest's file)
// comes back as that qcow2 file, and its config must say qcow2 again; a disk
// read through the hypervisor (guest-visible bytes) comes back raw. The spec
// says qcow2 in both cases, so the restored bytes decide: a qcow2 image
// starts with its magic "QFI\xfb".
import { type CommandRunner, runChecked } from '../hypervisor/commandRunner';

const QCOW2_MAGIC_HEX = '514649fb';

/** `raw` or `qcow2`: what the disk at `path` on the host `runner` reaches holds, given the format its spec recorded. */
export async function restoredFormat(runner: CommandRunner, path: string, specFormat: string | undefined): Promise<'raw' | 'qcow2'> {
  if (specFormat !== 'qcow2') return 'raw';
  // od is coreutils: all a remote host needs.
  const r = await runner.run('od', ['-An', '-tx1', '-N4', '--', path]);
  return r.code === 0 && r.stdout.replace(/\s/g, '') === QCOW2_MAGIC_HEX ? 'qcow2' : 'raw';
}

/** Where the qcow2 is built beside a raw partial disk before it takes the partial's place. */
function convertedPath(partial: string): string {
  return `${partial}.qcow2`;
}

export function qcow2ConvertArgs(partial: string): string[] {
  return ['convert', '-q', '-f', 'raw', '-O', 'qcow2', partial, convertedPath(partial)];
}

/**
 * A file disk whose spec says qcow2 but whose restored bytes are the
 * guest-visible ones (read through the hypervisor) becomes a qcow2 file
 * again, on its host, before it gets its final name: qemu-img converts the
 * sparse raw partial (zeros stay unallocated) and the result replaces it. A
 * partial that is qcow2 already (an image file backed up as such, or an
 * earlier run converted it before it was killed) is left alone.
 */
export async function convertToQcow2IfWanted(runner: CommandRunner, partial: string, specFormat: string | undefined): Promise<'converted' | 'as-is'> {
  if (specFormat !== 'qcow2' || (await restoredFormat(runner, partial, specFormat)) === 'qcow2') return 'as-is';
  await runChecked(runner, 'qemu-img', qcow2ConvertArgs(partial));
  await runChecked(runner, 'mv', ['-f', '--', convertedPath(partial), partial]);
  return 'converted';
}
