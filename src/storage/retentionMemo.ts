// Remembers, in a local file, the Object Lock retention this host gave or
// read for each object, so that keeping the retention of needed packs ahead
// of the newest restore point (repo/retentionCoverage.ts) does not ask S3
// for thousands of retentions every night: an object this host wrote or
// extended costs no request until its remembered retention falls short.
//
// Why a remembered date can be trusted: a retention can only be lengthened
// (COMPLIANCE by nobody shortened; GOVERNANCE only by a user allowed to
// bypass it), so the real date is at least the remembered one. A date
// remembered too short (another host extended it) costs one extension
// more, never a gap. Objects are content-named: a name written again after
// it was deleted gets a new retention, remembered on that write.
//
// The file: one line per record, `<type> <name> <mode> <until ms>`, the last
// line of a name winning; rewritten without stale lines when it grows. Like
// the cache, a failure to read or write it costs requests, not the command.
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Backend, ObjectBytes, ObjectInfo, ObjectLock, ObjectType, Retention, objectLockMargin } from './backend';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from './local';

/** Objects whose retention is kept ahead of new restore points (and so worth remembering). */
const REMEMBERED: ReadonlySet<ObjectType> = new Set<ObjectType>(['config', 'data', 'index']);
const DAY_MS = 86_400_000;

export class RetentionMemoBackend implements Backend {
  readonly location: string;
  readonly objectLock?: ObjectLock;
  private known?: Map<string, Retention>;
  private lines = 0;

  constructor(private readonly inner: Backend, readonly file: string) {
    this.location = inner.location;
    const lock = inner.objectLock;
    if (lock) {
      this.objectLock = {
        mode: lock.mode,
        days: lock.days,
        retention: async (type, name) => {
          const remembered = (await this.memo()).get(key(type, name));
          if (remembered) return remembered;
          const r = await lock.retention(type, name);
          if (r) await this.remember(type, name, r);
          return r;
        },
        extendRetention: async (type, name, to) => {
          await lock.extendRetention(type, name, to);
          await this.remember(type, name, to);
        },
      };
    }
  }

  read(type: ObjectType, name: string): Promise<Buffer> {
    return this.inner.read(type, name);
  }

  readRange(type: ObjectType, name: string, offset: number, length: number, into?: Uint8Array): Promise<Buffer> {
    return this.inner.readRange(type, name, offset, length, into);
  }

  async write(type: ObjectType, name: string, data: ObjectBytes): Promise<void> {
    // The server counts the days from its receipt of the write, which is later than now: remembered short, never long.
    const started = Date.now();
    await this.inner.write(type, name, data);
    const lock = this.inner.objectLock;
    if (lock && REMEMBERED.has(type)) {
      const margin = type === 'config' ? 0 : objectLockMargin(lock.days);
      await this.remember(type, name, { mode: lock.mode, until: new Date(started + lock.days * DAY_MS + margin) });
    }
  }

  stat(type: ObjectType, name: string): Promise<ObjectInfo | undefined> {
    return this.inner.stat(type, name);
  }

  list(type: ObjectType): AsyncIterable<ObjectInfo> {
    return this.inner.list(type);
  }

  async remove(type: ObjectType, name: string): Promise<void> {
    await this.inner.remove(type, name);
    // Gone now; written again, it gets a retention of its own.
    this.known?.delete(key(type, name));
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async memo(): Promise<Map<string, Retention>> {
    if (this.known) return this.known;
    const known = new Map<string, Retention>();
    const text = await fsp.readFile(this.file, 'utf8').catch(() => '');
    const now = Date.now();
    for (const line of text.split('\n')) {
      const [type, name, mode, ms] = line.split(' ');
      const until = Number(ms);
      if (!name || (mode !== 'COMPLIANCE' && mode !== 'GOVERNANCE') || !Number.isFinite(until)) continue;
      this.lines++;
      // A retention already passed says nothing worth a line: the object needs extending either way.
      if (until > now) known.set(`${type} ${name}`, { mode, until: new Date(until) });
      else known.delete(`${type} ${name}`);
    }
    this.known = known;
    if (this.lines > 2 * known.size + 1000) await this.rewrite();
    return known;
  }

  private async remember(type: ObjectType, name: string, r: Retention): Promise<void> {
    const known = await this.memo();
    const k = key(type, name);
    const before = known.get(k);
    if (before && before.until >= r.until) return;
    known.set(k, r);
    this.lines++;
    try {
      await fsp.mkdir(path.dirname(this.file), { recursive: true, mode: PRIVATE_DIR_MODE });
      await fsp.appendFile(this.file, `${k} ${r.mode} ${r.until.getTime()}\n`, { mode: PRIVATE_FILE_MODE });
    } catch {
      // Not remembered: the next run asks S3 once more.
    }
  }

  /** The file without superseded and passed lines: temp file + rename, so a killed run leaves the old one. */
  private async rewrite(): Promise<void> {
    const temp = `${this.file}.tmp-${process.pid}`;
    const text = [...this.known!].map(([k, r]) => `${k} ${r.mode} ${r.until.getTime()}\n`).join('');
    try {
      await fsp.writeFile(temp, text, { mode: PRIVATE_FILE_MODE });
      await fsp.rename(temp, this.file);
      this.lines = this.known!.size;
    } catch {
      await fsp.rm(temp, { force: true }).catch(() => undefined);
    }
  }
}

function key(type: ObjectType, name: string): string {
  return `${type} ${name}`;
}
