// SnapshotProvider for disks of running libvirt (KVM/QEMU) domains: a
// point-in-time copy made by libvirt itself, `virsh backup-begin` in push
// mode. QEMU fixes the point in time of all the guest's disks together when
// the job starts (copy-before-write), so the guest keeps running throughout
// and no pause is needed (pointInTimeByItself).
//
// Changed-block tracking: every run creates a checkpoint `ferry-<runId>` (a
// persistent dirty bitmap in each qcow2 disk). When the previous restore
// point's checkpoint still exists, the run is incremental from it: the
// qcow2 target then holds exactly the clusters written since, and its
// allocation map is `changed`. When tracking is lost (checkpoint deleted,
// domain redefined, disk swapped, libvirt refusing the incremental) the disk
// is copied in full and `fullReadReason` says why. Raw disks cannot carry a
// bitmap and are always copied in full.
//
// Files: targets live in `workDir` as `ferry-<runId>-<domain>-<dev>.qcow2`,
// turned into the sparse raw `readPath` (`...raw`) that ferry reads.
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { HypervisorError, UsageError, describeSystemError } from '../errors';
import type { CommandRunner } from '../hypervisor/commandRunner';
import type { GuestDisk } from '../hypervisor/driver';
import { type DomainDescription, type LibvirtDisk, parseDomainXml } from '../hypervisor/libvirt/domainXml';
import {
  DEFAULT_LIBVIRT_URI, Virsh, VirshError, isActiveJob, parseDomJobInfo, parseNameList, virshErrorText,
} from '../hypervisor/libvirt/virsh';
import {
  type BackupDiskSpec, type LibvirtTrackingToken, backupTargets, backupXml, checkpointBitmapDisks, checkpointXml,
  decodeTracking, encodeTracking,
} from './libvirtBackupXml';
import { convertToRaw, mapQcow2 } from './libvirtQemuImg';
import { checkWorkDirectorySpace } from './workDirectory';
import { checkRunId, ownedByLiveRun, type ChangeTracking, type Snapshot, type SnapshotProvider } from './provider';
import { LeftoverSweep, deleteFiles, pollUntil, sweepOwnedFiles } from './providerParts';

export const LIBVIRT_BACKUP_PREFIX = 'ferry-';

export interface LibvirtBackupOptions {
  runner: CommandRunner;
  /** Directory for the backup targets; QEMU's user must be able to write there. */
  workDir: string;
  /** libvirt connection URI. Default `qemu:///system`. */
  uri?: string;
  virsh?: string;
  qemuImg?: string;
  /** First interval between `domjobinfo` polls (doubling up to 1 s). Default 50 ms. */
  pollIntervalMs?: number;
  /** Give up (and abort the job) after this long. Default 6 hours. */
  jobTimeoutMs?: number;
}

interface DiskPlan {
  disk: GuestDisk;
  device: string;
  path: string;
  /** qcow2 disks get a bitmap in the new checkpoint. */
  tracked: boolean;
  /** Checkpoint to copy changes since; undefined = full copy. */
  base?: string;
  fullReadReason?: string;
  target: string;
  readPath: string;
}

interface ActiveDomain extends DomainDescription {
  uuid: string;
}

export class LibvirtBackupProvider implements SnapshotProvider {
  readonly kind = 'libvirt-backup';
  readonly pointInTimeByItself = true;
  private readonly virsh: Virsh;
  private readonly runner: CommandRunner;
  private readonly workDir: string;
  private readonly qemuImg: string;
  private readonly pollIntervalMs: number;
  private readonly jobTimeoutMs: number;

  constructor(options: LibvirtBackupOptions) {
    this.runner = options.runner;
    this.virsh = new Virsh(options.runner, options.uri ?? DEFAULT_LIBVIRT_URI, options.virsh ?? 'virsh');
    this.workDir = resolve(options.workDir);
    this.qemuImg = options.qemuImg ?? 'qemu-img';
    this.pollIntervalMs = options.pollIntervalMs ?? 50;
    this.jobTimeoutMs = options.jobTimeoutMs ?? 6 * 3600 * 1000;
  }

  /** A disk of a running or paused domain on this connection. */
  async canHandle(disk: GuestDisk): Promise<boolean> {
    if (disk.cdrom) return false;
    for (const domain of await this.activeDomains()) {
      if (domain.disks.some((d) => sameDisk(d, disk) && d.deviceKind === 'disk')) return true;
    }
    return false;
  }

  async create(disks: GuestDisk[], runId: string, since?: (ChangeTracking | undefined)[]): Promise<Snapshot[]> {
    checkRunId(runId, 'a libvirt checkpoint name');
    if (disks.length === 0) return [];
    await this.checkWorkDir();
    const domain = await this.owningDomain(disks);
    const checkpoint = `${LIBVIRT_BACKUP_PREFIX}${runId}`;
    const existing = await this.listCheckpoints(domain.name);
    const plans: DiskPlan[] = [];
    for (let i = 0; i < disks.length; i++) {
      plans.push(await this.plan(domain, disks[i]!, runId, since?.[i], since !== undefined, existing));
    }
    await this.checkFreeSpace(domain.name, plans);
    for (const p of plans) {
      if (await exists(p.target) || await exists(p.readPath)) {
        throw new HypervisorError(`${p.target} already exists: an earlier run with the same id left it; run removeLeftovers first`);
      }
    }
    if (existing.includes(checkpoint)) {
      if (plans.some((p) => p.base === checkpoint)) {
        throw new UsageError(`run id ${runId} was already used for the previous backup of domain ${domain.name}: use a new run id`);
      }
      // Left by an earlier attempt with this run id that did not finish: it marks no copy anyone has.
      await this.virsh.checked(['checkpoint-delete', domain.name, checkpoint]);
    }

    try {
      await this.runBackup(domain, plans, checkpoint, runId);
    } catch (err) {
      if (!(err instanceof BackupBeginError) || !plans.some((p) => p.base !== undefined)) throw err;
      // libvirt refused the incremental (e.g. a bitmap missing from the image): copy everything instead.
      for (const p of plans) {
        if (p.base === undefined) continue;
        p.fullReadReason = `libvirt refused the incremental backup of ${p.device} since checkpoint ${p.base}: ${err.reason}`;
        delete p.base;
      }
      await this.runBackup(domain, plans, checkpoint, runId);
    }

    const snapshots: Snapshot[] = [];
    try {
      for (const p of plans) snapshots.push(await this.finishDisk(domain, p, checkpoint));
    } catch (err) {
      for (const p of plans) await this.removeFiles(p.readPath).catch(() => undefined);
      await this.deleteCheckpoint(domain.name, checkpoint).catch(() => undefined);
      throw err;
    }
    // Older ferry checkpoints nobody will ask for again: keep the new one and the
    // bases named by `since` (if this run's restore point is never written, the
    // next run still compares against them). Best effort: a leftover bitmap costs
    // a little write overhead, never correctness.
    const keep = new Set([checkpoint, ...plans.map((p) => p.base).filter((b): b is string => b !== undefined)]);
    for (const s of since ?? []) {
      const t = s ? decodeTracking(s) : undefined;
      if (t && !('unusable' in t) && t.domain === domain.name) keep.add(t.checkpoint);
    }
    await this.deleteCheckpointsExcept(domain.name, keep).catch(() => undefined);
    return snapshots;
  }

  /**
   * After the restore point holding these snapshots' tokens is saved: their
   * checkpoint is now the only baseline the next run needs.
   */
  async commit(snapshots: Snapshot[]): Promise<void> {
    const keepByDomain = new Map<string, Set<string>>();
    for (const s of snapshots) {
      if (!s.tracking) continue;
      const t = decodeTracking(s.tracking);
      if ('unusable' in t) continue;
      const keep = keepByDomain.get(t.domain) ?? new Set<string>();
      keep.add(t.checkpoint);
      keepByDomain.set(t.domain, keep);
    }
    for (const [domain, keep] of keepByDomain) await this.deleteCheckpointsExcept(domain, keep);
  }

  async remove(snapshot: Snapshot): Promise<void> {
    await this.removeFiles(snapshot.readPath);
  }

  /**
   * Aborts backup jobs whose targets are ferry's files in workDir (a killed
   * run's), and removes ferry's files from workDir. Checkpoints stay: they are
   * the tracking state of the last restore point; create() prunes stale ones.
   */
  async removeLeftovers(): Promise<string[]> {
    const sweep = new LeftoverSweep('libvirt backup leftover(s)');
    for (const name of parseNameList((await this.virsh.checked(['list', '--name'])).stdout)) {
      try {
        const info = parseDomJobInfo((await this.virsh.checked(['domjobinfo', name])).stdout, `virsh domjobinfo ${name}`);
        if (!isActiveJob(info) || info.operation !== 'Backup') continue;
        const dumped = await this.virsh.run(['backup-dumpxml', name]);
        if (dumped.code !== 0) continue; // the job ended meanwhile
        const targets = backupTargets(dumped.stdout, `virsh backup-dumpxml ${name}`);
        if (targets.length === 0 || !targets.every((t) => this.isOwnedFile(t))) continue; // someone else's backup
        if (targets.some((t) => ownedByLiveRun(basename(t), LIBVIRT_BACKUP_PREFIX))) continue; // a run that still runs
        await this.abortJob(name);
        sweep.removed.push(`${name}: backup job to ${targets.map((t) => basename(t)).join(', ')}`);
      } catch (err) {
        sweep.failed(`${name}: ${(err as Error).message}`);
      }
    }
    await sweepOwnedFiles(sweep, this.workDir, (f) => f.startsWith(LIBVIRT_BACKUP_PREFIX) && !ownedByLiveRun(f, LIBVIRT_BACKUP_PREFIX));
    return sweep.done();
  }

  // --- planning --------------------------------------------------------------

  private async plan(
    domain: ActiveDomain,
    disk: GuestDisk,
    runId: string,
    since: ChangeTracking | undefined,
    trackingAsked: boolean,
    checkpoints: readonly string[],
  ): Promise<DiskPlan> {
    const live = domain.disks.find((d) => sameDisk(d, disk))!;
    const stem = join(this.workDir, `${LIBVIRT_BACKUP_PREFIX}${runId}-${fileSafe(domain.name)}-${fileSafe(live.device)}`);
    const plan: DiskPlan = {
      disk,
      device: live.device,
      path: live.path,
      tracked: live.format === 'qcow2',
      target: `${stem}.qcow2`,
      readPath: `${stem}.raw`,
    };
    if (!plan.tracked) {
      if (trackingAsked) {
        plan.fullReadReason = `disk ${live.device} is ${live.format}: libvirt tracks changes only on qcow2 disks (the bitmap lives in the image)`;
      }
      return plan;
    }
    if (!since) return plan;
    const why = await this.whyNotIncremental(domain, live, since, checkpoints);
    if (why !== undefined) plan.fullReadReason = why;
    else plan.base = (decodeTracking(since) as LibvirtTrackingToken).checkpoint;
    return plan;
  }

  /** undefined when an incremental copy since `since` is exact; otherwise why not. */
  private async whyNotIncremental(
    domain: ActiveDomain,
    disk: LibvirtDisk,
    since: ChangeTracking,
    checkpoints: readonly string[],
  ): Promise<string | undefined> {
    const t = decodeTracking(since);
    if ('unusable' in t) return t.unusable;
    if (t.uuid !== domain.uuid) {
      return `domain ${domain.name} was redefined since the last backup (UUID ${t.uuid} is now ${domain.uuid}), so its checkpoints are gone`;
    }
    if (t.device !== disk.device || t.path !== disk.path) {
      return `the last backup tracked ${t.device} at ${t.path}, the disk is now ${disk.device} at ${disk.path}`;
    }
    if (!checkpoints.includes(t.checkpoint)) {
      return `checkpoint ${t.checkpoint} of the last backup no longer exists on domain ${domain.name}`;
    }
    const xml = (await this.virsh.checked(['checkpoint-dumpxml', domain.name, t.checkpoint, '--no-domain'])).stdout;
    const withBitmap = checkpointBitmapDisks(xml, `virsh checkpoint-dumpxml ${domain.name} ${t.checkpoint}`);
    if (!withBitmap.includes(disk.device)) {
      return `checkpoint ${t.checkpoint} of domain ${domain.name} has no bitmap for ${disk.device}`;
    }
    return undefined;
  }

  // --- the backup job --------------------------------------------------------

  private async runBackup(domain: ActiveDomain, plans: DiskPlan[], checkpoint: string, runId: string): Promise<void> {
    // Every drive of the domain is named, empty CD-ROMs too, so libvirt copies exactly the planned disks.
    const allDevices = [...domain.disks.map((d) => d.device), ...domain.emptyDrives];
    const specs: BackupDiskSpec[] = allDevices.map((device) => {
      const p = plans.find((x) => x.device === device);
      return p
        ? { device, target: { file: p.target, ...(p.base !== undefined ? { incrementalFrom: p.base } : {}) } }
        : { device };
    });
    const xmlStem = join(this.workDir, `${LIBVIRT_BACKUP_PREFIX}${runId}-${fileSafe(domain.name)}`);
    const backupFile = `${xmlStem}.backup.xml`;
    const checkpointFile = `${xmlStem}.checkpoint.xml`;
    const withCheckpoint = plans.some((p) => p.tracked);
    await writeFile(backupFile, backupXml(specs));
    if (withCheckpoint) {
      const tracked = new Set(plans.filter((p) => p.tracked).map((p) => p.device));
      await writeFile(checkpointFile, checkpointXml(checkpoint, allDevices.map((device) => ({ device, bitmap: tracked.has(device) }))));
    }
    try {
      const args = ['backup-begin', domain.name, backupFile, ...(withCheckpoint ? [checkpointFile] : [])];
      const begun = await this.virsh.run(args);
      if (begun.code !== 0) {
        const err = this.virsh.failure(args, begun);
        for (const p of plans) await this.removeFiles(p.readPath).catch(() => undefined);
        throw new BackupBeginError(err.message, err.reason);
      }
      try {
        await this.waitForJob(domain.name);
      } catch (err) {
        for (const p of plans) await this.removeFiles(p.readPath).catch(() => undefined);
        if (withCheckpoint) await this.deleteCheckpoint(domain.name, checkpoint).catch(() => undefined);
        throw err;
      }
    } finally {
      await rm(backupFile, { force: true });
      await rm(checkpointFile, { force: true });
    }
  }

  private async waitForJob(domain: string): Promise<void> {
    if (!(await this.pollUntilNoJob(domain, this.jobTimeoutMs))) {
      await this.abortJob(domain).catch(() => undefined);
      throw new HypervisorError(`backup of domain ${domain} did not finish within ${Math.round(this.jobTimeoutMs / 1000)} s and was aborted`);
    }
    // libvirt clears the completed-job record when a job starts, so this is our job's outcome.
    const done = parseDomJobInfo(
      (await this.virsh.checked(['domjobinfo', domain, '--completed'])).stdout,
      `virsh domjobinfo ${domain} --completed`,
    );
    if (done.type === 'Completed' && done.operation === 'Backup') return;
    const what = done.type === 'Cancelled' ? 'was cancelled' : done.type === 'Failed' ? 'failed' : `ended without a result (job type ${done.type}; did the domain stop?)`;
    throw new HypervisorError(`backup of domain ${domain} ${what}${done.errorMessage ? `: ${done.errorMessage}` : ''}`);
  }

  /** Aborts the domain's job and waits until libvirt reports none. */
  private async abortJob(domain: string): Promise<void> {
    const result = await this.virsh.run(['domjobabort', domain]);
    if (result.code !== 0 && !/no job is active/.test(this.virsh.failure(['domjobabort', domain], result).reason)) {
      throw this.virsh.failure(['domjobabort', domain], result);
    }
    if (!(await this.pollUntilNoJob(domain, 60_000))) {
      throw new HypervisorError(`the backup job of domain ${domain} was still running 60 s after domjobabort`);
    }
  }

  /** Polls `domjobinfo` (from pollIntervalMs, doubling up to 1 s) until the domain has no active job; false after `timeoutMs`. */
  private pollUntilNoJob(domain: string, timeoutMs: number): Promise<boolean> {
    return pollUntil(async () => {
      const info = parseDomJobInfo((await this.virsh.checked(['domjobinfo', domain])).stdout, `virsh domjobinfo ${domain}`);
      return !isActiveJob(info);
    }, { timeoutMs, intervalMs: this.pollIntervalMs, maxIntervalMs: 1000 });
  }

  private async finishDisk(domain: ActiveDomain, p: DiskPlan, checkpoint: string): Promise<Snapshot> {
    const changed = p.base !== undefined ? await mapQcow2(this.runner, this.qemuImg, p.target) : undefined;
    await convertToRaw(this.runner, this.qemuImg, p.target, p.readPath);
    // The raw file is what ferry reads; the qcow2 would only double the space used.
    await rm(p.target, { force: true });
    return {
      disk: p.disk,
      readPath: p.readPath,
      ownedName: p.readPath,
      ...(p.tracked
        ? { tracking: encodeTracking({ domain: domain.name, uuid: domain.uuid, checkpoint, device: p.device, path: p.path }) }
        : {}),
      ...(changed ? { changed } : {}),
      ...(p.fullReadReason !== undefined ? { fullReadReason: p.fullReadReason } : {}),
    };
  }

  // --- domains, checkpoints, files ------------------------------------------------

  private async activeDomains(): Promise<ActiveDomain[]> {
    const domains: ActiveDomain[] = [];
    for (const name of parseNameList((await this.virsh.checked(['list', '--name'])).stdout)) {
      const dumped = await this.virsh.run(['dumpxml', name]);
      if (dumped.code !== 0) continue; // stopped meanwhile
      const d = parseDomainXml(dumped.stdout, `virsh dumpxml ${name}`);
      if (!d.uuid) throw new HypervisorError(`virsh dumpxml ${name}: the domain has no <uuid>`);
      domains.push({ ...d, uuid: d.uuid });
    }
    return domains;
  }

  /** The one running domain that has every disk; a backup job covers one domain. */
  private async owningDomain(disks: readonly GuestDisk[]): Promise<ActiveDomain> {
    const domains = await this.activeDomains();
    const owner = domains.find((d) => d.disks.some((x) => sameDisk(x, disks[0]!)));
    if (!owner) {
      throw new HypervisorError(`disk ${disks[0]!.device} (${disks[0]!.path}) belongs to no running libvirt domain on ${this.virsh.uri}`);
    }
    for (const disk of disks) {
      if (!owner.disks.some((x) => sameDisk(x, disk))) {
        throw new HypervisorError(`disk ${disk.device} (${disk.path}) is not a disk of domain ${owner.name}, which holds ${disks[0]!.path}: one libvirt backup covers one domain`);
      }
    }
    return owner;
  }

  private async listCheckpoints(domain: string): Promise<string[]> {
    return parseNameList((await this.virsh.checked(['checkpoint-list', domain, '--name'])).stdout);
  }

  private async deleteCheckpoint(domain: string, name: string): Promise<void> {
    if (!name.startsWith(LIBVIRT_BACKUP_PREFIX)) throw new UsageError(`refusing to delete checkpoint ${name} of ${domain}: not ferry's`);
    const result = await this.virsh.run(['checkpoint-delete', domain, name]);
    if (result.code !== 0 && !/Domain checkpoint not found/.test(virshErrorText(result))) {
      throw this.virsh.failure(['checkpoint-delete', domain, name], result);
    }
  }

  private async deleteCheckpointsExcept(domain: string, keep: ReadonlySet<string>): Promise<void> {
    // Never an admin's checkpoint: only names ferry gives.
    const stale = (await this.listCheckpoints(domain)).filter((c) => c.startsWith(LIBVIRT_BACKUP_PREFIX) && !keep.has(c));
    for (const c of stale) await this.deleteCheckpoint(domain, c);
  }

  /**
   * Full copies need room for the target and the raw file made from it. libvirt's
   * push backup runs QEMU's plain backup job, whose copy-before-write fails the
   * guest's own write when the target is full: this check is the guard. The
   * need is the disk file's allocated size; a block device or a disk that
   * cannot be stat'ed here adds nothing (its allocation is not known without
   * asking the storage). An incremental's size is unknown before it runs.
   */
  private async checkFreeSpace(domain: string, plans: DiskPlan[]): Promise<void> {
    let need = 0;
    for (const p of plans.filter((x) => x.base === undefined)) {
      const st = await stat(p.path).catch(() => undefined);
      if (st?.isFile()) need += 2 * st.blocks * 512;
    }
    if (need > 0) await checkWorkDirectorySpace(this.workDir, need, `the copy of ${plans.map((p) => p.device).join(', ')} of ${domain}`);
  }

  private async checkWorkDir(): Promise<void> {
    try {
      await mkdir(this.workDir, { recursive: true });
    } catch (err) {
      throw new HypervisorError(`cannot create the libvirt backup directory ${this.workDir}: ${describeSystemError(err)}`);
    }
  }

  private isOwnedFile(path: string): boolean {
    return resolve(dirname(path)) === this.workDir && basename(path).startsWith(LIBVIRT_BACKUP_PREFIX);
  }

  /** Removes a snapshot's raw file and its qcow2 sibling; gone already is fine. */
  private async removeFiles(readPath: string): Promise<void> {
    if (!this.isOwnedFile(readPath)) {
      throw new UsageError(`refusing to remove ${readPath}: not a ferry file in ${this.workDir}`);
    }
    await deleteFiles([readPath, readPath.replace(/\.raw$/, '.qcow2')]);
  }
}

/** `backup-begin` itself failed: nothing was started. */
class BackupBeginError extends VirshError {}

function sameDisk(a: GuestDisk, b: GuestDisk): boolean {
  return a.device === b.device && a.path === b.path;
}

/** Domain and device names as parts of a file name. */
function fileSafe(name: string): string {
  return name.replace(/[^A-Za-z0-9_.+-]/g, '_');
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
