// A guest's restore point: every disk image through DiskBackup, the packs and
// indexes flushed, and the restore point written last.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Repository } from '../repo/repository';
import { PackWriter } from '../repo/packWriter';
import { AttachedConfig, DiskRecord, RestorePoint } from '../repo/restorePoint';
import { ImageSource, openImageSource } from '../dedupe/imageSource';
import { PipelinePool } from '../workers/pipelinePool';
import { InputError, UsageError, describeSystemError } from '../errors';
import { DiskBackup, DiskProgress } from './diskBackup';

export interface GuestBackupRequest {
  guest: string;
  images: string[];
  configPath?: string;
  tags: string[];
}

export interface GuestBackupProgress extends DiskProgress {
  totalBytes: number;
  newBytes: number;
  disk: string;
}

export interface GuestBackupResult {
  id: string;
  restorePoint: RestorePoint;
}

/** Check every input before anything is written, so bad input leaves no trace. */
export function validateGuestBackup(req: GuestBackupRequest): { sources: ImageSource[]; config?: AttachedConfig } {
  if (!req.guest || /[\x00-\x1f]/.test(req.guest)) throw new UsageError(`--guest: '${req.guest}' is not a guest name`);
  if (req.images.length === 0) throw new UsageError('backup: no image given; name one or more raw image files or block devices');
  const sources = req.images.map(openImageSource);
  let config: AttachedConfig | undefined;
  if (req.configPath) {
    try {
      const st = fs.statSync(req.configPath);
      if (!st.isFile()) throw new InputError(`--config ${req.configPath}: not a regular file; give the guest's hypervisor config file`);
      config = { fileName: path.basename(req.configPath), content: fs.readFileSync(req.configPath).toString('base64') };
    } catch (err) {
      if (err instanceof InputError) throw err;
      throw new InputError(`--config ${req.configPath}: ${describeSystemError(err)}; give the guest's hypervisor config file`);
    }
  }
  return { sources, config };
}

/** Distinct restore file names: the images' base names, suffixed when two collide. */
export function diskNames(paths: string[]): string[] {
  const seen = new Map<string, number>();
  return paths.map((p) => {
    const base = path.basename(p);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    return n === 0 ? base : `${base}.${n}`;
  });
}

export async function backupGuest(
  repo: Repository,
  pool: PipelinePool,
  req: GuestBackupRequest,
  onProgress?: (p: GuestBackupProgress) => void,
): Promise<GuestBackupResult> {
  const started = Date.now();
  const { sources, config } = validateGuestBackup(req);
  const writer = new PackWriter(repo);
  const diskBackup = new DiskBackup(repo, pool, writer);
  const names = diskNames(sources.map((s) => s.path));
  const totalBytes = sources.reduce((n, s) => n + s.size, 0);
  const disks: DiskRecord[] = [];
  let doneBefore = 0;
  let readBytes = 0;
  for (let i = 0; i < sources.length; i++) {
    const result = await diskBackup.run(sources[i], names[i], (p) =>
      onProgress?.({
        disk: names[i],
        totalBytes,
        doneBytes: doneBefore + p.doneBytes,
        readBytes: readBytes + p.readBytes,
        newBytes: writer.newBytes,
      }),
    );
    disks.push(result.record);
    doneBefore += sources[i].size;
    readBytes += result.readBytes;
  }
  await writer.finish();
  const restorePoint: RestorePoint = {
    version: 1,
    guest: req.guest,
    hostname: os.hostname(),
    time: new Date().toISOString(),
    tags: req.tags,
    disks,
    config,
    stats: {
      logicalBytes: totalBytes,
      readBytes,
      newBlobs: writer.newBlobs,
      newBytes: writer.newBytes,
      durationMs: Date.now() - started,
    },
  };
  const id = await repo.saveRestorePoint(restorePoint);
  return { id, restorePoint };
}
