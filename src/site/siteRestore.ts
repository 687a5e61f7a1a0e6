// `ferry site restore`, the data phase: every planned guest's disks written
// onto its target host's pool, hosts in parallel, every chunk verified on the
// way (restore/). A disk is written under a partial name and renamed when
// complete and fsynced, so nothing half-written carries a final name. A guest
// that fails (its restore point gone or damaged, its target taken, its host
// unreachable) is reported with its reason; the others go on.
//
// Targets: a dir pool gets <path>/<guest>/<disk name>, a sparse file; an lvm
// pool gets the logical volume <vg>/<guest>-<disk stem> (thin in a thin pool),
// created with lvcreate, zero regions written on a thick one (its blocks are
// not zeroed). A remote host is written through one ssh session per disk
// (RemoteFileWriter); its data is restored here in batches of a few regions
// into a local scratch file first, so the workers verify and decompress as for
// any restore, and local space stays bounded.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { forEachLimit } from '../concurrency/forEachLimit';
import type { Repository } from '../repo/repository';
import type { DiskRecord, RestorePointSummary, StoredRestorePoint } from '../repo/restorePoint';
import type { PipelinePool } from '../workers/pipelinePool';
import { restoreDisk, restorePlanned } from '../restore/diskRestore';
import { restorePlan } from '../restore/restorePlan';
import { FerryError, InputError, describeSystemError } from '../errors';
import { type CommandRunner, describeCommand, runChecked } from '../hypervisor/commandRunner';
import type { HostDefinition, PoolDefinition, SiteHosts } from './hostsFile';
import type { PlannedDisk, PlannedGuest, SitePlan } from './sitePlan';
import { RemoteFileWriter } from './remoteFileWriter';
import { RestoreJournal } from './restoreJournal';
import { processAlive } from '../host/processAlive';
import { type ConfigFile, guestConfigFiles } from './guestConfigFiles';
import type { DiskTarget, MacPolicy } from './guestRewrite';
import type { GuestSpec } from '../repo/restorePoint';
import { SshCommandRunner, hostCommandRunner } from './sshCommandRunner';
import { type GuestBoot, type HealthWaiter, type RestoredGuest, StartJournal, bootSite } from './siteBoot';
import { guestPresence, qemuRunFiles } from './guestStart';
import { definitionInTheWay } from './existingDefinition';
import { convertToQcow2IfWanted, qcow2ConvertArgs, restoredFormat } from './restoredFormat';
import { takeTargetAsSeed, writeSeededLocally, writeSeededRemotely } from './seededRestore';
import { HostProgress, type SiteProgressListener } from './siteProgress';

/** Regions restored locally per round trip to a remote host: 4 × 32 MiB of scratch at most; a checkpoint after each. */
const REMOTE_BATCH_REGIONS = 4;
/**
 * Regions written to a local target between checkpoints (256 MiB of disk): a
 * killed run loses at most this much written-but-unrecorded work; one fsync
 * per batch costs little, the data has to reach the disk anyway.
 */
export const LOCAL_BATCH_REGIONS = 8;
/** Largest piece handed to the remote writer at once. */
const REMOTE_PIECE = 8 * 1024 * 1024;
export const PARTIAL_SUFFIX = '.ferry-partial';

export interface SiteRestoreOptions {
  /** Print what would be created, written and run, and do nothing. */
  dryRun: boolean;
  /** What to do with a target that exists: refuse (the guest fails), overwrite it, or write only what differs from it (seededRestore). */
  existing: 'refuse' | 'overwrite' | 'seed';
  /** This machine's runner (commands here, and ssh to the others). */
  local: CommandRunner;
  /** A directory on this machine for the batches bound for remote hosts. */
  scratchDir: string;
  /** Where this machine records how far each disk got, so a re-run continues (RestoreJournal). */
  journalDir: string;
  /** MAC addresses in the rewritten configs: as backed up, or fresh ones. */
  macs: MacPolicy;
  /** After the data and configs: start the guests boot group by boot group (siteBoot.ts), or stop there. */
  start: 'boot-groups' | 'no-start';
  /** How long a started guest may take to show as running (default 60 s). */
  runningTimeoutMs?: number;
  /** A guest's health check, if it has one (default: none, running is enough). */
  healthCheck?: (guest: PlannedGuest, host: HostDefinition) => HealthWaiter | undefined;
  log: (line: string) => void;
  /** --pull: restores an ssh host's guests by running ferry there (pulledRestore.ts) instead of from here; never throws for that host's failures. */
  pullHost?: (host: HostDefinition, guests: PlannedGuest[]) => Promise<GuestRestoreReport[]>;
  /** Each host's progress in the data phase (guests, bytes), as it changes; not in a dry run (nor for pulled hosts: their own ferry restores). */
  onProgress?: SiteProgressListener;
}

export interface RestoredDisk {
  name: string;
  target: string;
  writtenBytes: number;
  /** Restored completely by an earlier run of this plan: not written again. */
  alreadyRestored?: boolean;
  /** Continued after this many regions an interrupted run had written and fsynced. */
  resumedAfterRegions?: number;
  /** Restored onto an older copy (--seed): bytes of it read and compared; only the differing ones were written. */
  comparedBytes?: number;
}

export interface GuestRestoreReport {
  guest: string;
  host: string;
  restorePoint: string;
  ok: boolean;
  error?: string;
  disks: RestoredDisk[];
  /** The guest's config files written on its host (the new config first, then the original kept beside it). */
  configFiles: string[];
  /** What the config rewrite changed beyond paths and bridges, one line each. */
  notes: string[];
  writtenBytes: number;
  durationMs: number;
  bootGroup: number;
  /** It ran on its target before this run: started by an earlier run of this plan, or not by ferry (then nothing was touched). */
  alreadyRunning?: 'this-plan' | 'elsewhere';
  /** How its start and health check went (absent with --no-start). */
  start?: GuestBoot['start'];
  health?: GuestBoot['health'];
}

export interface PoolVolume {
  /** Where the disk ends up: a file path, or /dev/VG/LV. */
  path: string;
  kind: 'file' | 'thick-lv' | 'thin-lv';
  pool: PoolDefinition;
}

/** Where a planned disk lands in its pool: a file, or a logical volume. */
export function poolVolume(guest: string, disk: PlannedDisk, pool: PoolDefinition): PoolVolume {
  if (pool.type === 'dir') return { path: path.posix.join(pool.path, guest, disk.name), kind: 'file', pool };
  const stem = disk.name.replace(/\.(img|raw|qcow2)$/, '').replace(/[^A-Za-z0-9+_.-]/g, '_');
  return { path: `/dev/${pool.volumeGroup}/${guest}-${stem}`, kind: pool.thinPool ? 'thin-lv' : 'thick-lv', pool };
}

/** Guests one host restores at once: its disk and the pipeline stay busy while another guest's writes wait on fsync or ssh. */
const GUESTS_AT_ONCE_PER_HOST = 2;

export async function restoreSite(
  repo: Repository,
  workers: PipelinePool,
  plan: SitePlan,
  site: SiteHosts,
  opts: SiteRestoreOptions,
): Promise<GuestRestoreReport[]> {
  const points = new Map<string, RestorePointSummary>();
  const { points: all } = await repo.listAllRestorePoints();
  for (const rp of all) points.set(rp.id, rp);
  const byHost = new Map<string, PlannedGuest[]>();
  for (const g of plan.guests) byHost.set(g.host, [...(byHost.get(g.host) ?? []), g]);
  const reports = await Promise.all(
    [...byHost].map(async ([hostName, guests]) => {
      const host = site.hosts.find((h) => h.name === hostName);
      if (host && host.address.kind === 'ssh' && opts.pullHost) return opts.pullHost(host, guests);
      const out: GuestRestoreReport[] = [];
      const progress = new HostProgress(hostName, guests, opts.dryRun ? undefined : opts.onProgress);
      // Several guests of a host at once (the workers and each restore's reads are bounded by the memory budget);
      // a dry run one by one, so that what it prints reads in plan order.
      await forEachLimit(guests, opts.dryRun ? 1 : GUESTS_AT_ONCE_PER_HOST, async (g) => {
        const report = host
          ? await restoreGuest(repo, workers, plan, g, points.get(g.restorePoint), host, site, opts, progress)
          : failed(g, `host ${hostName} of the plan is not in ${site.file}; plan again for these hosts`);
        out.push(report);
        progress.guestFinished(g.guest, report.ok ? 'ok' : 'failed');
      });
      progress.hostFinished();
      return out;
    }),
  );
  const flat = reports.flat();
  // In plan order (boot groups), whatever order the hosts finished in.
  const ordered = plan.guests.map((g) => flat.find((r) => r.guest === g.guest)!);
  if (opts.start === 'no-start') return ordered;
  const boots = await bootSite(plan, new Map<string, RestoredGuest>(ordered.map((r) => [r.guest, r])), site, {
    dryRun: opts.dryRun,
    runnerFor: (host) => hostCommandRunner(host, opts.local, site.sshConfig),
    journalDir: opts.journalDir,
    runningTimeoutMs: opts.runningTimeoutMs ?? 60_000,
    ...(opts.healthCheck ? { healthCheck: opts.healthCheck } : {}),
    log: opts.log,
  });
  return ordered.map((r) => ({ ...r, ...boots.get(r.guest) }));
}

async function restoreGuest(
  repo: Repository,
  workers: PipelinePool,
  plan: SitePlan,
  g: PlannedGuest,
  listed: RestorePointSummary | undefined,
  host: HostDefinition,
  site: SiteHosts,
  opts: SiteRestoreOptions,
  progress: HostProgress,
): Promise<GuestRestoreReport> {
  const started = Date.now();
  if (!listed) return failed(g, `restore point ${g.restorePoint.slice(0, 8)} is not in ${repo.location} (forgotten since the plan?); plan again`);
  // Its region maps are read for this guest only: a listing keeps none (RestorePointSummary).
  let rp: StoredRestorePoint;
  try {
    rp = await repo.loadRestorePointByName(listed.id);
  } catch (err) {
    if (!(err instanceof FerryError)) throw err;
    return failed(g, err.message);
  }
  const runner = hostCommandRunner(host, opts.local, site.sshConfig);
  // Before anything is written: a guest of this name that runs there is never touched.
  try {
    const presence = await guestPresence(runner, host, g.guest);
    if (presence.runs) {
      if (new StartJournal(opts.journalDir).startedBy(host.name, g.guest, plan.created, g.restorePoint)) {
        opts.log(`${host.name}: ${g.guest} already runs there, started by an earlier run of this plan; its disks and config are left as they are`);
        return {
          guest: g.guest, host: g.host, restorePoint: g.restorePoint, ok: true, disks: [], configFiles: [], notes: [],
          writtenBytes: 0, durationMs: Date.now() - started, bootGroup: g.bootGroup, alreadyRunning: 'this-plan',
        };
      }
      opts.log(`${host.name}: guest ${g.guest} already runs on host ${host.name} (${presence.how}); not touched`);
      return { ...failed(g, `guest ${g.guest} already runs on host ${host.name} (${presence.how}); not touched: stop it there, or leave it out of the plan (site plan --guest), and run again`), alreadyRunning: 'elsewhere' };
    }
    if (opts.existing === 'refuse') {
      const inTheWay = await definitionInTheWay(runner, host, { guest: g.guest, leftByThisPlan: () => leftByThisPlan(g, host, opts.journalDir, plan) });
      if (inTheWay) {
        opts.log(`${host.name}: ${inTheWay}`);
        return failed(g, inTheWay);
      }
    }
  } catch (err) {
    if (!(err instanceof FerryError)) throw err;
    return failed(g, `cannot tell whether ${g.guest} runs on host ${host.name}, so nothing was written for it: ${err.message}`);
  }
  const disks: RestoredDisk[] = [];
  const volumes = new Map<string, PoolVolume>();
  let config: { files: string[]; notes: string[] } = { files: [], notes: [] };
  try {
    for (const planned of g.disks) {
      const record = rp.disks.find((d) => d.name === planned.name);
      if (!record) throw new InputError(`restore point ${rp.id.slice(0, 8)} has no disk ${planned.name}; plan again`);
      const pool = host.pools.find((p) => p.name === planned.pool);
      if (!pool) throw new InputError(`host ${host.name} has no pool ${planned.pool} in ${site.file}; plan again`);
      const target = poolVolume(g.guest, planned, pool);
      volumes.set(planned.name, target);
      if (opts.dryRun) {
        describeDiskRestore(g, host, target, record, opts.log);
        if (target.kind === 'file' && specOf(rp).disks.find((d) => d.name === record.name)?.format === 'qcow2') {
          opts.log(`${host.name}: before that mv, unless the restored bytes are a qcow2 image already: ${describeCommand('qemu-img', qcow2ConvertArgs(partialPath(target)))}, and that replaces the partial file`);
        }
        disks.push({ name: planned.name, target: target.path, writtenBytes: 0 });
        continue;
      }
      disks.push(await restoreDiskOnHost(repo, workers, g, rp, record, host, site, target, runner, opts, progress));
    }
    config = await writeGuestConfig(g, rp, host, site, runner, volumes, opts);
  } catch (err) {
    if (!(err instanceof FerryError)) throw err;
    return { ...failed(g, err.message), disks, durationMs: Date.now() - started };
  }
  const writtenBytes = disks.reduce((n, d) => n + d.writtenBytes, 0);
  return {
    guest: g.guest, host: g.host, restorePoint: g.restorePoint, ok: true, disks,
    configFiles: config.files, notes: config.notes, writtenBytes, durationMs: Date.now() - started, bootGroup: g.bootGroup,
  };
}

/** Whether an earlier run of this plan wrote any of the guest's disks on `host` or set out to start it there. */
function leftByThisPlan(g: PlannedGuest, host: HostDefinition, journalDir: string, plan: SitePlan): boolean {
  if (new StartJournal(journalDir).startedBy(host.name, g.guest, plan.created, g.restorePoint)) return true;
  const disks = new RestoreJournal(journalDir);
  return g.disks.some((d) => {
    const pool = host.pools.find((p) => p.name === d.pool);
    return pool !== undefined && disks.read(host.name, poolVolume(g.guest, d, pool).path, g.restorePoint, d.name) !== undefined;
  });
}

/** One disk: fresh, continued after the journal's regions, or left alone when an earlier run completed it. */
async function restoreDiskOnHost(
  repo: Repository,
  workers: PipelinePool,
  g: PlannedGuest,
  rp: StoredRestorePoint,
  record: DiskRecord,
  host: HostDefinition,
  site: SiteHosts,
  target: PoolVolume,
  runner: CommandRunner,
  opts: SiteRestoreOptions,
  progress: HostProgress,
): Promise<RestoredDisk> {
  const began = Date.now();
  const journal = new RestoreJournal(opts.journalDir);
  const done = journal.read(host.name, target.path, rp.id, record.name);
  const exists = (p: string) => existsOn(runner, p);
  if (done?.complete && opts.existing !== 'overwrite' && (await exists(target.path)) && (await targetStamp(runner, target)) === done.stamp) {
    opts.log(`${host.name}: ${g.guest} ${record.name} was restored to ${target.path} by an earlier run of this plan; left as it is`);
    progress.diskComplete(g.guest, record.name);
    return { name: record.name, target: target.path, writtenBytes: 0, alreadyRestored: true };
  }
  if (done && !done.complete && done.regionsDone >= record.regions.length && opts.existing !== 'overwrite' && !(await exists(partialPath(target))) && (await exists(target.path))) {
    // Killed between the rename of the complete disk and its record: the disk under its final name is this plan's.
    const stamp = await targetStamp(runner, target);
    journal.write(host.name, target.path, { ...done, complete: true, ...(stamp ? { stamp } : {}) });
    opts.log(`${host.name}: ${g.guest} ${record.name} was restored to ${target.path} by an earlier run of this plan, killed before it recorded that; left as it is`);
    return { name: record.name, target: target.path, writtenBytes: 0, alreadyRestored: true };
  }
  let resumeFrom = 0;
  let seeded = false;
  if (done && !done.complete && done.size === record.size && (await exists(partialPath(target)))) {
    if (opts.existing === 'refuse' && (await exists(target.path))) {
      throw new InputError(`${host.name}:${target.path} already exists; remove it, or restore with --force to overwrite it`);
    }
    resumeFrom = Math.min(done.regionsDone, record.regions.length);
    seeded = opts.existing === 'seed';
    opts.log(`${host.name}: ${g.guest} ${record.name}: continuing after ${resumeFrom} of ${record.regions.length} regions an interrupted run wrote`);
  } else if (opts.existing === 'seed' && (await exists(target.path))) {
    await takeTargetAsSeed(runner, target, partialPath(target), record.size);
    seeded = true;
  } else {
    await prepareTarget(runner, host, target, record, opts.existing);
  }
  // Progress: the regions done so far as a share of the disk's data, then the bytes written since.
  const regionShare = (regions: number) => (record.regions.length > 0 ? (record.dataBytes * regions) / record.regions.length : 0);
  let checkpointed = regionShare(resumeFrom);
  const onWritten = (bytesSinceCheckpoint: number) => progress.disk(g.guest, record.name, checkpointed + bytesSinceCheckpoint);
  const checkpoint = (regionsDone: number) => {
    journal.write(host.name, target.path, { restorePoint: rp.id, disk: record.name, size: record.size, regionsDone, complete: false });
    checkpointed = regionShare(regionsDone);
    onWritten(0);
  };
  checkpoint(resumeFrom);
  const seededWrite = !seeded ? undefined : host.address.kind === 'local'
    ? await writeSeededLocally(repo, workers, record, partialPath(target), resumeFrom, checkpoint)
    : await writeSeededRemotely(repo, workers, record, partialPath(target), `${host.name}:${partialPath(target)}`, new SshCommandRunner(host.address, opts.local, site.sshConfig).sshArgs(),
      scratchFileFor(opts.scratchDir, host, target), resumeFrom, checkpoint);
  const writtenBytes = seededWrite ? seededWrite.writtenBytes : host.address.kind === 'local'
    ? await writeLocally(repo, workers, record, target, resumeFrom, checkpoint, onWritten)
    : await writeRemotely(repo, workers, record, target, new SshCommandRunner(host.address, opts.local, site.sshConfig), host, opts.scratchDir, resumeFrom, checkpoint, onWritten);
  if (target.kind === 'file') await convertToQcow2IfWanted(runner, partialPath(target), specOf(rp).disks.find((d) => d.name === record.name)?.format);
  await finishTarget(runner, target);
  const stamp = await targetStamp(runner, target);
  journal.write(host.name, target.path, { restorePoint: rp.id, disk: record.name, size: record.size, regionsDone: record.regions.length, complete: true, ...(stamp ? { stamp } : {}) });
  progress.diskComplete(g.guest, record.name);
  const seconds = Math.max(0.001, (Date.now() - began) / 1000);
  opts.log(`${host.name}: ${g.guest} ${record.name} → ${target.path} (${writtenBytes} bytes written${seededWrite ? `, ${seededWrite.comparedBytes} compared with the older copy there` : ''} in ${seconds.toFixed(1)} s, ${(writtenBytes / seconds / 1e6).toFixed(1)} MB/s)`);
  return {
    name: record.name, target: target.path, writtenBytes,
    ...(resumeFrom > 0 ? { resumedAfterRegions: resumeFrom } : {}),
    ...(seededWrite ? { comparedBytes: seededWrite.comparedBytes } : {}),
  };
}

const SCRATCH_PREFIX = 'site-restore-';

/**
 * This run's scratch file for one target: named by the whole target path, since two guests on
 * one host restored at once may have disks of the same file name (`<pool>/<guest>/disk0.img`).
 */
function scratchFileFor(scratchDir: string, host: HostDefinition, target: PoolVolume): string {
  const key = createHash('sha256').update(target.path).digest('hex').slice(0, 16);
  return path.join(scratchDir, `${SCRATCH_PREFIX}${process.pid}-${host.name}-${key}-${path.basename(partialPath(target))}`);
}

/** Batches a killed run left in the scratch directory (their pid is in the name and gone). */
function removeDeadRunsScratch(dir: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    throw new InputError(`cannot read the temporary directory ${dir}: ${describeSystemError(err)}; give another temporary directory`, { cause: err });
  }
  for (const name of names) {
    const pid = new RegExp(`^${SCRATCH_PREFIX}(\\d+)-`).exec(name)?.[1];
    if (pid && Number(pid) !== process.pid && !processAlive(Number(pid))) fs.rmSync(path.join(dir, name), { force: true });
  }
}

/** Whether `p` exists on the host `runner` reaches. */
async function existsOn(runner: CommandRunner, p: string): Promise<boolean> {
  return (await runner.run('test', ['-e', p])).code === 0;
}

/** A new file of `size` bytes, all hole (owner-only: it will hold guest data). */
function createSparseFile(file: string, size: number): void {
  const fd = fs.openSync(file, 'wx', 0o600);
  try {
    fs.ftruncateSync(fd, size);
  } finally {
    fs.closeSync(fd);
  }
}

function fsyncFile(file: string): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** A file target's size and mtime, to know it again; undefined for a volume (lvm keeps no such time). */
async function targetStamp(runner: CommandRunner, target: PoolVolume): Promise<string | undefined> {
  if (target.kind !== 'file') return undefined;
  const r = await runner.run('stat', ['-c', '%s %Y', '--', target.path]);
  return r.code === 0 ? r.stdout.trim() : undefined;
}

function failed(g: PlannedGuest, error: string): GuestRestoreReport {
  return { guest: g.guest, host: g.host, restorePoint: g.restorePoint, ok: false, error, disks: [], configFiles: [], notes: [], writtenBytes: 0, durationMs: 0, bootGroup: g.bootGroup };
}

/** A restore point made before guest specs: what its disk records say. */
function specOf(rp: StoredRestorePoint): GuestSpec {
  return rp.spec ?? {
    nics: [],
    disks: rp.disks.map((d) => ({ name: d.name, origin: d.sourcePath, format: 'raw', storage: d.sourcePath.startsWith('/dev/') ? 'block' : 'file', readOnly: false })),
    bootGroup: 0,
    bootPriority: 0,
  };
}

/**
 * The guest's config for its new host (guestConfigFiles: rewritten, or made
 * from the spec), written into the host's config directory under a partial
 * name and renamed; an existing config there is refused unless overwriting.
 */
async function writeGuestConfig(
  g: PlannedGuest,
  rp: StoredRestorePoint,
  host: HostDefinition,
  site: SiteHosts,
  runner: CommandRunner,
  volumes: ReadonlyMap<string, PoolVolume>,
  opts: SiteRestoreOptions,
): Promise<{ files: string[]; notes: string[] }> {
  // Disks come back raw, unless a qcow2 image file was what was backed up (restoredFormat).
  const spec = specOf(rp);
  const disks = new Map<string, DiskTarget>();
  for (const [name, v] of volumes) {
    const format = opts.dryRun ? 'raw' : await restoredFormat(runner, v.path, spec.disks.find((d) => d.name === name)?.format);
    disks.set(name, { path: v.path, format, storage: v.kind === 'file' ? 'file' : 'block' });
  }
  const runDir = path.posix.join(host.configDir, 'run');
  const { files, notes } = guestConfigFiles({
    guest: g.guest,
    hypervisor: host.hypervisor,
    spec,
    ...(rp.config ? { original: rp.config } : {}),
    dir: host.configDir,
    disks,
    bridges: host.bridges,
    macs: opts.macs,
    ...(host.hypervisor === 'qemu' ? { qemu: { runDir, accel: host.accel } } : {}),
    // Where a serial health check reads the console, as for the QEMU launcher (siteHealth.ts).
    ...(host.hypervisor === 'libvirt' ? { serialLog: qemuRunFiles(runDir, g.guest).serialLog } : {}),
  });
  if (opts.dryRun) {
    for (const f of files) opts.log(`${host.name}: write ${f.path} (${f.content.length} bytes, mode ${f.mode.toString(8)})`);
    return { files: files.map((f) => f.path), notes };
  }
  const [main] = files;
  if (main && (await existsOn(runner, main.path))) {
    // Written by an earlier run of this plan: the same bytes again, nothing to do.
    const there = await runner.run('cat', ['--', main.path]);
    if (there.code === 0 && there.stdout === main.content.toString('utf8')) return { files: files.map((f) => f.path), notes };
    if (opts.existing === 'refuse') throw new InputError(`${host.name}:${main.path} already exists; remove it, or restore with --force to overwrite it`);
  }
  await runChecked(runner, 'mkdir', ['-p', '--', host.configDir, ...(host.hypervisor !== 'xen' ? [runDir] : [])]);
  for (const f of files) await writeConfigFile(runner, host, site, f, opts);
  for (const note of notes) opts.log(`${host.name}: ${note}`);
  return { files: files.map((f) => f.path), notes };
}

async function writeConfigFile(runner: CommandRunner, host: HostDefinition, site: SiteHosts, file: ConfigFile, opts: SiteRestoreOptions): Promise<void> {
  const partial = `${file.path}${PARTIAL_SUFFIX}`;
  if (host.address.kind === 'local') {
    fs.writeFileSync(partial, file.content, { mode: file.mode });
    fsyncFile(partial);
  } else {
    await runChecked(runner, 'rm', ['-f', '--', partial]);
    const w = RemoteFileWriter.open(new SshCommandRunner(host.address, opts.local, site.sshConfig).sshArgs(), partial, file.content.length, `${host.name}:${partial}`);
    try {
      await w.write(0, file.content);
      await w.close();
    } catch (err) {
      w.abort();
      throw err;
    }
  }
  await runChecked(runner, 'chmod', [file.mode.toString(8), '--', partial]);
  await runChecked(runner, 'mv', ['-f', '--', partial, file.path]);
}

/** The partial name a disk is written under until it is complete. */
function partialPath(target: PoolVolume): string {
  return target.kind === 'file' ? `${target.path}${PARTIAL_SUFFIX}` : `${target.path}-ferry-partial`;
}

function lvName(p: string): string {
  return p.split('/').pop()!;
}

/** What a dry run prints for one disk: the storage, the write, the rename. */
function describeDiskRestore(g: PlannedGuest, host: HostDefinition, target: PoolVolume, record: DiskRecord, log: (line: string) => void): void {
  const on = `${host.name}:`;
  const partial = partialPath(target);
  if (target.kind === 'file') {
    log(`${on} ${describeCommand('mkdir', ['-p', '--', path.posix.dirname(target.path)])}`);
    log(`${on} create ${partial} (sparse, ${record.size} bytes) and write ${record.dataBytes} data bytes of ${g.guest}/${record.name} from restore point ${g.restorePoint.slice(0, 8)}, each chunk verified`);
    log(`${on} fsync, ${describeCommand('mv', ['--', partial, target.path])}`);
  } else {
    log(`${on} ${describeCommand('lvcreate', lvcreateArgs(target, record.size, lvName(partial)))}`);
    log(`${on} write ${target.kind === 'thick-lv' ? `${record.size} bytes (zeros too: a new thick volume is not zeroed)` : `${record.dataBytes} data bytes`} of ${g.guest}/${record.name} into /dev/${target.pool.type === 'lvm' ? target.pool.volumeGroup : ''}/${lvName(partial)}, each chunk verified`);
    log(`${on} ${describeCommand('lvrename', [target.pool.type === 'lvm' ? target.pool.volumeGroup : '', lvName(partial), lvName(target.path)])}`);
  }
}

function lvcreateArgs(target: PoolVolume, size: number, name: string): string[] {
  if (target.pool.type !== 'lvm') throw new Error('lvcreateArgs: not an lvm pool');
  // lvm sizes are in 512-byte units at least: round up (the disk's bytes all fit; restore writes only `size`).
  const bytes = `${Math.ceil(size / 512) * 512}b`;
  return target.pool.thinPool
    ? ['-q', '-V', bytes, '-T', `${target.pool.volumeGroup}/${target.pool.thinPool}`, '-n', name]
    : ['-q', '-Wy', '-Zn', '-L', bytes, '-n', name, target.pool.volumeGroup];
}

/** The target must not exist (unless overwriting); a partial one of an earlier run is replaced. */
async function prepareTarget(runner: CommandRunner, host: HostDefinition, target: PoolVolume, record: DiskRecord, existing: SiteRestoreOptions['existing']): Promise<void> {
  const partial = partialPath(target);
  const exists = await existsOn(runner, target.path);
  if (exists && existing === 'refuse') {
    throw new InputError(`${host.name}:${target.path} already exists; remove it, or restore with --force to overwrite it`);
  }
  if (target.kind === 'file') {
    await runChecked(runner, 'mkdir', ['-p', '--', path.posix.dirname(target.path)]);
    await runChecked(runner, 'rm', ['-f', '--', partial]);
    return;
  }
  if (target.pool.type !== 'lvm') return;
  if (await existsOn(runner, partial)) await runChecked(runner, 'lvremove', ['-q', '-f', `${target.pool.volumeGroup}/${lvName(partial)}`]);
  await runChecked(runner, 'lvcreate', lvcreateArgs(target, record.size, lvName(partial)));
}

/** Complete: fsynced by the writer; now under its final name (a file replaces any old one atomically). */
async function finishTarget(runner: CommandRunner, target: PoolVolume): Promise<void> {
  const partial = partialPath(target);
  if (target.kind === 'file') {
    await runChecked(runner, 'mv', ['-f', '--', partial, target.path]);
    await runChecked(runner, 'sync', [path.posix.dirname(target.path)]);
    return;
  }
  if (target.pool.type !== 'lvm') return;
  if (await existsOn(runner, target.path)) await runChecked(runner, 'lvremove', ['-q', '-f', `${target.pool.volumeGroup}/${lvName(target.path)}`]);
  await runChecked(runner, 'lvrename', [target.pool.volumeGroup, lvName(partial), lvName(target.path)]);
}

async function writeLocally(
  repo: Repository,
  workers: PipelinePool,
  record: DiskRecord,
  target: PoolVolume,
  resumeFrom: number,
  checkpoint: (regionsDone: number) => void,
  onWritten: (bytesSinceCheckpoint: number) => void,
): Promise<number> {
  const partial = partialPath(target);
  if (target.kind === 'file' && resumeFrom === 0) {
    try {
      // A run killed before its first checkpoint may have left one: nothing of it is recorded as written, and
      // it may hold another restore point's bytes where this one has holes, so it is made anew, not written over.
      fs.rmSync(partial, { force: true });
      createSparseFile(partial, record.size);
    } catch (err) {
      throw new InputError(`cannot create ${partial}: ${describeSystemError(err)}`, { cause: err });
    }
  }
  let written = 0;
  for (let from = resumeFrom; from < record.regions.length; from += LOCAL_BATCH_REGIONS) {
    const to = Math.min(record.regions.length, from + LOCAL_BATCH_REGIONS);
    written += await restoreDisk(repo, workers, record, partial, { zeroFill: target.kind === 'thick-lv', regions: { from, to }, onProgress: onWritten });
    fsyncFile(partial);
    checkpoint(to);
  }
  return written;
}

async function writeRemotely(
  repo: Repository,
  workers: PipelinePool,
  record: DiskRecord,
  target: PoolVolume,
  ssh: SshCommandRunner,
  host: HostDefinition,
  scratchDir: string,
  resumeFrom: number,
  checkpoint: (regionsDone: number) => void,
  onWritten: (bytesSinceCheckpoint: number) => void,
): Promise<number> {
  const partial = partialPath(target);
  removeDeadRunsScratch(scratchDir);
  const writer = RemoteFileWriter.open(ssh.sshArgs(), partial, target.kind === 'file' ? record.size : 'device', `${host.name}:${partial}`);
  const scratch = scratchFileFor(scratchDir, host, target);
  let written = 0;
  let batchWritten = 0;
  try {
    for (let from = resumeFrom; from < record.regions.length; from += REMOTE_BATCH_REGIONS) {
      const to = Math.min(record.regions.length, from + REMOTE_BATCH_REGIONS);
      // A fresh sparse scratch file per batch: the last batch's blocks are freed with it.
      fs.rmSync(scratch, { force: true });
      createSparseFile(scratch, record.size);
      // One plan serves both the restore and the ranges to send: the region maps are read once.
      const plan = await restorePlan(repo, record, from, to);
      await restorePlanned(repo, workers, plan, scratch, { zeroFill: false });
      // A thick volume is not zeroed: its zero ranges are written too.
      const spans = target.kind === 'thick-lv' ? [{ start: plan.start, end: plan.end }] : plan.dataSpans;
      const rfd = fs.openSync(scratch, 'r');
      try {
        for (const s of spans) {
          for (let at = s.start; at < s.end; at += REMOTE_PIECE) {
            const piece = Buffer.allocUnsafe(Math.min(REMOTE_PIECE, s.end - at));
            fs.readSync(rfd, piece, 0, piece.length, at);
            await writer.write(at, piece);
            written += piece.length;
            batchWritten += piece.length;
            onWritten(batchWritten);
          }
        }
      } finally {
        fs.closeSync(rfd);
      }
      await writer.sync();
      checkpoint(to);
      batchWritten = 0;
    }
    await writer.close();
  } catch (err) {
    writer.abort();
    throw err;
  } finally {
    fs.rmSync(scratch, { force: true });
  }
  return written;
}
