// A guest's restore point: every disk image through DiskBackup, the packs and
// indexes flushed, and the restore point written last.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Repository } from '../repo/repository';
import { PackWriter } from '../repo/packWriter';
import { AttachedConfig, DiskRecord, GuestSpec, RestorePoint, RestorePointSummary } from '../repo/restorePoint';
import { imageGuestSpec } from './guestSpec';
import { ImageSource, openImageSource } from '../dedupe/imageSource';
import { PipelinePool } from '../workers/pipelinePool';
import { InputError, UsageError, describeSystemError } from '../errors';
import { unsafeFileName } from '../repo/fileName';
import { DiskBackup, DiskProgress, IncrementalBase } from './diskBackup';
import { RetentionCoverage, coverRetention } from '../repo/retentionCoverage';

export interface DiskInput {
  source: ImageSource;
  /** File name the disk restores as. */
  name: string;
  /** Changed-block tracking: read only what changed since this base. */
  base?: IncrementalBase;
  tracking?: { kind: string; token: string };
  fullReadReason?: string;
  /** Where the disk came from, if not `source.path` (import-tar reads a temporary copy). */
  sourcePath?: string;
}

export interface GuestBackupRequest {
  guest: string;
  disks: DiskInput[];
  config?: AttachedConfig;
  tags: string[];
  /** The moment the disks are from, if not now (import-tar keeps the exported restore point's time). */
  time?: string;
  /** When the work began, if before this call (import-tar reads the tar first); `stats.durationMs` counts from it. */
  startedAt?: number;
  /** The machine, for a rebuild; recorded as the restore point's `spec`. */
  spec?: GuestSpec;
  /**
   * Confirms the repository lock right before the restore point is written
   * (FORMAT.md, garbage-collection rule 3: RepositoryLock.verifyFresh); throws to stop.
   */
  confirmLock?: () => Promise<void>;
  /**
   * Called once every disk is read, before the restore point is written: lets
   * go of a guest held for the read (snapshot = "pause" / "shutdown") and says
   * how long it was held, recorded in the restore point's stats.
   */
  afterRead?: () => Promise<GuestHoldStats>;
  /** Cut packs at this size at most: guests backed up at once share the memory budget's one pack buffer. */
  packBytes?: number;
}

/** How long the guest was kept from running for this restore point, in ms (absent: not at all). */
export interface GuestHoldStats {
  pauseMs?: number;
  downMs?: number;
}

export interface GuestBackupProgress extends DiskProgress {
  totalBytes: number;
  newBytes: number;
  disk: string;
}

export interface GuestBackupResult {
  id: string;
  restorePoint: RestorePoint;
  /** S3 Object Lock: what the point needs, raised to outlast it (repo/retentionCoverage.ts). */
  retention?: RetentionCoverage;
}

/**
 * The request for `ferry backup --guest NAME IMAGE...`: every input checked
 * before anything is written, so bad input leaves no trace.
 */
export function imageBackupRequest(guest: string, images: string[], configPath: string | undefined, tags: string[]): GuestBackupRequest {
  if (!guest || /[\x00-\x1f]/.test(guest)) throw UsageError.about({ parameter: 'guest name', value: `'${guest}'`, detail: 'not a guest name' });
  if (images.length === 0) throw new UsageError('backup: no image given; name one or more raw image files or block devices');
  const sources = images.map(openImageSource);
  const names = diskNames(images);
  let config: AttachedConfig | undefined;
  if (configPath) {
    try {
      const st = fs.statSync(configPath);
      if (!st.isFile()) throw InputError.about({ parameter: 'guest config', value: configPath, detail: "not a regular file; give the guest's hypervisor config file" });
      config = { fileName: path.basename(configPath), content: fs.readFileSync(configPath).toString('base64') };
    } catch (err) {
      if (err instanceof InputError) throw err;
      throw InputError.about({ parameter: 'guest config', value: configPath, detail: `${describeSystemError(err)}; give the guest's hypervisor config file` });
    }
  }
  const spec = imageGuestSpec(
    images.map((image, i) => ({ name: names[i], path: image })),
    config && { fileName: config.fileName, text: Buffer.from(config.content, 'base64').toString('utf8') },
  );
  return { guest, disks: sources.map((source, i) => ({ source, name: names[i] })), config, tags, spec };
}

/**
 * Offer each disk the same-named disk of the guest's latest restore point as
 * its page-patch base (see dedupe/pagePatch.ts). Disks keep a base they have.
 */
export async function withPreviousDisks(repo: Repository, req: GuestBackupRequest, points?: RestorePointSummary[]): Promise<GuestBackupRequest> {
  // A damaged point is passed over: the base only serves deduplication (page patches), which checks what it reuses.
  const latest = (points ?? (await repo.listAllRestorePoints()).points).filter((rp) => rp.guest === req.guest).pop();
  if (!latest) return req;
  const previous = await repo.loadRestorePointByName(latest.id);
  return {
    ...req,
    disks: req.disks.map((d) => {
      const prev = previous.disks.find((p) => p.name === d.name);
      return d.base || !prev ? d : { ...d, base: { previous: prev } };
    }),
  };
}

/** Distinct restore file names: the base names, suffixed when two collide. */
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
  const started = req.startedAt ?? Date.now();
  // Checked before anything is stored: a restore point names the files `restore --to DIR` writes.
  const unsafe = unsafeFileName(req);
  if (unsafe) throw new InputError(`${req.guest}: ${unsafe}; give the image a plain file name`);
  const writer = new PackWriter(repo, undefined, undefined, Math.min(pool.sizing.packBytes, req.packBytes ?? Infinity));
  const diskBackup = new DiskBackup(repo, pool, writer);
  const totalBytes = req.disks.reduce((n, d) => n + d.source.size, 0);
  const disks: DiskRecord[] = [];
  let doneBefore = 0;
  let readBytes = 0;
  let reusedRegions = 0;
  // A failure drops the pack being written; the packs committed before stay, and the next backup reuses them.
  await writer.fillAndFinish(async () => {
    for (const disk of req.disks) {
      const result = await diskBackup.run(
        disk.source,
        disk.name,
        (p) =>
          onProgress?.({
            disk: disk.name,
            totalBytes,
            doneBytes: doneBefore + p.doneBytes,
            readBytes: readBytes + p.readBytes,
            newBytes: writer.newBytes,
          }),
        disk.base,
      );
      const sourcePath = disk.sourcePath ?? result.record.sourcePath;
      disks.push({ ...result.record, sourcePath, readBytes: result.readBytes, tracking: disk.tracking, fullReadReason: disk.fullReadReason });
      doneBefore += disk.source.size;
      readBytes += result.readBytes;
      reusedRegions += result.reusedRegions;
    }
  });
  const held = (await req.afterRead?.()) ?? {};
  const restorePoint: RestorePoint = {
    version: 1,
    guest: req.guest,
    hostname: os.hostname(),
    time: req.time ?? new Date().toISOString(),
    tags: req.tags,
    disks,
    config: req.config,
    ...(req.spec ? { spec: req.spec } : {}),
    stats: {
      logicalBytes: totalBytes,
      readBytes,
      newBlobs: writer.newBlobs,
      newBytes: writer.newBytes,
      durationMs: Date.now() - started,
      reusedRegions,
      ...(held.pauseMs !== undefined ? { pauseMs: held.pauseMs } : {}),
      ...(held.downMs !== undefined ? { downMs: held.downMs } : {}),
    },
  };
  // Packs and index files are stored: what the point needs outlasts it before it is written.
  const retention = await coverRetention(repo, disks);
  await req.confirmLock?.();
  const id = await repo.saveRestorePoint(restorePoint);
  return { id, restorePoint, ...(retention ? { retention } : {}) };
}
