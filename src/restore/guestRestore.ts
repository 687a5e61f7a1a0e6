// Restoring a restore point: all disks (and the config) into a directory, or
// one disk onto a device or file. Files are written under a temporary name,
// fsynced and renamed, so an interrupted or failed restore leaves nothing
// half-written under the final name.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Repository } from '../repo/repository';
import { StoredRestorePoint } from '../repo/restorePoint';
import { PipelinePool } from '../workers/pipelinePool';
import { InputError, UsageError, describeSystemError } from '../errors';
import { unsafeFileName } from '../repo/fileName';
import { restoreDisk } from './diskRestore';
import { DEFAULT_OUTPUT_MODE, writeFileAtomically } from './atomicFile';
import { blockDeviceSize } from '../dedupe/imageSource';
import { TemporaryFile, removePartialLeftovers } from '../storage/leftovers';
import { fileHoldsDisk } from './verifyRestored';

/** How errors about the `dir` / `target` parameter name it (Culprit.parameter). */
export const RESTORE_TARGET = 'restore target';

export interface RestoredFile {
  path: string;
  size: number;
  writtenBytes: number;
  /** Kept as it was: it already held exactly this data (a re-run after an interrupted restore). */
  alreadyRestored?: boolean;
}

export interface RestoreProgress {
  disk: string;
  writtenBytes: number;
  totalBytes: number;
}

export interface DirectoryRestoreOptions {
  /** Overwrite existing files that hold other data (without it they stop the restore). */
  force?: boolean;
  onProgress?: (p: RestoreProgress) => void;
  onLeftover?: (f: TemporaryFile) => void;
  /** Permission bits of the files created. */
  mode?: number;
}

/** Every disk and the config of `rp` into `dir`. */
export async function restoreToDirectory(
  repo: Repository,
  pool: PipelinePool,
  rp: StoredRestorePoint,
  dir: string,
  { force = false, onProgress, onLeftover, mode = DEFAULT_OUTPUT_MODE }: DirectoryRestoreOptions = {},
): Promise<RestoredFile[]> {
  // Restore points come from other hosts and from imported tars: a name that leaves DIR is refused before anything is written.
  const unsafe = unsafeFileName(rp);
  if (unsafe) throw new InputError(`restore point ${rp.id.slice(0, 8)} of ${rp.guest}: ${unsafe}; refusing to write outside ${dir}`);
  const outputs = rp.disks.map((d) => path.join(dir, d.name));
  if (rp.config) outputs.push(path.join(dir, rp.config.fileName));
  if (fs.existsSync(dir) && !fs.statSync(dir).isDirectory()) {
    throw InputError.about({ parameter: RESTORE_TARGET, value: dir, detail: 'exists and is not a directory; give a directory to restore into' });
  }
  // Resume: without --force, files that already hold exactly what this restore
  // point would write (a re-run after an interrupted restore) are kept; any other existing file stops it.
  const done = new Set<string>();
  if (!force) {
    for (const p of outputs.filter((o) => fs.existsSync(o))) {
      const disk = rp.disks.find((d) => path.join(dir, d.name) === p);
      const same = disk
        ? await fileHoldsDisk(repo, disk, p)
        : rp.config !== undefined && fs.statSync(p).isFile() && fs.readFileSync(p).equals(Buffer.from(rp.config.content, 'base64'));
      if (!same) {
        throw InputError.about({
          parameter: RESTORE_TARGET, value: dir,
          detail: `${p} already exists and does not hold this restore point's data; choose another directory`,
          override: { parameter: 'force', effect: 'overwrite it' },
        });
      }
      done.add(p);
    }
  }
  try {
    // A directory ferry creates holds plaintext guest disks: owner-only.
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw InputError.about({ parameter: RESTORE_TARGET, value: dir, detail: `cannot create: ${describeSystemError(err)}` });
  }
  for (const p of outputs) for (const f of removePartialLeftovers(p)) onLeftover?.(f);
  const restored: RestoredFile[] = [];
  const totalBytes = rp.disks.reduce((n, d) => n + d.dataBytes, 0);
  let before = 0;
  for (const disk of rp.disks) {
    const finalPath = path.join(dir, disk.name);
    if (done.has(finalPath)) {
      before += disk.dataBytes;
      restored.push({ path: finalPath, size: disk.size, writtenBytes: 0, alreadyRestored: true });
      continue;
    }
    const written = await writeFileAtomically(finalPath, (temp) =>
      restoreDisk(repo, pool, disk, temp, {
        zeroFill: false,
        onProgress: (w) => onProgress?.({ disk: disk.name, writtenBytes: before + w, totalBytes }),
      }), disk.size, mode,
    );
    before += disk.dataBytes;
    restored.push({ path: finalPath, size: disk.size, writtenBytes: written });
  }
  if (rp.config) {
    const content = Buffer.from(rp.config.content, 'base64');
    const finalPath = path.join(dir, rp.config.fileName);
    if (done.has(finalPath)) {
      restored.push({ path: finalPath, size: content.length, writtenBytes: 0, alreadyRestored: true });
      return restored;
    }
    await writeFileAtomically(finalPath, async (temp) => {
      fs.writeFileSync(temp, content);
      return content.length;
    }, 0, mode);
    restored.push({ path: finalPath, size: content.length, writtenBytes: content.length });
  }
  return restored;
}

/** One disk onto a block device or an existing/new file, written in place. */
export async function restoreDiskTo(
  repo: Repository,
  pool: PipelinePool,
  rp: StoredRestorePoint,
  diskNumber: number,
  target: string,
  opts: { force: boolean; noSparse: boolean; onProgress?: (p: RestoreProgress) => void; onLeftover?: (f: TemporaryFile) => void; mode?: number },
): Promise<RestoredFile> {
  const disk = rp.disks[diskNumber];
  if (!disk) {
    throw UsageError.about({ parameter: 'disk number', value: String(diskNumber), detail: `restore point ${rp.id.slice(0, 8)} has ${rp.disks.length} disk(s), numbered from 0` });
  }
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(target);
  } catch {
    st = undefined;
  }
  if (st?.isDirectory()) throw InputError.about({ parameter: RESTORE_TARGET, value: target, detail: 'is a directory; to restore one disk give a block device or file' });
  if (st?.isBlockDevice()) {
    const size = blockDeviceSize(fs.statSync(target));
    if (size < disk.size) {
      throw InputError.about({ parameter: RESTORE_TARGET, value: target, detail: `device holds ${size} bytes but disk ${disk.name} needs ${disk.size}; use a device at least that large` });
    }
    if (!opts.force) {
      throw InputError.about({
        parameter: RESTORE_TARGET, value: target, detail: 'block device would be overwritten',
        override: { parameter: 'force', effect: `write disk ${disk.name} onto it` },
      });
    }
  } else if (st) {
    if (!opts.force) throw InputError.about({ parameter: RESTORE_TARGET, value: target, detail: 'already exists', override: { parameter: 'force', effect: 'overwrite it' } });
  }
  const progress = (w: number) => opts.onProgress?.({ disk: disk.name, writtenBytes: w, totalBytes: disk.dataBytes });
  if (st?.isBlockDevice()) {
    const written = await restoreDisk(repo, pool, disk, target, { zeroFill: opts.noSparse, onProgress: progress });
    return { path: target, size: disk.size, writtenBytes: written };
  }
  for (const f of removePartialLeftovers(path.resolve(target))) opts.onLeftover?.(f);
  const written = await writeFileAtomically(path.resolve(target), (temp) =>
    restoreDisk(repo, pool, disk, temp, { zeroFill: false, onProgress: progress }), disk.size, opts.mode,
  );
  return { path: target, size: disk.size, writtenBytes: written };
}
