// The image format a restored disk has on its target, for its config. A
// qcow2 disk backed up as its image file (image mode, a static guest's file)
// comes back as that qcow2 file, and its config must say qcow2 again; a disk
// read through the hypervisor (guest-visible bytes) comes back raw. The spec
// says qcow2 in both cases, so the restored bytes decide: a qcow2 image
// starts with its magic "QFI\xfb".
import type { CommandRunner } from '../hypervisor/commandRunner';

const QCOW2_MAGIC_HEX = '514649fb';

/** `raw` or `qcow2`: what the disk at `path` on the host `runner` reaches holds, given the format its spec recorded. */
export async function restoredFormat(runner: CommandRunner, path: string, specFormat: string | undefined): Promise<'raw' | 'qcow2'> {
  if (specFormat !== 'qcow2') return 'raw';
  // od is coreutils: all a remote host needs.
  const r = await runner.run('od', ['-An', '-tx1', '-N4', '--', path]);
  return r.code === 0 && r.stdout.replace(/\s/g, '') === QCOW2_MAGIC_HEX ? 'qcow2' : 'raw';
}
