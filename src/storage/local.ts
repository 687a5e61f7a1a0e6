// A repository in a local directory: a USB drive, a NAS mount. Works on
// exFAT/FAT: no symlinks, hard links or permission bits are relied on, and
// every write is temp file → fsync → rename → fsync(directory). Files are
// created 0600 and folders 0700 whatever the umask (the modes are given to
// open()/mkdir(), never set by a chmod a file system may refuse).
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Backend, NotFoundError, ObjectBytes, ObjectInfo, ObjectStream, ObjectType, TruncatedObjectError, objectFolder, objectParts, readTarget } from './backend';
import { StorageError, describeSystemError } from '../errors';
import type { TemporaryFile } from './leftovers';
import { ReadHandles } from './readHandles';

const TEMP_MARK = '.tmp-';
/** Key slots and encrypted objects are nobody else's business: owner-only. */
export const PRIVATE_FILE_MODE = 0o600;
export const PRIVATE_DIR_MODE = 0o700;

/** Data packs are spread over 256 sub-folders by the first two hex digits. */
function relativePath(type: ObjectType, name: string): string {
  if (type === 'config') return 'config';
  if (type === 'data') return path.join('data', name.slice(0, 2), name);
  return path.join(objectFolder(type), name);
}

export class LocalBackend implements Backend {
  readonly location: string;
  private readonly handles = new ReadHandles();

  constructor(readonly root: string) {
    this.location = path.resolve(root);
  }

  private full(type: ObjectType, name: string): string {
    return path.join(this.location, relativePath(type, name));
  }

  async read(type: ObjectType, name: string): Promise<Buffer> {
    try {
      return await fsp.readFile(this.full(type, name));
    } catch (err) {
      throw this.translate(err, type, name, 'reading');
    }
  }

  async readRange(type: ObjectType, name: string, offset: number, length: number, into?: Uint8Array): Promise<Buffer> {
    const file = this.full(type, name);
    const readFrom = async (fd: number): Promise<Buffer> => {
      const buf = into ? readTarget(into, length) : Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const bytesRead = await readAt(fd, buf, done, length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      if (done < length) {
        const size = (await fsp.stat(file)).size;
        throw new TruncatedObjectError(
          type,
          name,
          `${this.location}/${relativePath(type, name)}: object is truncated: it is ${size} bytes, but bytes ${offset}-${offset + length} were expected; run 'ferry repair'`,
        );
      }
      return buf;
    };
    try {
      // Packs are read range by range, thousands of times: their descriptors stay open (readHandles.ts).
      if (type === 'data') return await this.handles.with(file, readFrom);
      const fd = await fsp.open(file, 'r');
      try {
        return await readFrom(fd.fd);
      } finally {
        await fd.close();
      }
    } catch (err) {
      throw this.translate(err, type, name, 'reading');
    }
  }

  async write(type: ObjectType, name: string, data: ObjectBytes): Promise<void> {
    const target = this.full(type, name);
    const stream = await this.temporaryFileStream(type, `${target}${TEMP_MARK}${randomBytes(6).toString('hex')}`, target);
    // Part by part, straight from the caller's buffers (a pack's blobs, then its header).
    for (const part of objectParts(data)) await stream.append(part);
    await stream.commit(name);
  }

  /**
   * Pieces into a temporary file as they come, renamed into place at commit: a
   * backup holds no pack-sized buffer (16 MiB of its peak, issue 11). The file
   * waits in one of the type's folders, since the final one is known only with
   * the name.
   */
  async openStream(type: ObjectType): Promise<ObjectStream> {
    const dir = path.dirname(this.full(type, randomBytes(4).toString('hex')));
    return this.temporaryFileStream(type, path.join(dir, `stream${TEMP_MARK}${randomBytes(6).toString('hex')}`));
  }

  /**
   * Every write: pieces into the temporary file `temp`, then at commit fsync,
   * rename to the object and fsync of its folder; on any failure the file is
   * removed. Errors before commit name `where` (the object's path, when known).
   */
  private async temporaryFileStream(type: ObjectType, temp: string, where = temp): Promise<ObjectStream> {
    let fh: fsp.FileHandle | undefined;
    const abort = async (): Promise<void> => {
      await fh?.close().catch(() => undefined);
      fh = undefined;
      await fsp.rm(temp, { force: true }).catch(() => undefined);
    };
    try {
      await fsp.mkdir(path.dirname(temp), { recursive: true, mode: PRIVATE_DIR_MODE });
      fh = await fsp.open(temp, 'wx', PRIVATE_FILE_MODE);
    } catch (err) {
      await abort();
      throw this.translateAt(err, type, where, 'writing');
    }
    const file = (): fsp.FileHandle => {
      if (!fh) throw new StorageError(`writing ${temp}: the object was already committed or aborted`);
      return fh;
    };
    return {
      append: async (bytes) => {
        try {
          let done = 0;
          while (done < bytes.length) done += (await file().write(bytes, done, bytes.length - done)).bytesWritten;
        } catch (err) {
          await abort();
          throw this.translateAt(err, type, where, 'writing');
        }
      },
      commit: async (name) => {
        const target = this.full(type, name);
        try {
          const done = file();
          await done.sync();
          await done.close();
          fh = undefined;
          this.handles.drop(target);
          await fsp.mkdir(path.dirname(target), { recursive: true, mode: PRIVATE_DIR_MODE });
          await fsp.rename(temp, target);
          await syncDirectory(path.dirname(target));
        } catch (err) {
          await abort();
          throw this.translate(err, type, name, 'writing');
        }
      },
      abort,
    };
  }

  async stat(type: ObjectType, name: string): Promise<ObjectInfo | undefined> {
    try {
      const st = await fsp.stat(this.full(type, name));
      return { name, size: st.size, mtime: st.mtimeMs };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw this.translate(err, type, name, 'reading');
    }
  }

  async *list(type: ObjectType): AsyncIterable<ObjectInfo> {
    if (type === 'config') {
      const st = await this.stat('config', 'config');
      if (st) yield st;
      return;
    }
    const base = path.join(this.location, objectFolder(type));
    const dirs = type === 'data' ? await readdirOrEmpty(base).then((d) => d.map((x) => path.join(base, x))) : [base];
    for (const dir of dirs) {
      for (const entry of await readdirOrEmpty(dir)) {
        if (entry.includes(TEMP_MARK)) continue;
        const st = await fsp.stat(path.join(dir, entry)).catch(() => undefined);
        if (st?.isFile()) yield { name: entry, size: st.size, mtime: st.mtimeMs };
      }
    }
  }

  async remove(type: ObjectType, name: string): Promise<void> {
    this.handles.drop(this.full(type, name));
    try {
      await fsp.rm(this.full(type, name), { force: true });
      await syncDirectory(path.dirname(this.full(type, name)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // its folder is gone too: absent is not an error
      throw this.translate(err, type, name, 'removing');
    }
  }

  /** Temporary files of writes in progress or interrupted (see storage/leftovers.ts), in every folder. */
  async temporaryFiles(): Promise<TemporaryFile[]> {
    const found: TemporaryFile[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const entry of await readdirOrEmpty(dir)) {
        const p = path.join(dir, entry);
        const st = await fsp.lstat(p).catch(() => undefined); // gone meanwhile: renamed by its writer
        if (!st) continue;
        if (st.isDirectory()) await walk(p);
        else if (st.isFile() && entry.includes(TEMP_MARK)) found.push({ path: p, size: st.size, mtimeMs: st.mtimeMs });
      }
    };
    await walk(this.location);
    return found;
  }

  async close(): Promise<void> {
    this.handles.closeAll();
  }

  private translate(err: unknown, type: ObjectType, name: string, doing: string): Error {
    const e = err as NodeJS.ErrnoException;
    if (e?.code === 'ENOENT' && doing === 'reading' && !(err instanceof StorageError)) return new NotFoundError(type, name, this.location);
    return this.translateAt(err, type, path.join(this.location, relativePath(type, name)), doing);
  }

  /** `err` of `doing` the file `where` (an object's, or a stream's temporary one), as one line. */
  private translateAt(err: unknown, type: ObjectType, where: string, doing: string): Error {
    if (err instanceof StorageError || err instanceof TruncatedObjectError) return err;
    const e = err as NodeJS.ErrnoException;
    const hint = e?.code !== 'ENOSPC'
      ? ''
      : type === 'data' || type === 'index' || type === 'restorepoints'
        // A backup's complete packs stay (indexed or found again from their headers): the next backup reuses them.
        ? '; free space on the repository drive and run the backup again: the packs it completed stay and the next backup reuses them (nothing was half-written)'
        : '; free space on the repository drive and run the command again (nothing was half-written)';
    return new StorageError(`${doing} ${where}: ${describeSystemError(err)}${hint}`, { cause: err });
  }
}

function readAt(fd: number, buf: Buffer, at: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, at, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return (await fsp.readdir(dir)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/**
 * fsync a directory so a rename in it survives power loss; FUSE/exFAT may refuse, which is harmless.
 * Off the main thread: a directory fsync commits the file system's journal (milliseconds to tens of
 * them), and a backup's main thread answers the workers' questions meanwhile (freshChunkChannel.ts).
 */
export async function syncDirectory(dir: string): Promise<void> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(dir, 'r');
    await fh.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM' && code !== 'EBADF') throw err;
  } finally {
    await fh?.close();
  }
}
