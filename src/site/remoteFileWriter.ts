// Writes byte ranges into one file or block device on a remote host through a
// single ssh session, with nothing there but sh and coreutils: a small sh loop
// reads "OFFSET LENGTH\n" then LENGTH bytes, and dd puts them in place
// (iflag=fullblock reads exactly LENGTH bytes, never the next header). Ranges
// not written stay holes. The end ("0 0") fsyncs the target and answers "ok".
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { StorageError } from '../errors';
import { describeCommand } from '../hypervisor/commandRunner';
import { childEnvironment } from '../hypervisor/childEnvironment';

const RECEIVER = [
  'set -eu',
  'f=$1',
  // A new file is created sparse at its full size; an existing one (a re-run, a device) is written in place.
  'if [ "$2" != device ] && [ ! -e "$f" ]; then truncate -s "$2" "$f"; fi',
  'while read -r off len; do',
  '  [ "$len" -eq 0 ] && break',
  // A length of -1 asks for an fsync now (a checkpoint the caller may record as durable).
  '  if [ "$len" -lt 0 ]; then sync "$f"; echo synced; continue; fi',
  '  dd of="$f" bs="$len" count=1 iflag=fullblock oflag=seek_bytes seek="$off" conv=notrunc status=none',
  'done',
  'sync "$f"',
  'echo ok',
].join('\n');

/** How long a failure waits for ssh to end and deliver the remote's reason on stderr. */
const REASON_WAIT_MS = 5000;

export class RemoteFileWriter {
  private failure?: Error;
  private stderr = '';
  private stdout = '';
  /** Resolves once ssh has exited and its output is read to the end (its exit code is then final). */
  private readonly closed: Promise<void>;

  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    private readonly where: string,
  ) {
    child.stderr.on('data', (d: Buffer) => { this.stderr += d.toString(); });
    child.stdout.on('data', (d: Buffer) => { this.stdout += d.toString(); });
    child.stdin.on('error', (err) => { this.failure ??= err; });
    this.closed = once(child, 'close').then(() => undefined, () => undefined);
  }

  /**
   * `sshArgs`: how to reach the host, up to and including `--` (SshCommandRunner.sshArgs()).
   * `size`: of a new file (created sparse), or 'device' for a block device that exists.
   */
  static open(sshArgs: readonly string[], path: string, size: number | 'device', where: string): RemoteFileWriter {
    const remote = describeCommand('sh', ['-c', RECEIVER, 'ferry-receive', path, String(size)]);
    const child = spawn('ssh', [...sshArgs, remote], { stdio: 'pipe', env: childEnvironment({ LC_ALL: 'C' }) });
    return new RemoteFileWriter(child, where);
  }

  /** Queue `data` for `offset`; resolves when ssh has taken it (backpressure). */
  async write(offset: number, data: Buffer): Promise<void> {
    if (data.length === 0) return;
    await this.check();
    const header = Buffer.from(`${offset} ${data.length}\n`, 'ascii');
    const more = this.child.stdin.write(header) && this.child.stdin.write(data);
    if (!more) await this.until(once(this.child.stdin, 'drain'));
    await this.check();
  }

  /** Everything written so far is on the remote disk (fsynced) when this resolves. */
  async sync(): Promise<void> {
    await this.check();
    const before = this.count('synced');
    this.child.stdin.write('0 -1\n');
    while (this.count('synced') === before) {
      await this.until(once(this.child.stdout, 'data'));
      await this.check();
      if (this.child.exitCode !== null && this.count('synced') === before) {
        await this.closed;
        throw new StorageError(`writing ${this.where} over ssh failed: the remote end stopped before the fsync (${this.lastLine() || 'no message'})`);
      }
    }
  }

  private count(word: string): number {
    return this.stdout.split('\n').filter((l) => l === word).length;
  }

  /** Ends the stream: the remote end fsyncs and must answer ok. */
  async close(): Promise<void> {
    await this.check();
    this.child.stdin.end('0 0\n');
    await this.closed;
    const code = this.child.exitCode;
    if (code !== 0 || this.stdout.trim().split('\n').pop() !== 'ok') {
      throw new StorageError(`writing ${this.where} over ssh failed (exit ${code ?? 'signal'}): ${this.lastLine() || 'no message'}`);
    }
  }

  /** Stops the transfer (on a failure elsewhere); what was written stays, for a re-run to verify. */
  abort(): void {
    this.child.kill('SIGTERM');
  }

  /**
   * Waits for `event` or the end of ssh. A stream error (EPIPE when the connection
   * drops) is kept for check() to report, not thrown as it came.
   */
  private async until(event: Promise<unknown>): Promise<void> {
    try {
      await Promise.race([event, once(this.child, 'exit')]);
    } catch (err) {
      this.failure ??= err as Error;
    }
  }

  /**
   * Throws when the transfer failed. The remote's reason is the last line ssh wrote to stderr, which is
   * complete only once ssh has ended: a broken pipe or an exit is seen first, so the reason is awaited.
   */
  private async check(): Promise<void> {
    const failed = this.failure !== undefined || this.child.signalCode !== null || (this.child.exitCode !== null && this.child.exitCode !== 0);
    if (!failed) return;
    await this.reasonArrived();
    if (this.child.signalCode !== null) {
      throw new StorageError(`writing ${this.where} over ssh failed: the connection ended (ssh ${this.child.signalCode})${this.lastLine() ? `: ${this.lastLine()}` : ''}; run the restore again to continue`);
    }
    if (this.child.exitCode !== null && this.child.exitCode !== 0) {
      throw new StorageError(`writing ${this.where} over ssh failed (exit ${this.child.exitCode}): ${this.lastLine() || 'no message'}`);
    }
    if (this.failure) throw new StorageError(`writing ${this.where} over ssh failed: ${this.lastLine() || this.failure.message}`, { cause: this.failure });
  }

  /** ssh's end (bounded: a hung connection must not hold the failure back). */
  private async reasonArrived(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.closed, new Promise<void>((resolve) => { timer = setTimeout(resolve, REASON_WAIT_MS); })]);
    clearTimeout(timer);
  }

  private lastLine(): string {
    return this.stderr.trim().split('\n').pop() ?? '';
  }
}
