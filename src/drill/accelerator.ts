// KVM or TCG for a drill: decided by trying, because an existing /dev/kvm
// proves nothing (nested or restricted virtualisation can open it and still
// fail at the first vCPU reset, or later). A 64 KiB firmware that switches to
// protected mode, returns through an `iret` and then writes to QEMU's
// isa-debug-exit port makes QEMU exit with a known code only when a vCPU
// really ran it under KVM with the CPU model the drill uses. A firmware that
// only wrote to the port at the reset vector passed on the 3 December test
// machine (nested KVM under a Firecracker VM), where every real guest then
// hung or stopped with "KVM internal error" at its first protected-mode
// `iret`; this one hangs there too, and the drill uses TCG.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CommandRunner } from '../hypervisor/commandRunner';

export type Accelerator = 'kvm' | 'tcg';

const EXIT_PORT = 0xf4;
const EXIT_VALUE = 0x2a;

/**
 * At the ROM's start (linear 0xF0000), assembled from:
 *   .code16: cli; lgdtl %cs:gdtr; cr0 |= PE; ljmpl $0x08, $pm32
 *   .code32: pm32: ds = es = ss = 0x10; esp = 0x7000; pushfl; pushl $0x08; pushl $after; iretl
 *            after: movb $0x2a, %al; outb %al, $0xf4; hlt
 *   gdt (at 0x38): null, flat 32-bit code (0x08), flat data (0x10); gdtr (at 0x50): limit 23, base 0xF0038
 */
const PROTECTED_MODE_PROBE = Buffer.from(
  'fa2e660f011650000f20c00c010f22c066ea18000f00080066b810008ed88ec08ed0bc007000009c6a086830000f00cfb02ae6f4f48d7400' +
  '0000000000000000ffff0000009acf00ffff00000092cf00170038000f00',
  'hex',
);
/** At the reset vector (the ROM's last 16 bytes): ljmp $0xF000, $0 (real mode, to the probe above). */
const RESET_VECTOR = Buffer.from('ea000000f0', 'hex');
/** isa-debug-exit exits with (value << 1) | 1. */
export const PROBE_EXIT_CODE = (EXIT_VALUE << 1) | 1;

export interface AcceleratorChoice {
  accel: Accelerator;
  /** Why, for the report: what the probe saw. */
  why: string;
}

/** The probe's 64 KiB BIOS image: QEMU exits with PROBE_EXIT_CODE once a vCPU has run it through. */
export function probeFirmware(): Buffer {
  const rom = Buffer.alloc(64 * 1024);
  PROTECTED_MODE_PROBE.copy(rom, 0);
  RESET_VECTOR.copy(rom, rom.length - 16);
  return rom;
}

export async function chooseAccelerator(runner: CommandRunner, options: { qemuBinary: string; workDir: string }): Promise<AcceleratorChoice> {
  if (!fs.existsSync('/dev/kvm')) return { accel: 'tcg', why: 'no /dev/kvm' };
  const firmware = path.join(options.workDir, 'kvm-probe.bin');
  fs.writeFileSync(firmware, probeFirmware());
  try {
    let r;
    try {
      r = await runner.run(options.qemuBinary, [
        '-accel', 'kvm', '-cpu', 'host', '-M', 'pc', '-m', '16', '-nodefaults', '-display', 'none', '-monitor', 'none', '-serial', 'none',
        '-bios', firmware, '-device', `isa-debug-exit,iobase=${EXIT_PORT},iosize=1`,
      ], { timeoutMs: 10_000 });
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
