// Runs one health check until it passes or its time is up: a TCP connect, a
// pattern on a serial console, a command that exits 0. Every failed attempt
// is retried (a guest that is still booting refuses connections, prints
// nothing yet, makes the command fail); only what retrying cannot change —
// a command that does not exist, a console source that cannot exist — fails
// at once. The result says which, why, and how long it took.
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as net from 'node:net';
import { StringDecoder } from 'node:string_decoder';
import { describeSystemError } from '../errors';
import { childEnvironment } from '../hypervisor/childEnvironment';
import { type HealthCheck, describeHealthCheck, serialRegExp } from './healthCheck';

/** Where a serial check reads the guest's console. */
export type SerialSource =
  /** A log that grows, such as QEMU's `-serial file:PATH` (a file that shrinks is read again from its start: a new boot). */
  | { kind: 'file'; path: string }
  /** A Unix stream socket, such as QEMU's `-serial unix:PATH,server=on,wait=off`. */
  | { kind: 'socket'; path: string }
  /** A program whose standard output is the console (`xl console NAME`, `ssh HOST tail -c +1 -F LOG`). */
  | { kind: 'command'; argv: string[] };

export type HealthResult =
  | { status: 'passed'; check: string; elapsedMs: number; attempts: number; detail: string }
  | { status: 'failed'; check: string; elapsedMs: number; attempts: number; reason: string }
  | { status: 'timed-out'; check: string; elapsedMs: number; attempts: number; reason: string };

export interface HealthWaitOptions {
  timeoutMs: number;
  /** Pause between attempts; default 1 s (a serial file is polled at most every 250 ms). */
  retryIntervalMs?: number;
  /** Where a serial check reads; a serial check without one fails. */
  serial?: SerialSource;
  /** Ends the wait early: the result is `failed` with the abort reason (e.g. the guest's emulator exited). */
  signal?: AbortSignal;
  /**
   * What proves a TCP port up: the connection (default), or the first byte
   * the far end sends — for a port forwarded by QEMU's user network, which
   * accepts on the host side before the guest has answered at all.
   */
  tcpProof?: 'connect' | 'first-byte';
}

type Attempt = { kind: 'passed'; detail: string } | { kind: 'retry'; reason: string } | { kind: 'fatal'; reason: string };

const TIMED_OUT = Symbol('timed out');
const TCP_ATTEMPT_MS = 5_000;
const SERIAL_WINDOW_CHARS = 64 * 1024;

export async function waitForHealth(check: HealthCheck, options: HealthWaitOptions): Promise<HealthResult> {
  const started = performance.now();
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(TIMED_OUT), options.timeoutMs);
  const external = options.signal;
  const onExternalAbort = () => stop.abort(external!.reason ?? 'cancelled');
  if (external?.aborted) onExternalAbort();
  else external?.addEventListener('abort', onExternalAbort, { once: true });
  const state = { attempts: 0, lastReason: 'no attempt finished in time' };
  try {
    const outcome = check.kind === 'serial'
      ? await watchSerial(check.pattern, options, stop.signal, state)
      : await retrying(options, stop.signal, state, (signal) => (check.kind === 'tcp'
        ? tcpAttempt(check.host, check.port, options.tcpProof ?? 'connect', signal)
        : commandAttempt(check.argv, signal)));
    const base = { check: describeHealthCheck(check), elapsedMs: Math.round(performance.now() - started), attempts: state.attempts };
    if (outcome.kind === 'passed') return { status: 'passed', ...base, detail: outcome.detail };
    if (outcome.kind === 'fatal') return { status: 'failed', ...base, reason: outcome.reason };
    if (stop.signal.reason === TIMED_OUT) return { status: 'timed-out', ...base, reason: state.lastReason };
    return { status: 'failed', ...base, reason: reasonText(stop.signal.reason) };
  } finally {
    clearTimeout(timer);
    external?.removeEventListener('abort', onExternalAbort);
  }
}

type Outcome = Exclude<Attempt, { kind: 'retry' }> | { kind: 'stopped' };

async function retrying(options: HealthWaitOptions, signal: AbortSignal, state: { attempts: number; lastReason: string }, attempt: (signal: AbortSignal) => Promise<Attempt>): Promise<Outcome> {
  while (!signal.aborted) {
    state.attempts++;
    const result = await attempt(signal);
    if (result.kind !== 'retry') return result;
    // An attempt cut short by the end of the wait says less than one that ran to its end.
    if (!signal.aborted || state.attempts === 1) state.lastReason = result.reason;
    await pause(options.retryIntervalMs ?? 1000, signal);
  }
  return { kind: 'stopped' };
}

function tcpAttempt(host: string, port: number, proof: 'connect' | 'first-byte', signal: AbortSignal): Promise<Attempt> {
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  return new Promise((resolve) => {
    let connected = false;
    const socket = net.connect({ host, port });
    const finish = (attempt: Attempt) => {
      signal.removeEventListener('abort', onAbort);
      socket.destroy();
      resolve(attempt);
    };
    const onAbort = () => finish({ kind: 'retry', reason: connected ? `${where} accepted but sent nothing yet` : `${where} did not answer yet` });
    signal.addEventListener('abort', onAbort, { once: true });
    socket.setTimeout(TCP_ATTEMPT_MS, () => finish({ kind: 'retry', reason: connected ? `${where} accepted but sent nothing in ${TCP_ATTEMPT_MS / 1000} s` : `${where} did not answer in ${TCP_ATTEMPT_MS / 1000} s` }));
    socket.on('connect', () => {
      connected = true;
      if (proof === 'connect') finish({ kind: 'passed', detail: `${where} accepted a connection` });
    });
    socket.on('data', () => finish({ kind: 'passed', detail: `${where} accepted a connection and answered` }));
    socket.on('end', () => finish({ kind: 'retry', reason: `${where} closed the connection without a byte` }));
    socket.on('error', (err: NodeJS.ErrnoException) => finish({ kind: 'retry', reason: `${where}: ${err.code === 'ECONNREFUSED' ? 'connection refused' : describeSystemError(err)}` }));
  });
}

function commandAttempt(argv: string[], signal: AbortSignal): Promise<Attempt> {
  const shown = argv.join(' ');
  return new Promise((resolve) => {
    // Its own process group, so a timeout ends what it started too.
    const child = spawn(argv[0]!, argv.slice(1), { env: childEnvironment(), stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let stderr = '';
    let startError: NodeJS.ErrnoException | undefined;
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr = (stderr + s).slice(-4096); });
    const onAbort = () => { if (child.pid !== undefined) killGroup(child.pid); };
    signal.addEventListener('abort', onAbort, { once: true });
    child.on('error', (err: NodeJS.ErrnoException) => { startError = err; });
    child.on('close', (code, sig) => {
      signal.removeEventListener('abort', onAbort);
      if (startError) {
        // Not there or not runnable: no retry changes that.
        resolve({ kind: 'fatal', reason: `cannot run ${argv[0]}: ${describeSystemError(startError)}` });
        return;
      }
      if (code === 0) { resolve({ kind: 'passed', detail: `${shown} exited 0` }); return; }
      const last = stderr.trim().split('\n').pop()?.trim();
      const how = signal.aborted ? 'was still running' : sig ? `was killed by ${sig}` : `exited with ${code}`;
      resolve({ kind: 'retry', reason: `${shown} ${how}${last ? `: ${last}` : ''}` });
    });
  });
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch (err) {
    // ESRCH: the group is gone already, which is what killing it wants.
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/** Text seen on a console, the last 64 KiB kept so a pattern split across reads still matches. */
class ConsoleText {
  private text = '';
  private decoder = new StringDecoder('utf8');
  constructor(private readonly pattern: RegExp) {}

  /** The line the pattern matched in, or undefined. */
  add(bytes: Buffer): string | undefined {
    this.text = (this.text + this.decoder.write(bytes).replace(/\r/g, '')).slice(-SERIAL_WINDOW_CHARS);
    const m = this.pattern.exec(this.text);
    if (!m) return undefined;
    const start = this.text.lastIndexOf('\n', m.index) + 1;
    const end = this.text.indexOf('\n', m.index + m[0].length);
    return this.text.slice(start, end < 0 ? undefined : end).trim();
  }

  reset(): void {
    this.text = '';
    this.decoder = new StringDecoder('utf8');
  }
}

async function watchSerial(pattern: string, options: HealthWaitOptions, signal: AbortSignal, state: { attempts: number; lastReason: string }): Promise<Outcome> {
  const source = options.serial;
  if (!source) return { kind: 'fatal', reason: 'a serial check needs the guest\'s console, and none is known for it' };
  const seen = new ConsoleText(serialRegExp(pattern));
  const passed = (line: string): { kind: 'passed'; detail: string } => ({ kind: 'passed', detail: `${JSON.stringify(pattern)} seen on the serial console: ${JSON.stringify(line)}` });
  const interval = options.retryIntervalMs ?? 1000;
  if (source.kind === 'file') {
    state.attempts = 1;
    let position = 0;
    while (!signal.aborted) {
      let handle: fsp.FileHandle | undefined;
      try {
        handle = await fsp.open(source.path, 'r');
        const { size } = await handle.stat();
        if (size < position) { position = 0; seen.reset(); }
        const buffer = Buffer.alloc(64 * 1024);
        for (;;) {
          const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
          if (bytesRead === 0) break;
          position += bytesRead;
          const line = seen.add(buffer.subarray(0, bytesRead));
          if (line !== undefined) return passed(line);
        }
        state.lastReason = `${JSON.stringify(pattern)} not seen in ${source.path} (${position} bytes so far)`;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return { kind: 'fatal', reason: `cannot read the serial log ${source.path}: ${describeSystemError(err)}` };
        state.lastReason = `the serial log ${source.path} does not exist yet`;
      } finally {
        await handle?.close();
      }
      await pause(Math.min(interval, 250), signal);
    }
    return { kind: 'stopped' };
  }
  return retrying(options, signal, state, (attemptSignal) => streamAttempt(source, seen, attemptSignal).then((r) => (r.kind === 'passed' ? passed(r.detail) : r)));
}

/** Reads a socket or a command's output until the pattern shows (detail: the line) or the stream ends. */
function streamAttempt(source: Exclude<SerialSource, { kind: 'file' }>, seen: ConsoleText, signal: AbortSignal): Promise<Attempt> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (attempt: Attempt) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      end();
      resolve(attempt);
    };
    const onData = (bytes: Buffer) => {
      const line = seen.add(bytes);
      if (line !== undefined) settle({ kind: 'passed', detail: line });
    };
    let end: () => void;
    if (source.kind === 'socket') {
      const socket = net.connect({ path: source.path });
      end = () => socket.destroy();
      socket.on('data', onData);
      socket.on('end', () => settle({ kind: 'retry', reason: `the serial socket ${source.path} closed before the pattern showed` }));
      socket.on('error', (err) => settle({ kind: 'retry', reason: `the serial socket ${source.path}: ${describeSystemError(err)}` }));
    } else {
      const child = spawn(source.argv[0]!, source.argv.slice(1), { env: childEnvironment(), stdio: ['ignore', 'pipe', 'ignore'], detached: true });
      end = () => { if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) killGroup(child.pid); };
      child.stdout.on('data', onData);
      child.on('error', (err) => settle({ kind: 'fatal', reason: `cannot run the console command ${source.argv[0]}: ${describeSystemError(err)}` }));
      child.on('close', (code) => settle({ kind: 'retry', reason: `the console command ${source.argv.join(' ')} exited with ${code} before the pattern showed` }));
    }
    const onAbort = () => settle({ kind: 'retry', reason: 'the pattern has not shown yet' });
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { clearTimeout(timer); signal.removeEventListener('abort', done); resolve(); };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

function reasonText(reason: unknown): string {
  if (reason instanceof Error) return reason.message;
  return typeof reason === 'string' ? reason : 'cancelled';
}
