// The health probes against real sockets, files and processes: each kind
// passes once its signal shows, retries while the guest is not there yet,
// and ends as timed-out (with the last reason) or failed (at once, when no
// retry can help, or when the caller gives up).
import * as fs from 'node:fs';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { waitForHealth } from '../../src/health/waitForHealth';
import { useScratch } from '../support/scratch';

const scratch = useScratch('health');
const servers: net.Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

function listen(onConnection: (socket: net.Socket) => void, port = 0): Promise<net.Server> {
  const server = net.createServer(onConnection);
  servers.push(server);
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}
function listenUnix(path: string, onConnection: (socket: net.Socket) => void): Promise<net.Server> {
  const server = net.createServer(onConnection);
  servers.push(server);
  return new Promise((resolve) => server.listen(path, () => resolve(server)));
}
function portOf(server: net.Server): number {
  return (server.address() as net.AddressInfo).port;
}
/** A port nobody listens on: bound once, then closed. */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = portOf(server);
  await new Promise((r) => server.close(r));
  return port;
}
const fast = { retryIntervalMs: 50 };

/** Whether the process is gone (or a zombie: killed, not yet reaped) within 10 s; SIGKILL lands asynchronously. */
async function endsSoon(pid: string): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return true;
    }
    if (/^\d+ \(.*\) Z/.test(stat)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

describe('tcp', () => {
  it('passes when the port accepts a connection', async () => {
    const server = await listen((s) => s.end());
    const result = await waitForHealth({ kind: 'tcp', host: '127.0.0.1', port: portOf(server) }, { timeoutMs: 10_000, ...fast });
    expect(result).toMatchObject({ status: 'passed', check: `tcp 127.0.0.1:${portOf(server)}`, attempts: 1 });
    expect(result.elapsedMs).toBeGreaterThanOrEqual(0);
  });

  it('retries a refused port until it listens', async () => {
    const port = await freePort();
    const waiting = waitForHealth({ kind: 'tcp', host: '127.0.0.1', port }, { timeoutMs: 20_000, ...fast });
    await new Promise((r) => setTimeout(r, 300));
    await listen((s) => s.end(), port);
    expect(await waiting).toMatchObject({ status: 'passed', detail: `127.0.0.1:${port} accepted a connection` });
  });

  it('times out with the last reason when nothing listens', async () => {
    const port = await freePort();
    const result = await waitForHealth({ kind: 'tcp', host: '127.0.0.1', port }, { timeoutMs: 400, ...fast });
    expect(result).toMatchObject({ status: 'timed-out', reason: `127.0.0.1:${port}: connection refused` });
    expect(result.attempts).toBeGreaterThan(1);
  });

  it('with first-byte proof, an accept that closes without a byte is not up (a forwarded port whose guest refused)', async () => {
    const server = await listen((s) => s.end());
    const result = await waitForHealth({ kind: 'tcp', host: '127.0.0.1', port: portOf(server) }, { timeoutMs: 400, tcpProof: 'first-byte', ...fast });
    expect(result).toMatchObject({ status: 'timed-out', reason: `127.0.0.1:${portOf(server)} closed the connection without a byte` });
  });

  it('with first-byte proof, a banner is up', async () => {
    const server = await listen((s) => s.end('SSH-2.0-OpenSSH_9.2\r\n'));
    const result = await waitForHealth({ kind: 'tcp', host: '127.0.0.1', port: portOf(server) }, { timeoutMs: 10_000, tcpProof: 'first-byte', ...fast });
    expect(result).toMatchObject({ status: 'passed', detail: `127.0.0.1:${portOf(server)} accepted a connection and answered` });
  });
});

describe('serial', () => {
  it('passes when the text appears in a log that grows, naming the line it was in', async () => {
    const log = scratch.path('grows.serial');
    fs.writeFileSync(log, 'SeaBIOS\r\nBooting from Hard Disk...\r\n');
    const waiting = waitForHealth({ kind: 'serial', pattern: 'login:' }, { timeoutMs: 20_000, serial: { kind: 'file', path: log }, ...fast });
    await new Promise((r) => setTimeout(r, 300));
    fs.appendFileSync(log, 'Debian GNU/Linux 12 web01 ttyS0\r\n\r\nweb01 log');
    fs.appendFileSync(log, 'in: ');
    expect(await waiting).toMatchObject({ status: 'passed', check: 'serial "login:"', detail: '"login:" seen on the serial console: "web01 login:"' });
  });

  it('waits for a log that does not exist yet', async () => {
    const log = scratch.path('later.serial');
    const waiting = waitForHealth({ kind: 'serial', pattern: '/checksum [0-9a-f]{8}/' }, { timeoutMs: 20_000, serial: { kind: 'file', path: log }, ...fast });
    await new Promise((r) => setTimeout(r, 300));
    fs.writeFileSync(log, 'ferry-guest web01 checksum 0badc0de\n');
    expect(await waiting).toMatchObject({ status: 'passed', detail: '"/checksum [0-9a-f]{8}/" seen on the serial console: "ferry-guest web01 checksum 0badc0de"' });
  });

  it('a literal text is not a regular expression', async () => {
    const log = scratch.path('literal.serial');
    fs.writeFileSync(log, 'loginX\n');
    const result = await waitForHealth({ kind: 'serial', pattern: 'login.' }, { timeoutMs: 400, serial: { kind: 'file', path: log }, ...fast });
    expect(result).toMatchObject({ status: 'timed-out', reason: `"login." not seen in ${log} (7 bytes so far)` });
  });

  it('times out when the log never shows the text, or never appears', async () => {
    const missing = scratch.path('never.serial');
    expect(await waitForHealth({ kind: 'serial', pattern: 'login:' }, { timeoutMs: 300, serial: { kind: 'file', path: missing }, ...fast }))
      .toMatchObject({ status: 'timed-out', reason: `the serial log ${missing} does not exist yet` });
  });

  it('reads a console socket, reconnecting when it closes', async () => {
    const path = scratch.path('console.sock');
    let connections = 0;
    await listenUnix(path, (s) => {
      connections++;
      if (connections === 1) s.end('[    0.000000] Linux version 6.1\n');
      else { s.write('db01 lo'); setTimeout(() => s.write('gin: '), 50); }
    });
    const result = await waitForHealth({ kind: 'serial', pattern: 'login:' }, { timeoutMs: 20_000, serial: { kind: 'socket', path }, ...fast });
    expect(result).toMatchObject({ status: 'passed', attempts: 2, detail: '"login:" seen on the serial console: "db01 login:"' });
  });

  it('reads the output of a console command', async () => {
    const result = await waitForHealth({ kind: 'serial', pattern: 'login:' }, { timeoutMs: 20_000, serial: { kind: 'command', argv: ['sh', '-c', 'echo booting; sleep 0.2; echo "app01 login: "; sleep 60'] }, ...fast });
    expect(result).toMatchObject({ status: 'passed', detail: '"login:" seen on the serial console: "app01 login:"' });
  });

  it('fails at once without a console to read', async () => {
    expect(await waitForHealth({ kind: 'serial', pattern: 'login:' }, { timeoutMs: 10_000 }))
      .toMatchObject({ status: 'failed', reason: 'a serial check needs the guest\'s console, and none is known for it' });
  });
});

describe('command', () => {
  it('passes when the command exits 0, retrying while it fails', async () => {
    const marker = scratch.path('second-try');
    const result = await waitForHealth({ kind: 'command', argv: ['sh', '-c', `test -e ${marker} || { touch ${marker}; echo "not ready" >&2; exit 3; }`] }, { timeoutMs: 20_000, ...fast });
    expect(result).toMatchObject({ status: 'passed', attempts: 2 });
  });

  it('times out with the exit code and the last line of its errors', async () => {
    const result = await waitForHealth({ kind: 'command', argv: ['sh', '-c', 'echo first >&2; echo "no response from db01" >&2; exit 2'] }, { timeoutMs: 2000, ...fast });
    expect(result).toMatchObject({ status: 'timed-out', reason: 'sh -c echo first >&2; echo "no response from db01" >&2; exit 2 exited with 2: no response from db01' });
  });

  it('fails at once when the command does not exist', async () => {
    const result = await waitForHealth({ kind: 'command', argv: ['/nonexistent/pg_isready'] }, { timeoutMs: 10_000, ...fast });
    expect(result).toMatchObject({ status: 'failed', attempts: 1, reason: 'cannot run /nonexistent/pg_isready: no such file or directory (ENOENT)' });
  });

  it('a command still running at the timeout is killed with what it started', async () => {
    const pidFile = scratch.path('sleeper.pid');
    const result = await waitForHealth({ kind: 'command', argv: ['sh', '-c', `sleep 600 & echo $! > ${pidFile}; wait`] }, { timeoutMs: 500, ...fast });
    expect(result).toMatchObject({ status: 'timed-out' });
    expect(result.status === 'timed-out' && result.reason).toMatch(/was still running$/);
    const sleeper = fs.readFileSync(pidFile, 'utf8').trim();
    expect(await endsSoon(sleeper)).toBe(true);
  });

  it('does not hand the repository passphrase to the command', async () => {
    process.env.FERRY_PASSWORD = 'secret';
    try {
      const result = await waitForHealth({ kind: 'command', argv: ['sh', '-c', 'test -z "$FERRY_PASSWORD"'] }, { timeoutMs: 400, ...fast });
      expect(result.status).toBe('passed');
    } finally {
      delete process.env.FERRY_PASSWORD;
    }
  });
});

describe('giving up early', () => {
  it('an aborted wait fails with the reason given', async () => {
    const giveUp = new AbortController();
    const waiting = waitForHealth({ kind: 'serial', pattern: 'login:' }, { timeoutMs: 60_000, serial: { kind: 'file', path: scratch.path('none') }, signal: giveUp.signal, ...fast });
    giveUp.abort(new Error('QEMU exited with code 1'));
    expect(await waiting).toMatchObject({ status: 'failed', reason: 'QEMU exited with code 1' });
  });
});
