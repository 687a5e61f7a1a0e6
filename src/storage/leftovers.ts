// Leftovers of interrupted writes: a local repository's `<name>.tmp-<hex>`
// files (any folder, keys/ included) and a restore's `.<name>.ferry-partial-…`
// files. They are never objects or results, but a dead writer's stay forever.
//
// The rule that removes them must never remove a live writer's file, on this
// host or on another one sharing the drive. A writer modifies its file with
// every write, so a file not modified for LEFTOVER_AGE_MS (the age after which
// a lock is stale, repo/lock.ts) belongs to a writer that is dead or hung for
// that long. A restore's partial file also carries its writer's host and pid:
// on the same host, a dead pid is a leftover at once.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Backend } from './backend';
import { processAlive } from '../host/processAlive';

export const LEFTOVER_AGE_MS = 30 * 60 * 1000;

export interface TemporaryFile {
  path: string;
  size: number;
  mtimeMs: number;
}

export interface LeftoverSummary {
  files: number;
  bytes: number;
}

/** A backend that keeps temporary files where they can be listed (a local directory). */
export interface TemporaryFileHolder {
  temporaryFiles(): Promise<TemporaryFile[]>;
}

export function holdsTemporaryFiles(b: Backend): b is Backend & TemporaryFileHolder {
  return typeof (b as Partial<TemporaryFileHolder>).temporaryFiles === 'function';
}

export function isLeftoverByAge(f: { mtimeMs: number }, now = Date.now()): boolean {
  return now - f.mtimeMs > LEFTOVER_AGE_MS;
}

/** Remove the backend's temporary files that are leftovers by age; the rest stay. */
export async function removeTemporaryLeftovers(backend: Backend): Promise<LeftoverSummary> {
  const out: LeftoverSummary = { files: 0, bytes: 0 };
  if (!holdsTemporaryFiles(backend)) return out;
  for (const f of await backend.temporaryFiles()) {
    if (!isLeftoverByAge(f)) continue;
    await fsp.rm(f.path, { force: true });
    out.files++;
    out.bytes += f.size;
  }
  return out;
}

/** All of the backend's temporary files, young and old. */
export async function countTemporaryFiles(backend: Backend): Promise<LeftoverSummary & { old: number }> {
  const files = holdsTemporaryFiles(backend) ? await backend.temporaryFiles() : [];
  return { files: files.length, bytes: files.reduce((n, f) => n + f.size, 0), old: files.filter((f) => isLeftoverByAge(f)).length };
}

const PARTIAL_MARK = '.ferry-partial-';

/** The temporary name a result file is written under: `.<name>.ferry-partial-<hex>-<pid>@<host>`. */
export function partialFileName(finalPath: string, random: string): string {
  return path.join(path.dirname(finalPath), `.${path.basename(finalPath)}${PARTIAL_MARK}${random}-${process.pid}@${os.hostname()}`);
}


/**
 * Remove the leftover partial files of earlier runs writing `finalPath`: of a
 * dead process of this host, or not modified for LEFTOVER_AGE_MS. Partial
 * files of live writers, or of other hosts (younger than that), stay.
 */
export function removePartialLeftovers(finalPath: string): TemporaryFile[] {
  const dir = path.dirname(finalPath);
  const prefix = `.${path.basename(finalPath)}${PARTIAL_MARK}`;
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return []; // no directory yet: nothing left over in it
  }
  const removed: TemporaryFile[] = [];
  for (const entry of entries) {
    if (!entry.startsWith(prefix)) continue;
    const p = path.join(dir, entry);
    const st = fs.lstatSync(p, { throwIfNoEntry: false });
    if (!st?.isFile()) continue;
    const writer = /^[0-9a-f]+-(\d+)@(.+)$/.exec(entry.slice(prefix.length));
    const deadHere = writer !== null && writer[2] === os.hostname() && Number(writer[1]) !== process.pid && !processAlive(Number(writer[1]));
    if (!deadHere && !isLeftoverByAge(st)) continue;
    fs.rmSync(p, { force: true });
    removed.push({ path: p, size: st.size, mtimeMs: st.mtimeMs });
  }
  return removed;
}
