// The Xen driver's quiesce = pause | fsfreeze | none (ferry.conf) and its
// clean shutdown for snapshot = "shutdown", at the command boundary against
// recorded xl output (tests/fixtures/xen/README.md). No hypervisor runs.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { XenDriver } from '../../src/hypervisor/xen/xenDriver';
import type { ReleaseCommand } from '../../src/hypervisor/driver';
import { HypervisorError, UsageError } from '../../src/errors';
import { RecordedCommandRunner, recordedOutput, type RecordedReply } from '../support/recordedRunner';
import { useScratch } from '../support/scratch';

const FIXTURES = join(__dirname, '..', 'fixtures', 'xen');
const fleet = join(FIXTURES, 'fleet');
const scratch = useScratch('xen-quiesce-modes');
const xl = (args: string[], output?: string, extra: Partial<RecordedReply> = {}): RecordedReply => ({
  cmd: 'xl', args, ...(output ? recordedOutput(FIXTURES, output) : {}), ...extra,
});
const web01 = { name: 'web01', id: 3, state: 'running' as const, nics: [], disks: [] };
const hooks = { pre: ['ssh', '{name}', 'sync'], post: ['logger', 'backed up {name}'] };

describe('XenDriver quiesce with a method from ferry.conf', () => {
  it('quiesce = "pause": xl pause, then xl unpause on release', async () => {
    const runner = new RecordedCommandRunner([xl(['list', 'web01'], 'xl-list-web01'), xl(['pause', 'web01']), xl(['unpause', 'web01'])]);
    const handle = await new XenDriver({ runner, configDir: fleet }).quiesce(web01, {}, undefined, { how: 'pause' });
    expect(handle.quiesced).toBe(true);
    await handle.release();
    expect(runner.commandLines()).toEqual(['xl list web01', 'xl pause web01', 'xl unpause web01']);
  });

  it('quiesce = "none": holds nothing and tells no watchdog, but runs the pre hook now and the post hook on release', async () => {
    const runner = new RecordedCommandRunner([
      { cmd: 'ssh', args: ['web01', 'sync'] },
      { cmd: 'logger', args: ['backed up web01'] },
    ]);
    const told: ReleaseCommand[] = [];
    const handle = await new XenDriver({ runner, configDir: fleet }).quiesce(web01, hooks, { holding: (r) => told.push(r) }, { how: 'none' });
    expect(handle.quiesced).toBe(false);
    expect(runner.commandLines()).toEqual(['ssh web01 sync']);
    await handle.release();
    await handle.release();
    expect(runner.commandLines()).toEqual(['ssh web01 sync', "logger 'backed up web01'"]);
    expect(told).toEqual([]);
  });

  it('quiesce = "fsfreeze": refused in one line before any command, since xl has no agent channel', async () => {
    const runner = new RecordedCommandRunner([]);
    const attempt = new XenDriver({ runner, configDir: fleet }).quiesce(web01, hooks, undefined, { how: 'fsfreeze' });
    await expect(attempt).rejects.toThrow(UsageError);
    await expect(attempt).rejects.toThrow(
      'quiesce = "fsfreeze" for Xen guest web01: xl has no guest agent channel to freeze file systems; use quiesce = "pause", or pre_hook/post_hook such as ["ssh", "{name}", "fsfreeze", "-f", "/"]',
    );
    expect(runner.calls).toEqual([]);
  });
});

describe('XenDriver shutdown for snapshot = "shutdown"', () => {
  it('arms the guard with xl create CFG before xl shutdown -w; start runs xl create CFG once', async () => {
    const runner = new RecordedCommandRunner([
      xl(['list', 'web01'], 'xl-list-web01'),
      xl(['shutdown', '-w', 'web01'], 'xl-shutdown-w-web01'),
      { cmd: 'xl', args: ['create', join(fleet, 'web01.cfg')], stderr: `Parsing config from ${join(fleet, 'web01.cfg')}\n` },
    ]);
    const told: { argv: readonly string[]; before: string[] }[] = [];
    const handle = await new XenDriver({ runner, configDir: fleet }).shutDown(web01, { holding: (r) => told.push({ argv: r.argv, before: runner.commandLines() }) });
    expect(told).toEqual([{ argv: ['xl', 'create', join(fleet, 'web01.cfg')], before: ['xl list web01'] }]);
    expect(handle.startArgv).toEqual(['xl', 'create', join(fleet, 'web01.cfg')]);
    await handle.start();
    await handle.start();
    expect(runner.commandLines()).toEqual(['xl list web01', 'xl shutdown -w web01', `xl create ${join(fleet, 'web01.cfg')}`]);
  });

  it('refuses a guest no config file defines, before any command: it could not be started again', async () => {
    const runner = new RecordedCommandRunner([]);
    const empty = scratch.mkdir('no-cfg');
    await expect(new XenDriver({ runner, configDir: empty }).shutDown(web01)).rejects.toThrow(
      new HypervisorError(`guest web01: no config file in ${empty} defines it, so after a shutdown ferry could not start it again; put its cfg there (or set [xen] config_dir), or use snapshot = "pause"`),
    );
    expect(runner.calls).toEqual([]);
  });

  it('refuses a guest someone paused, without shutting it down', async () => {
    const dir = scratch.mkdir('paused');
    writeFileSync(join(dir, 'web01.cfg'), readFileSync(join(fleet, 'web01.cfg')));
    const paused = recordedOutput(FIXTURES, 'xl-list-web01').stdout.replace('-b----', '--p---');
    const runner = new RecordedCommandRunner([{ cmd: 'xl', args: ['list', 'web01'], stdout: paused }]);
    await expect(new XenDriver({ runner, configDir: dir }).shutDown(web01)).rejects.toThrow('guest web01 is paused: it cannot shut down for its backup');
    expect(runner.commandLines()).toEqual(['xl list web01']);
  });

  it('a failed xl shutdown -w is one line with xl\'s own reason', async () => {
    const runner = new RecordedCommandRunner([
      xl(['list', 'web01'], 'xl-list-web01'),
      // tools/xl/xl_vmcontrol.c shutdown_domain, for a guest without PV drivers and no -F.
      xl(['shutdown', '-w', 'web01'], undefined, {
        code: 1,
        stderr: 'Shutting down domain 3\nPV control interface not available: external graceful shutdown not possible.\nUse "-F" to fallback to ACPI power event.\nshutdown failed (rc=-8)\n',
      }),
    ]);
    await expect(new XenDriver({ runner, configDir: fleet }).shutDown(web01)).rejects.toThrow(
      new HypervisorError('xl shutdown -w web01 failed (exit 1): shutdown failed (rc=-8)'),
    );
  });
});
