// The KVM probe: its firmware takes a vCPU from the reset vector into
// protected mode and back out through an `iret` before it signals, because a
// nested KVM that ran a one-instruction probe still failed every real guest
// there. Run under TCG (which runs anything), it must signal: a wrong byte in
// the hand-assembled firmware would make every drill fall back to TCG.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { PROBE_EXIT_CODE, probeFirmware } from '../../src/drill/accelerator';
import { runCommand } from '../support/system';
import { useScratch } from '../support/scratch';

const scratch = useScratch('accelerator');

describe('the KVM probe firmware', () => {
  it('runs through protected mode and an iret to the exit port under TCG', async () => {
    const firmware = scratch.path('probe.bin');
    fs.writeFileSync(firmware, probeFirmware());
    const r = await runCommand('qemu-system-x86_64', [
      '-accel', 'tcg', '-M', 'pc', '-m', '16', '-nodefaults', '-display', 'none', '-monitor', 'none', '-serial', 'none',
      '-bios', firmware, '-device', 'isa-debug-exit,iobase=0xf4,iosize=1',
    ], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(PROBE_EXIT_CODE);
  });

  it('does not signal when the iret is broken: the exit comes after it', async () => {
    const firmware = scratch.path('broken.bin');
    const rom = probeFirmware();
    // The iretl (0xcf) becomes hlt (0xf4): the vCPU stops before the exit port.
    const iret = rom.indexOf(Buffer.from([0xcf, 0xb0, 0x2a]));
    expect(iret).toBeGreaterThan(0);
    rom[iret] = 0xf4;
    fs.writeFileSync(firmware, rom);
    const r = await runCommand('timeout', ['5', 'qemu-system-x86_64',
      '-accel', 'tcg', '-M', 'pc', '-m', '16', '-nodefaults', '-display', 'none', '-monitor', 'none', '-serial', 'none',
      '-bios', firmware, '-device', 'isa-debug-exit,iobase=0xf4,iosize=1',
    ], { timeoutMs: 60_000 });
    expect(r.code).toBe(124);
  });
});
