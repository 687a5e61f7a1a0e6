// Keeps local copies of the small objects every command reads (index,
// restore points, keys, config), so opening a remote repository does not download
// them again. The bytes are stored as they come from the repository, i.e.
// already encrypted and authenticated by the layer above: the cache needs no
// key and a tampered cache file is caught like a tampered remote object.
//
// Validity: these objects are immutable and named by the hash of their content,
// so a cached copy is good as long as its name exists. `config` is not
// content-named but is written once at init and never rewritten. A name that
// disappears (removed here, or pruned by another host) is evicted on remove()
// and on a complete list(). Data packs are never cached: they are large and
// read once per restore.
//
// Use one cache directory per repository (e.g. ~/.cache/ferry/<repository id>).
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Backend, ObjectBytes, ObjectInfo, ObjectLock, ObjectType, objectFolder, objectParts, placedInto } from './backend';
import { StorageError, describeSystemError } from '../errors';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from './local';

const CACHED: ReadonlySet<ObjectType> = new Set<ObjectType>(['config', 'keys', 'index', 'restorepoints']);
const TEMP_MARK = '.tmp-';
/** Names are hashes; anything that could step outside the cache directory is refused. */
const SAFE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

export class CachedBackend implements Backend {
  readonly location: string;
  /** Retentions are remembered by retentionMemo.ts, inside this cache: passed on as they are. */
  readonly objectLock?: ObjectLock;
  private madePrivate = false;

  constructor(private readonly inner: Backend, readonly dir: string) {
    this.location = inner.location;
    this.objectLock = inner.objectLock;
  }

  /** Whether objects of this type are kept in the cache. */
  static caches(type: ObjectType): boolean {
    return CACHED.has(type);
  }

  private file(type: ObjectType, name: string): string | undefined {
    if (!CACHED.has(type) || !SAFE_NAME.test(name) || name.includes(TEMP_MARK)) return undefined;
    return type === 'config' ? path.join(this.dir, 'config') : path.join(this.dir, objectFolder(type), name);
  }

  async read(type: ObjectType, name: string): Promise<Buffer> {
    const file = this.file(type, name);
    if (!file) return this.inner.read(type, name);
    await this.makePrivate();
    const cached = await readIfExists(file);
    if (cached) return cached;
    const data = await this.inner.read(type, name);
    await this.store(file, data);
    return data;
  }

  async readRange(type: ObjectType, name: string, offset: number, length: number, into?: Uint8Array): Promise<Buffer> {
    const file = this.file(type, name);
    const cached = file ? await readIfExists(file) : undefined;
    // A short cached copy falls through to the inner backend, which reports the short object itself.
    if (cached && offset + length <= cached.length) return into ? placedInto(cached.subarray(offset, offset + length), into) : Buffer.from(cached.subarray(offset, offset + length));
    return this.inner.readRange(type, name, offset, length, into);
  }

  async write(type: ObjectType, name: string, data: ObjectBytes): Promise<void> {
    await this.inner.write(type, name, data);
    const file = this.file(type, name);
    // Write-through: what this host wrote it will read back (a backup writes index, then reads it next night).
    if (file) {
      await this.makePrivate();
      await this.store(file, data);
    }
  }

  async stat(type: ObjectType, name: string): Promise<ObjectInfo | undefined> {
    const file = this.file(type, name);
    if (file) {
      const st = await fsp.stat(file).catch(() => undefined);
      if (st?.isFile()) return { name, size: st.size };
    }
    return this.inner.stat(type, name);
  }

  /** Always asks the inner backend; a complete listing evicts cached names that are gone. */
  async *list(type: ObjectType): AsyncIterable<ObjectInfo> {
    if (!CACHED.has(type)) {
      yield* this.inner.list(type);
      return;
    }
    const present = new Set<string>();
    for await (const info of this.inner.list(type)) {
      present.add(info.name);
      yield info;
    }
    // Only reached when the caller read the listing to the end, i.e. it is complete.
    for (const name of await this.cachedNames(type)) {
      if (!present.has(name)) await this.evict(type, name);
    }
  }

  async remove(type: ObjectType, name: string): Promise<void> {
    await this.inner.remove(type, name);
    await this.evict(type, name);
  }

  /** Drop a cached copy, e.g. one that failed authentication; the next read fetches it again. */
  async evict(type: ObjectType, name: string): Promise<void> {
    const file = this.file(type, name);
    if (file) await fsp.rm(file, { force: true }).catch((err) => this.fail('removing', file, err));
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async cachedNames(type: ObjectType): Promise<string[]> {
    if (type === 'config') return (await fsp.stat(path.join(this.dir, 'config')).catch(() => undefined)) ? ['config'] : [];
    try {
      return (await fsp.readdir(path.join(this.dir, objectFolder(type)))).filter((n) => !n.includes(TEMP_MARK));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw this.fail('reading', path.join(this.dir, objectFolder(type)), err);
    }
  }

  /**
   * temp file + rename, so a killed process never leaves a half-written copy that
   * would later be served as the object. No fsync: after a power loss the cache
   * may lose entries, which only costs a download. A failure to cache (cache
   * disk full) is not a failure of the operation: the repository has the object.
   */
  private async store(file: string, data: ObjectBytes): Promise<void> {
    const temp = `${file}${TEMP_MARK}${randomBytes(6).toString('hex')}`;
    try {
      // Owner-only like the repository itself: the cache holds key slots and the index.
      await fsp.mkdir(path.dirname(file), { recursive: true, mode: PRIVATE_DIR_MODE });
      await fsp.writeFile(temp, objectParts(data), { flag: 'wx', mode: PRIVATE_FILE_MODE });
      await fsp.rename(temp, file);
    } catch {
      await fsp.rm(temp, { force: true }).catch(() => undefined);
    }
  }

  /**
   * Once per process: the cache folder is 0700 even if an earlier ferry made it
   * 0755 with 0644 files (closing the folder closes them all). Like every cache
   * failure this one does not fail the command: the cache is only a saving.
   */
  private async makePrivate(): Promise<void> {
    if (this.madePrivate) return;
    this.madePrivate = true;
    try {
      await fsp.mkdir(this.dir, { recursive: true, mode: PRIVATE_DIR_MODE });
      await fsp.chmod(this.dir, PRIVATE_DIR_MODE);
    } catch {
      // Unreadable or foreign cache folder: reads fall through to the repository (readIfExists).
    }
  }

  private fail(doing: string, file: string, err: unknown): StorageError {
    return new StorageError(`cache ${this.dir}: ${doing} ${file}: ${describeSystemError(err)}; delete the cache directory`, { cause: err });
  }
}

async function readIfExists(file: string): Promise<Buffer | undefined> {
  try {
    return await fsp.readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    // An unreadable cache entry is not worth failing a backup over: fetch from the repository.
    return undefined;
  }
}
