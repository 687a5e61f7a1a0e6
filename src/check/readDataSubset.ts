// Which packs `check --read-data-subset` reads. Packs are put in buckets by
// their id (a BLAKE3 name, so evenly spread): bucket = first 32 bits mod N.
// A percentage P means N = ceil(100 / P) buckets, and each run reads the next
// bucket after the one the previous run read (a cursor per repository in this
// host's state directory), so a pack present for N consecutive runs is read
// exactly once in them: every pack within N nights. `n/t` reads bucket n of t
// (1-based, as restic writes it) and moves no cursor.
import { replaceFileSync } from '../host/replacedFile';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UsageError } from '../errors';

export interface ReadDataSubset {
  /** 0-based bucket read this run. */
  bucket: number;
  /** Number of buckets. */
  of: number;
}

/** A subset as written: `5%` (rotating, needs the cursor) or `2/7` (fixed). */
export type SubsetSpec = { kind: 'rotating'; percent: number; of: number } | { kind: 'fixed'; bucket: number; of: number };

/** `5%`, `0.5%`, `2/7` → spec; undefined when it is neither. */
export function parseSubsetSpec(text: string): SubsetSpec | undefined {
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(text.trim());
  if (pct) {
    const percent = Number(pct[1]);
    if (!(percent > 0 && percent <= 100)) return undefined;
    return { kind: 'rotating', percent, of: Math.ceil(100 / percent) };
  }
  const frac = /^(\d{1,6})\/(\d{1,6})$/.exec(text.trim());
  if (frac) {
    const n = Number(frac[1]);
    const t = Number(frac[2]);
    if (!(t >= 1 && n >= 1 && n <= t)) return undefined;
    return { kind: 'fixed', bucket: n - 1, of: t };
  }
  return undefined;
}

/** Whether the pack with this hex id is in the subset. */
export function packInSubset(packId: string, subset: ReadDataSubset): boolean {
  return parseInt(packId.slice(0, 8), 16) % subset.of === subset.bucket;
}

/**
 * The rotation cursor of one repository: `<stateDir>/check-cursor/<repository id>.json`,
 * `{"of": N, "next": k}`. A changed N starts again at bucket 0.
 */
export class ReadDataCursor {
  private constructor(private readonly file: string) {}

  static at(stateDir: string, repositoryId: Buffer): ReadDataCursor {
    return new ReadDataCursor(path.join(stateDir, 'check-cursor', `${repositoryId.toString('hex')}.json`));
  }

  /** The bucket this run reads. A missing or unreadable cursor starts at 0 (costs one repeated bucket at most). */
  next(of: number): ReadDataSubset {
    let saved: { of?: unknown; next?: unknown } = {};
    try {
      const parsed: unknown = JSON.parse(fs.readFileSync(this.file, 'utf8'));
      if (parsed && typeof parsed === 'object') saved = parsed as typeof saved;
    } catch {
      // No cursor yet, or a torn one: start the rotation over.
    }
    const next = saved.of === of && Number.isInteger(saved.next) ? (saved.next as number) % of : 0;
    return { bucket: next, of };
  }

  /**
   * Moves the rotation past `done`. Returns a warning instead of throwing when
   * the cursor cannot be written: what the check found matters more than
   * where the next one starts (it reads the same subset again).
   */
  advance(done: ReadDataSubset): string | undefined {
    try {
      replaceFileSync(this.file, JSON.stringify({ of: done.of, next: (done.bucket + 1) % done.of }) + '\n', { mode: 0o600, folderMode: 0o700 });
      return undefined;
    } catch (err) {
      return `check cursor ${this.file}: cannot be written (${(err as Error).message}); the next run reads the same subset again`;
    }
  }
}

/** Resolve a spec to this run's subset: rotating specs read the cursor. */
export function subsetForRun(spec: SubsetSpec, cursor: ReadDataCursor): ReadDataSubset {
  return spec.kind === 'fixed' ? { bucket: spec.bucket, of: spec.of } : cursor.next(spec.of);
}

/** One line for a bad spec. */
export function badSubsetSpec(what: string, text: string): UsageError {
  return new UsageError(`${what}: '${text}' is not a subset; give a percentage such as 5% (rotating: every pack within ceil(100/P) runs) or n/t such as 2/7`);
}
