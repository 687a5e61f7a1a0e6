// The libvirt driver's quiesce = pause | fsfreeze | none (ferry.conf) and its
// clean shutdown for snapshot = "shutdown", at the command boundary against
// virsh output recorded from real libvirt 9.0 (tests/fixtures/libvirt/README.md;
// the shutdown replies by record-shutdown.sh).
import { describe, expect, it } from 'vitest';
import { LibvirtDriver } from '../../src/hypervisor/libvirt/libvirtDriver';
import type { GuestInfo, ReleaseCommand } from '../../src/hypervisor/driver';
import { HypervisorError } from '../../src/errors';
import { RecordedCommandRunner } from '../support/recordedRunner';
import { recordedVirsh } from '../support/libvirtGuest';

const web01: GuestInfo = { name: 'web01', state: 'running', nics: [], disks: [] };
const lines = (runner: RecordedCommandRunner) => runner.commandLines().map((l) => l.replace('virsh -c qemu:///system ', ''));
const PING = ['qemu-agent-command', 'web01', '--timeout', '5', '{"execute":"guest-ping"}'];

describe('LibvirtDriver quiesce with a method from ferry.conf (recorded libvirt 9.0)', () => {
  it('quiesce = "pause": virsh suspend without asking the agent, virsh resume on release', async () => {
    const runner = new RecordedCommandRunner([
      recordedVirsh(['domstate', 'web01'], 'domstate-web01'),
      recordedVirsh(['suspend', 'web01'], 'suspend-web01'),
      recordedVirsh(['resume', 'web01'], 'resume-web01'),
    ]);
    const handle = await new LibvirtDriver({ runner }).quiesce(web01, {}, undefined, { how: 'pause' });
    expect(handle.mode).toBe('suspend');
    await handle.release();
    expect(lines(runner)).toEqual(['domstate web01', 'suspend web01', 'resume web01']);
  });

  it('quiesce = "none": no suspend, no freeze, no watchdog', async () => {
    const runner = new RecordedCommandRunner([recordedVirsh(['domstate', 'web01'], 'domstate-web01')]);
    const told: ReleaseCommand[] = [];
    const handle = await new LibvirtDriver({ runner }).quiesce(web01, {}, { holding: (r) => told.push(r) }, { how: 'none' });
    expect(handle).toMatchObject({ quiesced: false, mode: 'none' });
    await handle.release();
    expect(lines(runner)).toEqual(['domstate web01']);
    expect(told).toEqual([]);
  });

  it('quiesce = "fsfreeze" with no agent behind the channel: refused, never falls back to a suspend', async () => {
    const runner = new RecordedCommandRunner([
      recordedVirsh(['domstate', 'web01'], 'domstate-web01'),
      recordedVirsh(PING, 'agent-ping-web01'),
    ]);
    await expect(new LibvirtDriver({ runner }).quiesce(web01, {}, undefined, { how: 'fsfreeze' })).rejects.toThrow(
      'quiesce = "fsfreeze" for guest web01: its QEMU guest agent does not answer (virsh qemu-agent-command guest-ping); install and start qemu-guest-agent in the guest with a guest agent channel, or use quiesce = "pause"',
    );
    expect(lines(runner)).toEqual(['domstate web01', PING.join(' ').replace('{"execute":"guest-ping"}', `'{"execute":"guest-ping"}'`)]);
  });

  it('quiesce = "fsfreeze" whose freeze fails: thaws and refuses', async () => {
    const runner = new RecordedCommandRunner([
      recordedVirsh(['domstate', 'web01'], 'domstate-web01'),
      // Constructed: an agent that answers (no real guest here has one behind libvirt).
      { cmd: 'virsh', args: ['-c', 'qemu:///system', ...PING], stdout: '{"return":{}}\n' },
      recordedVirsh(['domfsfreeze', 'web01'], 'domfsfreeze-web01'),
      { cmd: 'virsh', args: ['-c', 'qemu:///system', 'domfsthaw', 'web01'], stdout: 'Thawed 0 filesystem(s)\n' },
    ]);
    await expect(new LibvirtDriver({ runner }).quiesce(web01, {}, undefined, { how: 'fsfreeze' })).rejects.toThrow(/^quiesce = "fsfreeze" for guest web01: virsh -c qemu:\/\/\/system domfsfreeze web01 failed \(exit 1\): .*; fix the guest agent or use quiesce = "pause"$/);
    expect(lines(runner).slice(-2)).toEqual(['domfsfreeze web01', 'domfsthaw web01']);
  });
});

describe('LibvirtDriver shutdown for snapshot = "shutdown" (recorded libvirt 9.0)', () => {
  it('arms the guard with virsh start before virsh shutdown, asks domstate until shut off, and start runs virsh start once', async () => {
    const runner = new RecordedCommandRunner([
      recordedVirsh(['dominfo', 'web01'], 'shutdown-dominfo-web01'),
      recordedVirsh(['domstate', 'web01'], 'domstate-web01'),
      recordedVirsh(['shutdown', 'web01'], 'shutdown-web01'),
      recordedVirsh(['domstate', 'web01'], 'shutdown-domstate-web01-ignored'),
      recordedVirsh(['domstate', 'web01'], 'shutdown-domstate-web01-off'),
      recordedVirsh(['start', 'web01'], 'start-web01'),
    ]);
    const told: { release: ReleaseCommand; before: string[] }[] = [];
    const driver = new LibvirtDriver({ runner, shutdownPollMs: 1 });
    const handle = await driver.shutDown(web01, { holding: (release) => told.push({ release, before: lines(runner) }) });
    expect(told.map((t) => [t.release.argv, t.before])).toEqual([[['virsh', '-c', 'qemu:///system', 'start', 'web01'], ['dominfo web01', 'domstate web01']]]);
    // The watchdog starts the guest only once libvirt says it is shut off; "already active" is no answer while it shuts down.
    const wait = told[0]!.release.waitUntil!;
    expect(wait.argv).toEqual(['virsh', '-c', 'qemu:///system', 'domstate', 'web01']);
    expect(wait.output.test(recordedVirsh(['domstate', 'web01'], 'shutdown-domstate-web01-off').stdout!)).toBe(true);
    expect(wait.output.test(recordedVirsh(['domstate', 'web01'], 'shutdown-domstate-web01-ignored').stdout!)).toBe(false);
    expect(told[0]!.release.alreadyReleased).toBeUndefined();
    await handle.start();
    await handle.start();
    expect(lines(runner)).toEqual(['dominfo web01', 'domstate web01', 'shutdown web01', 'domstate web01', 'domstate web01', 'start web01']);
    expect(runner.unused()).toEqual([]);
  });

  it('a start that finds the domain already running (the watchdog or an admin started it) counts as done', async () => {
    const runner = new RecordedCommandRunner([
      recordedVirsh(['dominfo', 'web01'], 'shutdown-dominfo-web01'),
      recordedVirsh(['domstate', 'web01'], 'domstate-web01'),
      recordedVirsh(['shutdown', 'web01'], 'shutdown-web01'),
      recordedVirsh(['domstate', 'web01'], 'shutdown-domstate-web01-off'),
      recordedVirsh(['start', 'web01'], 'start-web01-active'),
    ]);
    const handle = await new LibvirtDriver({ runner, shutdownPollMs: 1 }).shutDown(web01);
    await handle.start();
    expect(lines(runner).at(-1)).toBe('start web01');
  });

  it('a guest that ignores the shutdown past the limit is an error that says its disks were not read', async () => {
    const runner = new RecordedCommandRunner([
      recordedVirsh(['dominfo', 'web01'], 'shutdown-dominfo-web01'),
      recordedVirsh(['domstate', 'web01'], 'domstate-web01'),
      recordedVirsh(['shutdown', 'web01'], 'shutdown-web01'),
      recordedVirsh(['domstate', 'web01'], 'shutdown-domstate-web01-ignored', { repeat: true }),
    ]);
    await expect(new LibvirtDriver({ runner, shutdownTimeoutMs: 300, shutdownPollMs: 20 }).shutDown(web01)).rejects.toThrow(
      new HypervisorError('guest web01 did not shut down within 0.3 s of virsh shutdown (still running); its disks were not read; make it react to the ACPI power button (acpid, systemd-logind) or its guest agent, or use snapshot = "pause"'),
    );
  });

  it('refuses a transient domain before shutting it down: libvirt would forget it', async () => {
    const runner = new RecordedCommandRunner([recordedVirsh(['dominfo', 'tmp01'], 'shutdown-dominfo-tmp01-transient')]);
    await expect(new LibvirtDriver({ runner }).shutDown({ ...web01, name: 'tmp01' })).rejects.toThrow(
      'guest tmp01 is a transient libvirt domain: once shut down it could not be started again; define it (virsh define) or use snapshot = "pause"',
    );
    expect(lines(runner)).toEqual(['dominfo tmp01']);
  });
});
