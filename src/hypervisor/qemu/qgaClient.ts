// A minimal client for the QEMU guest agent (qemu-ga) on its host-side unix
// socket (`-chardev socket,path=P,server=on,wait=off` + a virtserialport named
// org.qemu.guest_agent.0). The protocol is QMP-like JSON lines without a
// greeting; because the channel may hold leftovers of an earlier client, a
// session starts with 0xFF (resets the agent's parser) and
// `guest-sync-delimited`, whose answer is preceded by a 0xFF byte: everything
// before it is discarded. Commands then run one at a time.
import * as net from 'node:net';
import { HypervisorError, describeSystemError } from '../../errors';
import type { JsonValue } from './qmpClient';

export class QgaCommandError extends HypervisorError {
  constructor(readonly socketPath: string, readonly command: string, readonly errorClass: string, readonly description: string) {
    super(`guest agent ${command} on ${socketPath} failed: ${description} (${errorClass})`);
  }
}

export class QgaClient {
  private buffer = Buffer.alloc(0);
  private synced = false;
  private waiting: { resolve: (line: string) => void; reject: (err: Error) => void } | undefined;
  private closedError: Error | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(readonly socketPath: string, private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined); // reported through 'close'
    socket.on('close', () => this.fail(new HypervisorError(`guest agent socket ${socketPath} closed the connection (did QEMU exit?)`)));
  }

  /**
   * Connects and synchronises. Rejects within `timeoutMs` when no agent
   * answers (the channel exists, but nothing runs in the guest to serve it).
   */
  static async connect(socketPath: string, timeoutMs: number): Promise<QgaClient> {
    const socket = net.createConnection({ path: socketPath });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', (err: NodeJS.ErrnoException) => {
        reject(new HypervisorError(`cannot connect to guest agent socket ${socketPath}: ${describeSystemError(err)}`, { cause: err }));
      });
    });
    const client = new QgaClient(socketPath, socket);
    try {
      const id = Math.floor(Math.random() * 2 ** 31);
      socket.write(Buffer.from([0xff]));
      const answer = await client.request({ execute: 'guest-sync-delimited', arguments: { id } }, 'guest-sync-delimited', timeoutMs);
      if (answer !== id) throw new HypervisorError(`guest agent on ${socketPath} answered guest-sync with ${JSON.stringify(answer)}, not ${id}`);
    } catch (err) {
      client.close();
      throw err;
    }
    return client;
  }

  static async with<T>(socketPath: string, timeoutMs: number, body: (c: QgaClient) => Promise<T>): Promise<T> {
    const client = await QgaClient.connect(socketPath, timeoutMs);
    try {
      return await body(client);
    } finally {
      client.close();
    }
  }

  /** Runs one agent command and resolves with its `return` value (commands are serialised). */
  execute<T = JsonValue>(command: string, args: object | undefined, timeoutMs: number): Promise<T> {
    const run = () => this.request(args === undefined ? { execute: command } : { execute: command, arguments: args }, command, timeoutMs) as Promise<T>;
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  close(): void {
    this.fail(new HypervisorError(`guest agent connection to ${this.socketPath} was closed by ferry`));
  }

  private async request(message: object, command: string, timeoutMs: number): Promise<JsonValue> {
    if (this.closedError) throw this.closedError;
    const line = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        const err = new HypervisorError(`guest agent on ${this.socketPath} did not answer ${command} within ${timeoutMs / 1000} s: is qemu-ga running in the guest?`);
        // A late answer must not be taken for the next command's: this connection is done.
        this.fail(err);
        reject(err);
      }, timeoutMs);
      this.waiting = {
        resolve: (l) => { clearTimeout(timer); resolve(l); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
      this.socket.write(JSON.stringify(message) + '\n');
    });
    let parsed: { return?: JsonValue; error?: { class?: string; desc?: string } };
    try {
      parsed = JSON.parse(line) as typeof parsed;
    } catch {
      throw new HypervisorError(`guest agent on ${this.socketPath} sent a line that is not JSON: ${line.slice(0, 200)}`);
    }
    if (parsed.error) {
      throw new QgaCommandError(this.socketPath, command, parsed.error.class ?? 'unknown', parsed.error.desc ?? JSON.stringify(parsed.error));
    }
    return parsed.return ?? null;
  }

  private onData(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    if (!this.synced) {
      // Skip everything up to the sync delimiter: leftovers of earlier clients
      // and the agent's complaint about our 0xFF reset byte.
      const mark = this.buffer.indexOf(0xff);
      if (mark < 0) { this.buffer = Buffer.alloc(0); return; }
      this.buffer = this.buffer.subarray(mark + 1);
      this.synced = true;
    }
    let nl: number;
    while ((nl = this.buffer.indexOf(0x0a)) >= 0) {
      const line = this.buffer.subarray(0, nl).toString('utf8').trim();
      this.buffer = this.buffer.subarray(nl + 1);
      if (line === '') continue;
      const w = this.waiting;
      this.waiting = undefined;
      w?.resolve(line); // an answer nobody waits for (after a timeout) is dropped
    }
  }

  private fail(err: Error): void {
    if (this.closedError) return;
    this.closedError = err;
    this.waiting?.reject(err);
    this.waiting = undefined;
    this.socket.destroy();
  }
}
