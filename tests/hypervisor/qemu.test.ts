// The QEMU driver against a real guest: a tiny Linux under QEMU TCG with a
// QMP socket, writing files to its ext4 disk all the time (tests/support/qemuGuest.ts).
import { execFile, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HypervisorError } from '../../src/errors';
import type { ReleaseCommand } from '../../src/hypervisor/driver';
import { QemuDriver, qmpCommandScript } from '../../src/hypervisor/qemu/qemuDriver';
import { QmpClient, QmpCommandError } from '../../src/hypervisor/qemu/qmpClient';
import { withQuiesced } from '../support/quiesce';
import { startGuest, type TestGuest } from '../support/qemuGuest';
import { useScratch } from '../support/scratch';

const run = promisify(execFile);
const scratch = useScratch('qemu-driver');
let guest: TestGuest;

const status = (socket = guest.qmpSocket) =>
  QmpClient.with(socket, (c) => c.execute<{ status: string; running: boolean }>('query-status'));

beforeAll(async () => {
  if (!fs.existsSync(qmpCommandScript())) {
    throw new Error(`${qmpCommandScript()} is missing: build first (npm run build; npm test does it)`);
  }
  guest = await startGuest(scratch, 'alpha');
  await guest.waitForMoreWrites(3);
});

afterAll(async () => {
  await guest?.stop();
});

describe('QMP client', () => {
  it('runs commands and reports a QMP error with its class and the socket', async () => {
    await QmpClient.with(guest.qmpSocket, async (c) => {
      expect(await c.execute<{ name: string }>('query-name')).toEqual({ name: 'alpha' });
      const err = await c.execute('no-such-command').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(QmpCommandError);
      expect((err as QmpCommandError).errorClass).toBe('CommandNotFound');
      expect((err as Error).message).toContain(guest.qmpSocket);
    });
  });

  it('says which socket cannot be reached and what to check', async () => {
    const missing = scratch.path('nobody.qmp');
    const err = await QmpClient.connect(missing).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HypervisorError);
    expect((err as Error).message).toMatch(new RegExp(`cannot connect to QMP socket ${missing}: no such file.*is the guest running`));
  });

  it('refuses a socket that does not speak QMP', async () => {
    const sock = scratch.path('echo.sock');
    const net = await import('node:net');
    const server = net.createServer((s) => s.end('hello, I am not QEMU\n'));
    await new Promise<void>((r) => server.listen(sock, r));
    try {
      const err = await QmpClient.connect(sock).catch((e: unknown) => e);
      expect((err as Error).message).toMatch(/is not a QMP socket/);
    } finally {
      server.close();
    }
  });
});

describe('QemuDriver.listGuests', () => {
  it('sees the guest, its state, size and its one disk (empty CD and floppy drives left out)', async () => {
    const driver = new QemuDriver({ sockets: [guest.qmpSocket] });
    const [g, ...rest] = await driver.listGuests();
    expect(rest).toEqual([]);
    expect(g).toMatchObject({ name: 'alpha', id: guest.qmpSocket, state: 'running', vcpus: 1, memoryMiB: 256 });
    expect(g!.disks).toEqual([{ device: 'vda', path: guest.diskPath, format: 'raw', readOnly: false }]);
    // QEMU has no config file: the command line is kept so a restore can start the guest again.
    const argv = JSON.parse(g!.config!.text) as string[];
    expect(argv).toContain('-qmp');
    expect(argv).toContain('alpha');
  });

  it('names an unreachable socket instead of silently skipping its guest', async () => {
    const driver = new QemuDriver({ sockets: [guest.qmpSocket, scratch.path('gone.qmp')] });
    await expect(driver.listGuests()).rejects.toThrow(/gone\.qmp/);
  });
});

describe('QemuDriver.quiesce', () => {
  it('stops the guest (no more writes) and release resumes it; reports the pause', async () => {
    const driver = new QemuDriver({ sockets: [guest.qmpSocket] });
    const [g] = await driver.listGuests();
    const t0 = process.hrtime.bigint();
    const handle = await driver.quiesce(g!);
    expect(handle.quiesced).toBe(true);
    expect((await status()).status).toBe('paused');
    const written = guest.wroteFiles().length;
    // A stopped guest runs no code: nothing new may appear while it is held
    // (a negative, so it needs a time window; the guest writes ~5 files/s).
    await new Promise((r) => setTimeout(r, 2000));
    expect(guest.wroteFiles().length).toBe(written);
    await handle.release();
    const pauseMs = Number((process.hrtime.bigint() - t0) / 1_000_000n);
    expect((await status()).status).toBe('running');
    await handle.release(); // idempotent
    await guest.waitForMoreWrites(2);
    console.log(`qemu quiesce: stop→cont with a 2 s hold measured ${pauseMs} ms`);
  });

  it('pauses for only a few milliseconds around an instant body', async () => {
    const driver = new QemuDriver({ sockets: [guest.qmpSocket] });
    const [g] = await driver.listGuests();
    const samples: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = process.hrtime.bigint();
      await withQuiesced(driver, g!, async () => {
        expect((await status()).status).toBe('paused');
      });
      samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    expect((await status()).status).toBe('running');
    samples.sort((a, b) => a - b);
    console.log(`qemu quiesce: stop→cont (with one query-status inside) ${samples.map((s) => s.toFixed(1)).join(', ')} ms`);
    // Three QMP connections on a loaded 2-core machine; well under a second.
    expect(samples[2]).toBeLessThan(1000);
  });

  it('leaves a guest that someone else paused paused', async () => {
    const driver = new QemuDriver({ sockets: [guest.qmpSocket] });
    await QmpClient.with(guest.qmpSocket, (c) => c.execute('stop'));
    try {
      const [g] = await driver.listGuests();
      expect(g!.state).toBe('paused');
      const handle = await driver.quiesce(g!);
      expect(handle.quiesced).toBe(false);
      await handle.release();
      expect((await status()).status).toBe('paused');
    } finally {
      await QmpClient.with(guest.qmpSocket, (c) => c.execute('cont'));
    }
  });

  it('runs the pre hook before the pause and the post hook after the resume', async () => {
    const driver = new QemuDriver({ sockets: [guest.qmpSocket] });
    const [g] = await driver.listGuests();
    const log = scratch.path('hooks.log');
    const hook = (word: string) => ['sh', '-c', `echo ${word} {name} >> ${log}`];
    const handle = await driver.quiesce(g!, { pre: hook('pre'), post: hook('post') });
    expect(fs.readFileSync(log, 'utf8')).toBe('pre alpha\n');
    await handle.release();
    expect(fs.readFileSync(log, 'utf8')).toBe('pre alpha\npost alpha\n');
  });
});

describe('watchdog contract', () => {
  it('arms the watchdog before the guest stops, with a release that leaves a running guest running', async () => {
    // A SIGKILL right after the stop must find a watchdog already running: the
    // guard is told before the stop, while the guest still runs.
    const driver = new QemuDriver({ sockets: [guest.qmpSocket] });
    const [g] = await driver.listGuests();
    const statusNow = () => (JSON.parse(execFileSync(process.execPath, [qmpCommandScript(), guest.qmpSocket, 'query-status']).toString()) as { status: string }).status;
    const told: { release: ReleaseCommand; status: string }[] = [];
    const handle = await driver.quiesce(g!, {}, { holding: (release) => told.push({ release, status: statusNow() }) });
    expect((await status()).status).toBe('paused');
    await handle.release();
    expect(told.map((t) => t.status)).toEqual(['running']);
    expect(told[0]!.release.argv.slice(1)).toEqual([qmpCommandScript(), guest.qmpSocket, 'cont']);
    // Run before the stop took effect, the release does no harm.
    const [cmd, ...args] = told[0]!.release.argv;
    execFileSync(cmd!, args);
    expect((await status()).status).toBe('running');
  });

  it('releaseArgv resumes a guest whose ferry was SIGKILLed while holding it paused', async () => {
    // A stand-in for ferry: compiled driver, quiesce, print releaseArgv, then hang.
    const driverJs = path.resolve(__dirname, '..', '..', 'dist', 'hypervisor', 'qemu', 'qemuDriver.js');
    const script = `
      const { QemuDriver } = require(${JSON.stringify(driverJs)});
      (async () => {
        const driver = new QemuDriver({ sockets: [${JSON.stringify(guest.qmpSocket)}] });
        const [g] = await driver.listGuests();
        const handle = await driver.quiesce(g);
        process.stdout.write(JSON.stringify(handle.releaseArgv) + '\\n');
        setInterval(() => {}, 1000);
      })();`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    scratch.defer(() => child.kill('SIGKILL'));
    const releaseArgv = await new Promise<string[]>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]!) as string[]);
      });
      child.on('exit', (code) => reject(new Error(`stand-in ferry exited (${code}) before pausing the guest`)));
    });
    expect((await status()).status).toBe('paused');
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    expect((await status()).status).toBe('paused'); // nobody resumed it yet

    expect(releaseArgv.slice(1)).toEqual([qmpCommandScript(), guest.qmpSocket, 'cont']);
    const t0 = Date.now();
    await run(releaseArgv[0]!, releaseArgv.slice(1));
    console.log(`qemu watchdog: releaseArgv resumed the guest in ${Date.now() - t0} ms`);
    expect((await status()).status).toBe('running');
    await guest.waitForMoreWrites(2);
  });

  it('the release command fails with exit 9 and one line when the guest is gone', async () => {
    const err = (await run(process.execPath, [qmpCommandScript(), scratch.path('gone.qmp'), 'cont']).catch((e: unknown) => e)) as {
      code: number;
      stderr: string;
    };
    expect(err.code).toBe(9);
    expect(err.stderr.trim().split('\n')).toHaveLength(1);
    expect(err.stderr).toMatch(/^qmp: cannot connect to QMP socket .*gone\.qmp/);
  });
});
