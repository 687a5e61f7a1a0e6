// A small client for QEMU's QMP protocol over a unix socket: one JSON object
// per line; the server greets, the client enables commands with
// `qmp_capabilities`, then sends `{execute, arguments, id}` and gets
// `{return|error, id}` back, interleaved with asynchronous `{event, data}`.
//
// A QMP socket (`-qmp unix:PATH,server=on,wait=off`) serves ONE client at a
// time; a second client is not greeted until the first disconnects. So ferry
// keeps connections short (connect, a few commands, close) and never holds one
// across a pause: the watchdog's `cont` must always be able to get in.
import * as net from 'node:net';
import { HypervisorError, describeSystemError } from '../../errors';

/** Plain JSON as QMP sends it. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export interface QmpEvent {
  event: string;
  data: JsonObject;
  timestamp?: { seconds: number; microseconds: number };
}

/** A QMP command answered with an error (`{"error": {"class", "desc"}}`). */
export class QmpCommandError extends HypervisorError {
  constructor(
    readonly socketPath: string,
    readonly command: string,
    /** QMP's error class, e.g. `GenericError`, `DeviceNotFound`. */
    readonly errorClass: string,
    readonly description: string,
  ) {
    super(`QMP ${command} on ${socketPath} failed: ${description} (${errorClass})`);
  }
}

/**
 * The socket accepted the connection but QEMU did not greet: it is serving
 * another client (QEMU queues further clients until the current one leaves).
 */
export class QmpBusyError extends HypervisorError {
  constructor(readonly socketPath: string, timeoutMs: number) {
    super(
      `QMP socket ${socketPath} did not greet within ${timeoutMs / 1000} s: ` +
        'another client (a second ferry, a monitoring tool) may hold it; QEMU serves one QMP client at a time',
    );
  }
}

/** Connections this process has open, per socket path: a busy socket of our own need not be waited for. */
const openInProcess = new Map<string, number>();

/** Whether this process currently holds a QMP connection to `socketPath` (so a new one would wait for it). */
export function isOpenInProcess(socketPath: string): boolean {
  return (openInProcess.get(socketPath) ?? 0) > 0;
}

export interface QmpConnectOptions {
  /** How long to wait for the socket to accept and greet (default 10 s). */
  connectTimeoutMs?: number;
  /** Default per-command timeout (default 60 s). */
  commandTimeoutMs?: number;
}

interface Pending {
  command: string;
  resolve: (value: JsonValue) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

interface EventWaiter {
  matches: (e: QmpEvent) => boolean;
  resolve: (e: QmpEvent) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;

export class QmpClient {
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private readonly waiters = new Set<EventWaiter>();
  private readonly listeners = new Set<(e: QmpEvent) => void>();
  private closedError: Error | undefined;

  private constructor(
    readonly socketPath: string,
    private readonly socket: net.Socket,
    private readonly commandTimeoutMs: number,
  ) {}

  /** Connects, reads the greeting and enables commands (`qmp_capabilities`). */
  static async connect(socketPath: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const socket = net.createConnection({ path: socketPath });
    const client = new QmpClient(socketPath, socket, options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS);
    // Counted until shutdown(), which runs exactly once and synchronously on close().
    openInProcess.set(socketPath, (openInProcess.get(socketPath) ?? 0) + 1);
    try {
      await client.handshake(connectTimeoutMs);
    } catch (err) {
      client.shutdown(err as Error);
      throw err;
    }
    return client;
  }

  /** Connects, runs `body`, and always closes the connection afterwards. */
  static async with<T>(socketPath: string, body: (client: QmpClient) => Promise<T>, options?: QmpConnectOptions): Promise<T> {
    const client = await QmpClient.connect(socketPath, options);
    try {
      return await body(client);
    } finally {
      client.close();
    }
  }

  private handshake(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      let greeted = false;
      const timer = setTimeout(() => reject(new QmpBusyError(this.socketPath, timeoutMs)), timeoutMs);
      const fail = (err: Error) => { clearTimeout(timer); reject(err); };
      this.socket.once('error', (err: NodeJS.ErrnoException) => {
        const hint = err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
          ? ': is the guest running, and is this the path given to -qmp unix:PATH,server=on?'
          : '';
        fail(new HypervisorError(`cannot connect to QMP socket ${this.socketPath}: ${describeSystemError(err)}${hint}`, { cause: err }));
      });
      this.socket.on('data', (chunk: Buffer) => {
        this.buffer += chunk.toString('utf8');
        let nl: number;
        while ((nl = this.buffer.indexOf('\n')) >= 0) {
          const line = this.buffer.slice(0, nl).trim();
          this.buffer = this.buffer.slice(nl + 1);
          if (line.length === 0) continue;
          let message: JsonObject;
          try {
            message = JSON.parse(line) as JsonObject;
          } catch {
            if (!greeted) fail(new HypervisorError(`${this.socketPath} is not a QMP socket: it greeted with ${line.slice(0, 200)}`));
            this.shutdown(new HypervisorError(`QMP socket ${this.socketPath} sent a line that is not JSON: ${line.slice(0, 200)}`));
            return;
          }
          if (!greeted) {
            if (typeof message.QMP !== 'object' || message.QMP === null) {
              fail(new HypervisorError(`${this.socketPath} is not a QMP socket: it greeted with ${line.slice(0, 200)}`));
              this.socket.destroy();
              return;
            }
            greeted = true;
            this.execute('qmp_capabilities').then(() => { clearTimeout(timer); resolve(); }, fail);
            continue;
          }
          this.dispatch(message);
        }
      });
      this.socket.on('close', () => {
        this.shutdown(new HypervisorError(`QMP socket ${this.socketPath} closed the connection (did QEMU exit?)`));
        if (!greeted) fail(new HypervisorError(`QMP socket ${this.socketPath} closed the connection before greeting`));
      });
      this.socket.on('error', () => { /* reported through 'close' */ });
    });
  }

  private dispatch(message: JsonObject): void {
    if (typeof message.event === 'string') {
      const event: QmpEvent = {
        event: message.event,
        data: (message.data as JsonObject | undefined) ?? {},
        ...(message.timestamp ? { timestamp: message.timestamp as unknown as QmpEvent['timestamp'] } : {}),
      };
      for (const listener of this.listeners) listener(event);
      for (const w of [...this.waiters]) {
        if (w.matches(event)) {
          this.waiters.delete(w);
          clearTimeout(w.timer);
          w.resolve(event);
        }
      }
      return;
    }
    const id = typeof message.id === 'string' ? message.id : undefined;
    const p = id === undefined ? undefined : this.pending.get(id);
    if (!p || id === undefined) return; // an answer to nobody (e.g. after a timeout): ignore
    this.pending.delete(id);
    clearTimeout(p.timer);
    if ('return' in message) {
      p.resolve(message.return ?? null);
    } else {
      const error = (message.error as JsonObject | undefined) ?? {};
      p.reject(new QmpCommandError(
        this.socketPath, p.command, String(error.class ?? 'unknown'), String(error.desc ?? JSON.stringify(message)),
      ));
    }
  }

  private shutdown(err: Error): void {
    if (this.closedError) return;
    this.closedError = err;
    const n = (openInProcess.get(this.socketPath) ?? 1) - 1;
    if (n > 0) openInProcess.set(this.socketPath, n);
    else openInProcess.delete(this.socketPath);
    for (const p of this.pending.values()) { clearTimeout(p.timer); p.reject(err); }
    this.pending.clear();
    for (const w of this.waiters) { clearTimeout(w.timer); w.reject(err); }
    this.waiters.clear();
    this.socket.destroy();
  }

  /**
   * Runs one QMP command and resolves with its `return` value. The caller
   * states the shape it expects (`T`); QMP's schema guarantees it for a given
   * QEMU version, and callers check the fields that decide anything.
   */
  execute<T = JsonValue>(command: string, args?: object, options: { timeoutMs?: number } = {}): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = `ferry-${this.nextId++}`;
    const timeoutMs = options.timeoutMs ?? this.commandTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new HypervisorError(`QMP ${command} on ${this.socketPath} got no answer within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.pending.set(id, { command, resolve: (v) => resolve(v as T), reject, timer });
      const message = args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
      this.socket.write(JSON.stringify(message) + '\n');
    });
  }

  /**
   * Resolves with the first event matching `matches` that arrives AFTER this
   * call. Call it before the command that causes the event, then await it.
   * The returned promise is marked handled, so not awaiting it after an
   * earlier failure does not crash the process.
   */
  waitForEvent(matches: (e: QmpEvent) => boolean, timeoutMs: number, what: string): Promise<QmpEvent> {
    const promise = new Promise<QmpEvent>((resolve, reject) => {
      if (this.closedError) { reject(this.closedError); return; }
      const waiter: EventWaiter = {
        matches,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          reject(new HypervisorError(`QMP socket ${this.socketPath}: no ${what} within ${timeoutMs / 1000} s`));
        }, timeoutMs),
      };
      this.waiters.add(waiter);
    });
    promise.catch(() => undefined);
    return promise;
  }

  /** Calls `listener` for every event until the returned function is called. */
  onEvent(listener: (e: QmpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => { this.listeners.delete(listener); };
  }

  close(): void {
    this.shutdown(new HypervisorError(`QMP connection to ${this.socketPath} was closed by ferry`));
  }
}
