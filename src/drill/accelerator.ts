// KVM or TCG for a drill: decided by trying, because an existing /dev/kvm
// proves nothing (nested or restricted virtualisation can open it and still
// fail at the first vCPU reset). A 64 KiB firmware whose reset vector writes
// to QEMU's isa-debug-exit port makes QEMU exit with a known code only when a
// vCPU really ran under KVM with the CPU model the drill uses.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CommandRunner } from '../hypervisor/commandRunner';

export type Accelerator = 'kvm' | 'tcg';

const EXIT_PORT = 0xf4;
const EXIT_VALUE = 0x2a;
/** isa-debug-exit exits with (value << 1) | 1. */
const PROBE_EXIT_CODE = (EXIT_VALUE << 1) | 1;

export interface AcceleratorChoice {
  accel: Accelerator;
  /** Why, for the report: what the probe saw. */
  why: string;
}

export async function chooseAccelerator(runner: CommandRunner, options: { qemuBinary: string; workDir: string }): Promise<AcceleratorChoice> {
  if (!fs.existsSync('/dev/kvm')) return { accel: 'tcg', why: 'no /dev/kvm' };
  const firmware = path.join(options.workDir, 'kvm-probe.bin');
  const rom = Buffer.alloc(64 * 1024);
  // At the reset vector (top 16 bytes): mov al, 0x2a; out 0xf4, al; hlt.
  Buffer.from([0xb0, EXIT_VALUE, 0xe6, EXIT_PORT, 0xf4]).copy(rom, rom.length - 16);
  fs.writeFileSync(firmware, rom);
  try {
    let r;
    try {
      r = await runner.run(options.qemuBinary, [
        '-accel', 'kvm', '-cpu', 'host', '-M', 'pc', '-m', '16', '-nodefaults', '-display', 'none', '-monitor', 'none', '-serial', 'none',
        '-bios', firmware, '-device', `isa-debug-exit,iobase=${EXIT_PORT},iosize=1`,
      ], { timeoutMs: 30_000 });
    } catch (err) {
      // Hung or not runnable: TCG is what remains, and the report says why.
      return { accel: 'tcg', why: `the KVM probe failed: ${(err as Error).message}` };
    }
    if (r.code === PROBE_EXIT_CODE) return { accel: 'kvm', why: 'a KVM vCPU ran the probe' };
    const said = r.stderr.trim().split('\n').pop()?.trim();
    return { accel: 'tcg', why: `/dev/kvm exists but a KVM vCPU did not run (QEMU exited with ${r.code}${said ? `: ${said}` : ''})` };
  } finally {
    fs.rmSync(firmware, { force: true });
  }
}
