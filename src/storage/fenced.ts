// A Backend that can be shut: after `fence(err)` every operation throws `err`.
// A command whose repository lock was lost must not write another byte (the
// lock may be someone else's now), and should stop at its next storage access
// instead of running on; the command's own cleanup still runs.
import { Backend, ObjectBytes, ObjectInfo, ObjectLock, ObjectStream, ObjectType } from './backend';
import { holdsTemporaryFiles, TemporaryFile } from './leftovers';

export class FencedBackend implements Backend {
  private fencedBy?: Error;
  /** The inner backend's optional abilities, passed through (fenced too) only where it has them. */
  readonly evict?: (type: ObjectType, name: string) => Promise<void>;
  readonly temporaryFiles?: () => Promise<TemporaryFile[]>;
  readonly objectLock?: ObjectLock;
  readonly openStream?: (type: ObjectType) => Promise<ObjectStream>;

  constructor(private readonly inner: Backend) {
    const openStream = inner.openStream?.bind(inner);
    if (openStream) {
      this.openStream = async (type) => {
        this.check();
        const stream = await openStream(type);
        // Fenced between pieces: the stream is dropped, and nothing of it becomes an object.
        const checked = async <T>(step: () => Promise<T>): Promise<T> => {
          if (this.fencedBy) {
            await stream.abort();
            throw this.fencedBy;
          }
          return step();
        };
        return {
          append: (bytes) => checked(() => stream.append(bytes)),
          commit: (name) => checked(() => stream.commit(name)),
          abort: () => stream.abort(),
        };
      };
    }
    const evict = inner.evict?.bind(inner);
    if (evict) {
      this.evict = async (type, name) => {
        this.check();
        return evict(type, name);
      };
    }
    const lock = inner.objectLock;
    if (lock) {
      this.objectLock = {
        mode: lock.mode,
        days: lock.days,
        retention: async (type, name) => {
          this.check();
          return lock.retention(type, name);
        },
        extendRetention: async (type, name, to) => {
          this.check();
          return lock.extendRetention(type, name, to);
        },
      };
    }
    if (holdsTemporaryFiles(inner)) {
      this.temporaryFiles = async () => {
        this.check();
        return inner.temporaryFiles();
      };
    }
  }

  get location(): string {
    return this.inner.location;
  }

  /** From now on every operation but `close` fails with `err`. */
  fence(err: Error): void {
    this.fencedBy ??= err;
  }

  private check(): void {
    if (this.fencedBy) throw this.fencedBy;
  }

  async read(type: ObjectType, name: string): Promise<Buffer> {
    this.check();
    return this.inner.read(type, name);
  }

  async readRange(type: ObjectType, name: string, offset: number, length: number, into?: Uint8Array): Promise<Buffer> {
    this.check();
    return this.inner.readRange(type, name, offset, length, into);
  }

  async write(type: ObjectType, name: string, data: ObjectBytes): Promise<void> {
    this.check();
    return this.inner.write(type, name, data);
  }

  async stat(type: ObjectType, name: string): Promise<ObjectInfo | undefined> {
    this.check();
    return this.inner.stat(type, name);
  }

  async *list(type: ObjectType): AsyncIterable<ObjectInfo> {
    this.check();
    for await (const info of this.inner.list(type)) {
      this.check();
      yield info;
    }
  }

  async remove(type: ObjectType, name: string): Promise<void> {
    this.check();
    return this.inner.remove(type, name);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
