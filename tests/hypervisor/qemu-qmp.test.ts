// The QMP client's protocol handling against a scripted QMP server on a unix
// socket (the real-QEMU behaviour is covered in qemu.test.ts): greeting and
// capabilities, answers matched by id in any order, events, timeouts, and a
// server that goes away mid-command.
import * as net from 'node:net';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { HypervisorError } from '../../src/errors';
import { QmpBusyError, QmpClient, QmpCommandError, isOpenInProcess } from '../../src/hypervisor/qemu/qmpClient';
import { useScratch } from '../support/scratch';

const dir = useScratch('qmp').dir;
let n = 0;

interface Received { execute: string; arguments?: unknown; id: string }

/**
 * A QMP server that greets like QEMU 7.2, accepts qmp_capabilities, and hands
 * every other command to `reply` (which may answer later, out of order, or never).
 */
async function fakeQmp(reply: (cmd: Received, send: (msg: object) => void, socket: net.Socket) => void, greet = true) {
  const sock = path.join(dir, `fake-${n++}.qmp`);
  const server = net.createServer((s) => {
    const send = (msg: object) => s.write(JSON.stringify(msg) + '\r\n');
    if (greet) send({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 } }, capabilities: ['oob'] } });
    let buf = '';
    s.on('data', (b: Buffer) => {
      buf += b.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const cmd = JSON.parse(buf.slice(0, i)) as Received;
        buf = buf.slice(i + 1);
        if (cmd.execute === 'qmp_capabilities') send({ return: {}, id: cmd.id });
        else reply(cmd, send, s);
      }
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(sock, r));
  return { sock, close: () => new Promise<void>((r) => server.close(() => r())) };
}

describe('QmpClient protocol', () => {
  it('matches answers to commands by id, whatever order they come in', async () => {
    const held: Array<() => void> = [];
    const server = await fakeQmp((cmd, send) => {
      held.push(() => send({ return: { echo: cmd.arguments }, id: cmd.id }));
      // Answer both only once both arrived, the second first.
      if (held.length === 2) { held[1]!(); held[0]!(); }
    });
    const answers = await QmpClient.with(server.sock, (c) => Promise.all([
      c.execute<{ echo: unknown }>('echo', { n: 1 }),
      c.execute<{ echo: unknown }>('echo', { n: 2 }),
    ]));
    expect(answers).toEqual([{ echo: { n: 1 } }, { echo: { n: 2 } }]);
    await server.close();
  });

  it('delivers an event to a waiter registered before the command, ignoring other events', async () => {
    const server = await fakeQmp((cmd, send) => {
      send({ return: {}, id: cmd.id });
      send({ event: 'BLOCK_JOB_COMPLETED', data: { device: 'someone-else', len: 1 }, timestamp: { seconds: 1, microseconds: 0 } });
      send({ event: 'BLOCK_JOB_COMPLETED', data: { device: 'ferry-job-1', len: 65536 }, timestamp: { seconds: 2, microseconds: 0 } });
    });
    const event = await QmpClient.with(server.sock, async (c) => {
      const done = c.waitForEvent((e) => e.event === 'BLOCK_JOB_COMPLETED' && e.data.device === 'ferry-job-1', 5000, 'job end');
      await c.execute('blockdev-backup');
      return done;
    });
    expect(event.data).toEqual({ device: 'ferry-job-1', len: 65536 });
    expect(event.timestamp).toEqual({ seconds: 2, microseconds: 0 });
    await server.close();
  });

  it('turns a QMP error into a QmpCommandError naming command, socket and class', async () => {
    const server = await fakeQmp((cmd, send) => send({ error: { class: 'DeviceNotFound', desc: "Device 'x' not found" }, id: cmd.id }));
    const err = await QmpClient.with(server.sock, (c) => c.execute('block-job-cancel', { device: 'x' })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpCommandError);
    expect((err as QmpCommandError).errorClass).toBe('DeviceNotFound');
    expect((err as Error).message).toBe(`QMP block-job-cancel on ${server.sock} failed: Device 'x' not found (DeviceNotFound)`);
    await server.close();
  });

  it('gives up on a command that gets no answer, saying which and how long', async () => {
    const server = await fakeQmp(() => undefined);
    const err = await QmpClient.with(server.sock, (c) => c.execute('query-status', undefined, { timeoutMs: 200 })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HypervisorError);
    expect((err as Error).message).toBe(`QMP query-status on ${server.sock} got no answer within 0.2 s`);
    await server.close();
  });

  it('fails pending commands and event waiters when QEMU goes away mid-command', async () => {
    const server = await fakeQmp((_cmd, _send, socket) => socket.destroy());
    const outcome = await QmpClient.with(server.sock, async (c) => {
      const waiter = c.waitForEvent(() => true, 5000, 'anything');
      const cmd = await c.execute('quit').catch((e: unknown) => e);
      return { cmd, waiter: await waiter.catch((e: unknown) => e) };
    });
    expect((outcome.cmd as Error).message).toMatch(/closed the connection \(did QEMU exit\?\)/);
    expect((outcome.waiter as Error).message).toMatch(/closed the connection/);
    await server.close();
  });

  it('reports a socket that never greets as busy, and counts only open connections', async () => {
    const server = await fakeQmp(() => undefined, false);
    const err = await QmpClient.connect(server.sock, { connectTimeoutMs: 200 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpBusyError);
    expect((err as Error).message).toMatch(/did not greet within 0\.2 s: .*one QMP client at a time/);
    expect(isOpenInProcess(server.sock)).toBe(false);
    await server.close();

    const live = await fakeQmp((cmd, send) => send({ return: {}, id: cmd.id }));
    const c = await QmpClient.connect(live.sock);
    expect(isOpenInProcess(live.sock)).toBe(true);
    c.close();
    expect(isOpenInProcess(live.sock)).toBe(false);
    await live.close();
  });
});
