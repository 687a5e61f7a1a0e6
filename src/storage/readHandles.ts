// Open file descriptors of a local repository's packs, kept between reads: a
// restore of page-patched chunks reads thousands of small ranges from a few
// dozen packs, and an open and a close per read took more of the main
// thread's time than the reads (profile of a bench night-3 restore: open
// 0.22 s + close 0.29 s against read 0.28 s), so the workers waited for it.
// Packs never change under their name (it is their content's hash); a write
// or removal through this backend drops the name's descriptor all the same.
// Plain descriptors, not FileHandles: those are closed with a warning when
// garbage-collected, and a backend someone forgot to close must stay quiet.
import * as fs from 'node:fs';

interface Entry {
  fd: Promise<number>;
  /** The descriptor once open: closed synchronously, so a drive can be unmounted right after the backend closes. */
  opened?: number;
  /** Reads using it now. */
  users: number;
  /** Dropped from the cache: closed when the last user is done. */
  dropped: boolean;
}

export class ReadHandles {
  /** In least- to most-recently-used order (a Map keeps insertion order). */
  private readonly open = new Map<string, Entry>();

  constructor(private readonly capacity = 32) {}

  /** Run `fn` with a descriptor for `file`, opened or reused. */
  async with<T>(file: string, fn: (fd: number) => Promise<T>): Promise<T> {
    let entry = this.open.get(file);
    if (entry) {
      this.open.delete(file);
    } else {
      const fresh: Entry = { fd: openForReading(file), users: 0, dropped: false };
      fresh.fd.then(
        (fd) => (fresh.opened = fd),
        () => this.forget(file, fresh),
      );
      entry = fresh;
    }
    this.open.set(file, entry);
    entry.users++;
    try {
      return await fn(await entry.fd);
    } finally {
      entry.users--;
      if (entry.dropped && entry.users === 0) closeQuietly(entry);
      this.evict();
    }
  }

  /** `file` was written or removed: later reads open it afresh. */
  drop(file: string): void {
    const entry = this.open.get(file);
    if (entry) this.forget(file, entry);
  }

  /** Close every descriptor (those in use once their reads finish). */
  closeAll(): void {
    for (const [file, entry] of [...this.open]) this.forget(file, entry);
  }

  private forget(file: string, entry: Entry): void {
    if (this.open.get(file) === entry) this.open.delete(file);
    if (entry.dropped) return;
    entry.dropped = true;
    if (entry.users === 0) closeQuietly(entry);
  }

  private evict(): void {
    for (const [file, entry] of this.open) {
      if (this.open.size <= this.capacity) return;
      if (entry.users === 0) this.forget(file, entry);
    }
  }
}

function openForReading(file: string): Promise<number> {
  return new Promise((resolve, reject) => fs.open(file, 'r', (err, fd) => (err ? reject(err) : resolve(fd))));
}

function closeQuietly(entry: Entry): void {
  // A close that fails has nothing left to protect; an open that failed has nothing to close.
  if (entry.opened !== undefined) {
    try {
      fs.closeSync(entry.opened);
    } catch {
      /* already closed */
    }
  } else {
    entry.fd.then((n) => fs.close(n, () => undefined)).catch(() => undefined);
  }
}
