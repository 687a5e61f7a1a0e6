// SnapshotProvider "qemu-live": QEMU itself copies a running guest's disks at
// one point in time (blockdev-backup), and tracks what the guest writes
// afterwards in dirty bitmaps, so the next run copies only that.
//
// Image fleecing (QEMU >= 7.1): a copy-before-write filter is put between
// the guest device and its disk (`qom-set drive`); from that instant it keeps
// the disk's old contents in a temporary image before the guest overwrites
// them, and a snapshot-access node reads the disk as it was. A backup job
// then copies from that node. The filter runs with on-cbw-error=break-snapshot
// and a cbw-timeout: when the temporary image cannot take a copy (work
// directory full, storage too slow), the guest's write goes through and only
// this backup fails. (A plain blockdev-backup fails the guest's own write
// instead, and QEMU's default werror then stops the guest.) The work
// directory's free space is checked before the copy, too.
//
// A guest with one disk is never paused. For several disks the filters are
// put in place while the guest is stopped for a moment (with the watchdog
// armed), so all disks share one point in time. create() returns once the
// copies are complete. The job writes into a qcow2 file (sparse for zero
// ranges, and for an incremental it records which clusters were written);
// `qemu-img convert` then makes the sparse raw file the backup reads.
//
// Only guest devices whose drive QEMU can swap while running are fleeced:
// virtio-blk (through its PCI/CCW proxy: setting the drive on the
// virtio-backend object itself crashes QEMU 7.2) and scsi-hd. Other disks
// (IDE, …) are left to the other providers.
//
// Changed-block tracking, the way libvirt does checkpoints (and not QEMU's
// "bitmap cleared on success" shortcut, which loses changes when the backup
// job succeeds but ferry then fails to store the restore point):
//   - every run adds a new bitmap `ferry-cbt-<runId>` in the same transaction
//     that starts its copy; its name is the tracking token of the restore point;
//   - an incremental run (since = token of bitmap B) freezes a copy of B in
//     the same transaction (`ferry-tmp-<runId>`, disabled, B merged into it)
//     and copies exactly the clusters dirty in it (sync=bitmap,
//     bitmap-mode=never) into the target; B itself keeps recording, so if
//     this run never becomes a restore point the next run can still use B;
//   - after a successful copy only B and the new bitmap are kept: whichever
//     restore point the next run continues from, its bitmap still exists;
//     commit() (the restore point is saved) then drops B as well;
//   - the qcow2 target holds exactly the clusters the job wrote (`qemu-img map`:
//     data and zero clusters); their total must equal the frozen bitmap's dirty
//     byte count, or the run fails rather than produce a wrong image.
// A missing, inconsistent (QEMU crashed) or disabled bitmap, or a token from
// another provider, means a full copy, and `fullReadReason` says why.
// Bitmaps are persistent where the format can store them (qcow2), so tracking
// survives a clean QEMU restart; on raw disks a restart loses them: full copy.
import { createHash } from 'node:crypto';
import { mkdir, stat, unlink } from 'node:fs/promises';
import { checkWorkDirectorySpace } from './workDirectory';
import { basename, dirname, join, resolve } from 'node:path';
import { HypervisorError, UsageError } from '../errors';
import { type CommandRunner, ExecFileCommandRunner, runChecked } from '../hypervisor/commandRunner';
import type { GuestDisk, HoldGuard } from '../hypervisor/driver';
import { qmpReleaseArgv } from '../hypervisor/qemu/qemuDriver';
import {
  type QemuDisk, type QmpBlockNode, type QmpDirtyBitmap, bitmapsOf, deviceProxyPath, namedBitmaps, queryDisks, queryNodes,
} from '../hypervisor/qemu/qmpBlock';
import { QmpBusyError, QmpClient, type QmpConnectOptions, type QmpEvent, isOpenInProcess } from '../hypervisor/qemu/qmpClient';
import { checkRunId, ownedByLiveRun, type ByteRange, type ChangeTracking, type Snapshot, type SnapshotProvider } from './provider';
import { LeftoverSweep, deleteFiles, pollUntil, sweepOwnedFiles } from './providerParts';
import { presentRanges, totalBytes } from './qemuImageMap';
import {
  FROZEN_BITMAP_PREFIX, JOB_PREFIX, QEMU_OWNED_PREFIX, TARGET_FILE, TRACKING_BITMAP_PREFIX, removeQmpLeftovers,
} from './qemuLiveLeftovers';

export const QEMU_TRACKING_KIND = 'qemu-dirty-bitmap';
/** Seconds a guest write may wait for its copy-before-write before the snapshot is broken instead. */
const CBW_TIMEOUT_S = 30;
/** Guest device types whose `drive` can be swapped while running, by QOM type. */
const FLEECEABLE_DEVICES = new Set(['virtio-blk-pci', 'virtio-blk-pci-non-transitional', 'virtio-blk-pci-transitional', 'virtio-blk-ccw', 'scsi-hd']);
// 64 KiB: QEMU's default and the block-copy cluster size, so an incremental copies exactly the dirty bitmap.
const GRANULARITY = 64 * 1024;

export interface QemuLiveOptions {
  /** QMP sockets of the guests whose disks this provider can copy. */
  sockets: readonly string[];
  /**
   * Directory for the copies (`ferry-<runId>-<index>-<device>.raw`); needs room
   * for twice the copied data (the disk's data for a full copy, the changes for
   * an incremental) while the job's qcow2 file is converted.
   */
  workDir: string;
  /** Runs qemu-img. Default: real commands. */
  runner?: CommandRunner;
  qemuImg?: string;
  qmp?: QmpConnectOptions;
  /** How long one guest's copy jobs may take (default 6 h). */
  jobTimeoutMs?: number;
  /** Limit of the copy job, bytes per second (default: none), so a copy does not starve the guests' I/O. */
  copyBytesPerSecond?: number;
  /**
   * Told before the guest is stopped for a moment to fleece several disks at
   * one point in time (see HoldGuard); released right after.
   */
  holdGuard?: () => HoldGuard & { standDown(): void; releaseNow(): void };
}

/** findDisk for canHandle (`probe`: unreachable sockets, unfleeceable devices, busy sockets mean undefined) or for use (`require`: they throw). */
type FindDiskMode = 'probe' | 'require';

interface Located {
  socket: string;
  qemu: QemuDisk;
  /** QOM path whose `drive` property swaps the guest device's node. */
  devicePath: string;
}

interface Plan {
  index: number;
  disk: GuestDisk;
  nodeName: string;
  /** QOM path of the device whose drive is swapped for the copy-before-write filter. */
  devicePath: string;
  cbwNode: string;
  accessNode: string;
  fleeceNode: string;
  fleeceFile: string;
  /** Bytes the copy is expected to write into the work directory. */
  expectedBytes: number;
  virtualSize: number;
  base: string;
  targetNode: string;
  targetFile: string;
  jobId: string;
  newBitmap: string;
  persistent: boolean;
  /** The bitmap to copy from (incremental), or undefined (full copy). */
  since?: QmpDirtyBitmap;
  frozenBitmap: string;
  fullReadReason?: string;
}

interface Copied {
  plan: Plan;
  /** Dirty bytes the frozen bitmap held (incremental only). */
  dirtyBytes?: number;
  jobLength?: number;
}

export class QemuLiveProvider implements SnapshotProvider {
  readonly kind = 'qemu-live';
  /** create() fixes one point in time for all disks of a guest itself (QMP transaction); a pause adds nothing. */
  readonly pointInTimeByItself = true;
  private readonly sockets: readonly string[];
  private readonly workDir: string;
  private readonly runner: CommandRunner;
  private readonly qemuImg: string;
  private readonly qmpOptions: QmpConnectOptions;
  private readonly jobTimeoutMs: number;
  private readonly probeTimeoutMs: number;
  private readonly copyBytesPerSecond: number | undefined;
  private readonly holdGuard: QemuLiveOptions['holdGuard'];
  /** Disk path -> the socket it was found on, so later calls go straight there. */
  private readonly locations = new Map<string, string>();

  constructor(options: QemuLiveOptions) {
    this.sockets = options.sockets.map((s) => resolve(s));
    this.workDir = resolve(options.workDir);
    this.runner = options.runner ?? new ExecFileCommandRunner();
    this.qemuImg = options.qemuImg ?? 'qemu-img';
    this.qmpOptions = options.qmp ?? {};
    this.jobTimeoutMs = options.jobTimeoutMs ?? 6 * 3600_000;
    this.probeTimeoutMs = Math.min(this.qmpOptions.connectTimeoutMs ?? 10_000, 3_000);
    this.copyBytesPerSecond = options.copyBytesPerSecond;
    this.holdGuard = options.holdGuard;
  }

  async canHandle(disk: GuestDisk): Promise<boolean> {
    if (disk.cdrom) return false;
    return (await this.findDisk(disk, 'probe')) !== undefined;
  }

  async create(disks: GuestDisk[], runId: string, since?: (ChangeTracking | undefined)[]): Promise<Snapshot[]> {
    checkRunId(runId, 'a QEMU bitmap or file name');
    if (disks.length === 0) return [];
    const located: Located[] = [];
    for (const disk of disks) {
      const found = await this.findDisk(disk, 'require');
      if (!found) {
        throw new HypervisorError(
          `disk ${disk.device} (${disk.path}) is not attached to any QEMU guest behind ${this.sockets.join(', ')}: check the QMP sockets ferry was given`,
        );
      }
      located.push(found);
    }
    const socket = located[0]!.socket;
    const other = located.find((l) => l.socket !== socket);
    if (other) {
      throw new HypervisorError(
        `disks ${disks[0]!.path} and ${other.qemu.disk.path} belong to different QEMU processes (${socket}, ${other.socket}): one snapshot covers one guest`,
      );
    }
    await mkdir(this.workDir, { recursive: true });

    const copied = await QmpClient.with(socket, async (client) => {
      const nodes = await queryNodes(client);
      const plans = located.map((l, i) => this.plan(i, disks[i]!, l, nodes, runId, since?.[i]));
      await this.checkFreeSpace(plans);
      return this.copy(client, plans);
    }, this.qmpOptions);

    const snapshots: Snapshot[] = [];
    try {
      for (const c of copied) snapshots.push(await this.finish(c));
    } catch (err) {
      for (const c of copied) await this.removeFiles(c.plan.base).catch(() => undefined);
      if (err instanceof IncompleteCopyError) {
        // Drop the bitmaps of this disk's chain, so the next run reads the
        // whole disk instead of failing the same way again.
        const p = err.plan;
        await QmpClient.with(socket, async (client) => {
          for (const name of [p.newBitmap, p.since!.name]) {
            await client.execute('block-dirty-bitmap-remove', { node: p.nodeName, name }).catch(() => undefined);
          }
        }, this.qmpOptions).catch(() => undefined);
      }
      throw err;
    }
    return snapshots;
  }

  /**
   * The restore point holding these snapshots is saved: their bitmaps are now
   * the only ones a next run continues from, so older ferry bitmaps go (each
   * one costs QEMU work on every guest write).
   */
  async commit(snapshots: Snapshot[]): Promise<void> {
    for (const s of snapshots) {
      if (s.tracking?.kind !== QEMU_TRACKING_KIND) continue;
      const found = await this.findDisk(s.disk, 'require');
      if (!found) continue; // the guest is gone: so are its bitmaps
      const keep = s.tracking.token;
      await QmpClient.with(found.socket, async (c) => {
        const bitmaps = bitmapsOf(await queryNodes(c), found.qemu.nodeName);
        if (!bitmaps.some((b) => b.name === keep)) return; // lost meanwhile: the next run reads everything anyway
        for (const b of bitmaps) {
          if (b.name.startsWith(TRACKING_BITMAP_PREFIX) && b.name !== keep) {
            await c.execute('block-dirty-bitmap-remove', { node: found.qemu.nodeName, name: b.name });
          }
        }
      }, this.qmpOptions);
    }
  }

  async remove(snapshot: Snapshot): Promise<void> {
    const name = basename(snapshot.ownedName);
    if (!name.startsWith(QEMU_OWNED_PREFIX) || resolve(dirname(snapshot.ownedName)) !== this.workDir) {
      throw new UsageError(`refusing to remove ${snapshot.ownedName}: not a ferry copy in ${this.workDir}`);
    }
    await this.removeFiles(name.replace(/\.(raw|qcow2)$/, ''));
  }

  /**
   * Cancels ferry's copy jobs, deletes ferry's target nodes and frozen bitmaps
   * in every reachable QEMU, and deletes ferry's copy files in the work
   * directory. Tracking bitmaps (`ferry-cbt-*`) stay: they are the state the
   * next incremental needs. Guests that are not running are skipped.
   */
  async removeLeftovers(): Promise<string[]> {
    const sweep = new LeftoverSweep('leftover(s) of earlier qemu-live runs');
    for (const socket of this.sockets) {
      try {
        await QmpClient.with(socket, (c) => removeQmpLeftovers(c, socket, sweep.removed), this.qmpOptions);
      } catch (err) {
        if (isGuestGone(err)) continue;
        sweep.failed((err as Error).message);
      }
    }
    // A live run's copies stay: it may be reading one now (its QEMU side is kept apart by the QMP connection it holds).
    await sweepOwnedFiles(sweep, this.workDir, (name) => TARGET_FILE.test(name) && !ownedByLiveRun(name, QEMU_OWNED_PREFIX));
    return sweep.done();
  }

  /**
   * The guest (socket) and block node a disk belongs to, by its host path.
   * The socket that had the disk last time is asked first. Sockets this
   * process is using right now (another guest's copy job runs there, possibly
   * for minutes) or that another client holds are skipped: QEMU serves one
   * QMP client at a time, and waiting for them would stall parallel backups.
   */
  private async findDisk(disk: GuestDisk, mode: FindDiskMode): Promise<Located | undefined> {
    const probe = mode === 'probe';
    const wanted = resolve(disk.path);
    const remembered = this.locations.get(wanted);
    const order = remembered ? [remembered, ...this.sockets.filter((s) => s !== remembered)] : [...this.sockets];
    const busy: string[] = [];
    for (const socket of order) {
      if (isOpenInProcess(socket)) {
        busy.push(socket);
        continue;
      }
      let found: { qemu: QemuDisk; devicePath: string | undefined } | undefined;
      try {
        found = await QmpClient.with(socket, async (c) => {
          const qemu = (await queryDisks(c)).find((d) => resolve(d.disk.path) === wanted);
          return qemu ? { qemu, devicePath: await swappableDevicePath(c, qemu) } : undefined;
        }, { ...this.qmpOptions, connectTimeoutMs: this.probeTimeoutMs });
      } catch (err) {
        if (err instanceof QmpBusyError) { busy.push(socket); continue; }
        if (probe || isGuestGone(err)) continue;
        throw err;
      }
      if (found) {
        this.locations.set(wanted, socket);
        if (found.devicePath === undefined) {
          if (probe) return undefined; // canHandle: another provider takes it
          throw new HypervisorError(
            `disk ${disk.device} (${disk.path}) is on a guest device QEMU cannot switch to a copy-before-write filter while running ` +
              '(live copies need QEMU >= 7.1 and a virtio-blk or scsi-hd device): choose another snapshot method for this guest in ferry.conf',
          );
        }
        return { socket, qemu: found.qemu, devicePath: found.devicePath };
      }
    }
    if (busy.length > 0 && !probe) {
      throw new HypervisorError(
        `disk ${disk.device} (${disk.path}) was not found on the free QMP sockets, and ${busy.join(', ')} ${busy.length > 1 ? 'were' : 'was'} busy: retry when their backups are done`,
      );
    }
    return undefined;
  }

  private plan(index: number, disk: GuestDisk, { qemu, devicePath }: Located, nodes: QmpBlockNode[], runId: string, since: ChangeTracking | undefined): Plan {
    const node = nodes.find((n) => n['node-name'] === qemu.nodeName);
    if (!node) throw new HypervisorError(`QEMU lists disk ${disk.device} on node ${qemu.nodeName}, but query-named-block-nodes does not`);
    const bitmaps = namedBitmaps(node);
    const label = disk.device.replace(/[^A-Za-z0-9_.+-]/g, '_') || 'disk';
    // The index keeps names unique even if two devices sanitize to the same label.
    const base = `${QEMU_OWNED_PREFIX}${runId}-${index}-${label}`;
    const hash = createHash('sha256').update(`${this.workDir}\0${base}`).digest('hex').slice(0, 12);
    const newBitmap = `${TRACKING_BITMAP_PREFIX}${runId}`;
    if (bitmaps.some((b) => b.name === newBitmap)) {
      throw new HypervisorError(`disk ${disk.device} already has a bitmap ${newBitmap}: run id ${runId} was used before; use a new run id`);
    }
    const plan: Plan = {
      index,
      disk,
      nodeName: qemu.nodeName,
      devicePath,
      cbwNode: `${QEMU_OWNED_PREFIX}c-${hash}`,
      accessNode: `${QEMU_OWNED_PREFIX}a-${hash}`,
      fleeceNode: `${QEMU_OWNED_PREFIX}t-${hash}`,
      fleeceFile: join(this.workDir, `${base}-cbw.qcow2`),
      // What the copy job writes: the disk's allocated bytes (full) or the dirty ones (incremental).
      expectedBytes: node.image['actual-size'] ?? node.image['virtual-size'],
      virtualSize: node.image['virtual-size'],
      base,
      targetNode: `${QEMU_OWNED_PREFIX}${hash}`,
      targetFile: join(this.workDir, `${base}.qcow2`),
      jobId: `${JOB_PREFIX}${hash}`,
      newBitmap,
      // Only qcow2 can store bitmaps in the image; elsewhere they live as long as the QEMU process.
      persistent: node.drv === 'qcow2' && !node.ro,
      frozenBitmap: `${FROZEN_BITMAP_PREFIX}${runId}`,
    };
    if (since === undefined) return plan;
    const why = sinceProblem(since, bitmaps, disk);
    if (why) return { ...plan, fullReadReason: why };
    const bitmap = bitmaps.find((b) => b.name === since.token)!;
    if (bitmap.busy) {
      throw new HypervisorError(`dirty bitmap ${bitmap.name} of disk ${disk.device} is busy: another backup of this guest is running`);
    }
    return { ...plan, since: bitmap, expectedBytes: bitmap.count };
  }

  /**
   * Refuses a copy the work directory cannot hold: the job's target and the
   * raw file converted from it each take about the copied bytes.
   */
  private async checkFreeSpace(plans: Plan[]): Promise<void> {
    const need = 2 * plans.reduce((sum, p) => sum + p.expectedBytes, 0);
    await checkWorkDirectorySpace(this.workDir, need, `the live copy of ${plans.map((p) => p.disk.device).join(', ')}`);
  }

  /**
   * Puts a copy-before-write filter in front of every disk (the point in
   * time), then copies each disk as it was through a snapshot-access node,
   * and takes the filters out again.
   */
  private async copy(client: QmpClient, plans: Plan[]): Promise<Copied[]> {
    const added: Plan[] = [];
    const fleeced: Plan[] = [];
    let tracking = false;
    try {
      for (const p of plans) {
        added.push(p);
        await this.createTargetFile(p);
        await this.createFleeceFile(p);
        await client.execute('blockdev-add', { driver: 'qcow2', 'node-name': p.targetNode, file: { driver: 'file', filename: p.targetFile } });
        await client.execute('blockdev-add', { driver: 'qcow2', 'node-name': p.fleeceNode, file: { driver: 'file', filename: p.fleeceFile } });
        await client.execute('blockdev-add', {
          driver: 'copy-before-write',
          'node-name': p.cbwNode,
          file: p.nodeName,
          target: p.fleeceNode,
          // A full or slow work directory breaks this backup, never the guest's write.
          'on-cbw-error': 'break-snapshot',
          'cbw-timeout': CBW_TIMEOUT_S,
        });
      }
      // The new tracking bitmaps start just before the point in time: a write
      // in between lands in both the copy and the next increment (harmless),
      // never in neither.
      await client.execute('transaction', { actions: plans.map((p) => ({
        type: 'block-dirty-bitmap-add',
        data: { node: p.nodeName, name: p.newBitmap, granularity: GRANULARITY, persistent: p.persistent },
      })) });
      tracking = true;
      await this.insertFilters(client, plans, fleeced);

      const ends = plans.map((p) => client.waitForEvent(
        (e) => (e.event === 'BLOCK_JOB_COMPLETED' || e.event === 'BLOCK_JOB_CANCELLED') && e.data.device === p.jobId,
        this.jobTimeoutMs,
        `end of copy job ${p.jobId} (disk ${p.disk.device})`,
      ));
      for (const p of plans) {
        await client.execute('blockdev-add', { driver: 'snapshot-access', 'node-name': p.accessNode, file: p.cbwNode });
      }
      // The since-bitmap is frozen after the point in time: it may name a few
      // clusters written since, which are then copied as they were (harmless).
      await client.execute('transaction', { actions: plans.flatMap((p) => this.copyActions(p)) });

      const results = await Promise.allSettled(ends);
      const failed = results.map((r, i) => jobFailure(r, plans[i]!)).filter((f): f is string => f !== undefined);
      if (failed.length > 0) {
        await this.cancelJobs(client, plans);
        throw new HypervisorError(`QEMU live backup failed: ${failed.join('; ')}`);
      }

      const copied: Copied[] = [];
      const nodes = await queryNodes(client);
      for (const [i, p] of plans.entries()) {
        const end = (results[i] as PromiseFulfilledResult<QmpEvent>).value;
        const jobLength = typeof end.data.len === 'number' ? end.data.len : undefined;
        const frozen = p.since ? bitmapsOf(nodes, p.accessNode).find((b) => b.name === p.frozenBitmap) : undefined;
        if (p.since && !frozen) throw new HypervisorError(`bitmap ${p.frozenBitmap} of disk ${p.disk.device} vanished during the copy`);
        copied.push({ plan: p, ...(frozen ? { dirtyBytes: frozen.count } : {}), ...(jobLength !== undefined ? { jobLength } : {}) });
      }
      await this.removeFleecing(client, plans, fleeced);
      // The copies are complete: drop the tracking bitmaps no restore point can refer to any more.
      for (const p of plans) {
        await client.execute('blockdev-del', { 'node-name': p.targetNode });
        const keep = new Set([p.newBitmap, ...(p.since ? [p.since.name] : [])]);
        for (const b of bitmapsOf(nodes, p.nodeName)) {
          if (b.name.startsWith(TRACKING_BITMAP_PREFIX) && !keep.has(b.name)) {
            await client.execute('block-dirty-bitmap-remove', { node: p.nodeName, name: b.name });
          }
        }
        await unlink(p.fleeceFile);
      }
      return copied;
    } catch (err) {
      // Undo this run: the guest's own path first, then targets and files, and
      // the new tracking bitmaps (they start at a point in time no restore point will have).
      await this.removeFleecing(client, added, fleeced).catch(() => undefined);
      for (const p of added) {
        await client.execute('blockdev-del', { 'node-name': p.targetNode }).catch(() => undefined);
        if (tracking) await client.execute('block-dirty-bitmap-remove', { node: p.nodeName, name: p.newBitmap }).catch(() => undefined);
        await this.removeFiles(p.base).catch(() => undefined);
      }
      throw err;
    }
  }

  /**
   * Swaps each guest device over to its copy-before-write filter. Several
   * disks are swapped while the guest is stopped, so they share one instant;
   * the watchdog is armed before the stop.
   */
  private async insertFilters(client: QmpClient, plans: Plan[], fleeced: Plan[]): Promise<void> {
    const swap = async (p: Plan) => {
      await client.execute('qom-set', { path: p.devicePath, property: 'drive', value: p.cbwNode });
      fleeced.push(p);
    };
    if (plans.length === 1) {
      await swap(plans[0]!);
      return;
    }
    const status = await client.execute<{ running: boolean }>('query-status');
    if (!status.running) {
      for (const p of plans) await swap(p);
      return;
    }
    const guard = this.holdGuard?.();
    guard?.holding({ argv: qmpReleaseArgv(client.socketPath) });
    try {
      await client.execute('stop');
      try {
        for (const p of plans) await swap(p);
      } finally {
        await client.execute('cont');
      }
    } catch (err) {
      guard?.releaseNow();
      throw err;
    }
    guard?.standDown();
  }

  /** Takes the filters out of the guests' paths and deletes the fleecing nodes. */
  private async removeFleecing(client: QmpClient, plans: Plan[], fleeced: Plan[]): Promise<void> {
    for (const p of plans) {
      await client.execute('blockdev-del', { 'node-name': p.accessNode }).catch(() => undefined); // absent before the copy started
    }
    for (const p of [...fleeced]) {
      await client.execute('qom-set', { path: p.devicePath, property: 'drive', value: p.nodeName });
      fleeced.splice(fleeced.indexOf(p), 1);
    }
    for (const p of plans) {
      await client.execute('blockdev-del', { 'node-name': p.cbwNode }).catch(() => undefined);
      await client.execute('blockdev-del', { 'node-name': p.fleeceNode }).catch(() => undefined);
    }
  }

  private copyActions(p: Plan): object[] {
    const speed = this.copyBytesPerSecond !== undefined ? { speed: this.copyBytesPerSecond } : {};
    if (!p.since) {
      return [{ type: 'blockdev-backup', data: { device: p.accessNode, target: p.targetNode, sync: 'full', 'job-id': p.jobId, ...speed } }];
    }
    return [
      // A frozen copy of the since-bitmap, on the node the job reads: exactly what the job copies.
      { type: 'block-dirty-bitmap-add', data: { node: p.accessNode, name: p.frozenBitmap, granularity: p.since.granularity, disabled: true } },
      { type: 'block-dirty-bitmap-merge', data: { node: p.accessNode, target: p.frozenBitmap, bitmaps: [{ node: p.nodeName, name: p.since.name }] } },
      {
        type: 'blockdev-backup',
        data: { device: p.accessNode, target: p.targetNode, sync: 'bitmap', bitmap: p.frozenBitmap, 'bitmap-mode': 'never', 'job-id': p.jobId, ...speed },
      },
    ];
  }

  private async cancelJobs(client: QmpClient, plans: Plan[]): Promise<void> {
    for (const p of plans) {
      await client.execute('block-job-cancel', { device: p.jobId, force: true }).catch(() => undefined);
    }
    // Best effort on the way to an error: jobs still running after 30 s are the next removeLeftovers' to cancel.
    await pollUntil(async () => {
      const jobs = await client.execute<{ device: string }[]>('query-block-jobs');
      return !jobs.some((j) => plans.some((p) => p.jobId === j.device));
    }, { timeoutMs: 30_000, intervalMs: 100 }).catch(() => undefined);
  }

  private async createTargetFile(p: Plan): Promise<void> {
    const exists = await stat(p.targetFile).then(() => true, () => false);
    if (exists) throw new HypervisorError(`${p.targetFile} already exists: an earlier run with the same id left it; run removeLeftovers first`);
    // Always qcow2, also for a full copy: the job writes zero ranges with
    // write-zeroes, which on a raw file allocates (unwritten extents) the
    // whole virtual size; qcow2 records them as zero clusters (metadata only).
    // Cluster size = bitmap granularity, so each dirty cluster is one target cluster.
    const cluster = Math.min(2 * 1024 * 1024, Math.max(GRANULARITY, p.since?.granularity ?? GRANULARITY));
    await runChecked(this.runner, this.qemuImg, [
      'create', '-q', '-f', 'qcow2', '-o', `cluster_size=${cluster}`, p.targetFile, String(p.virtualSize),
    ]);
  }

  /** The temporary image the filter saves old data into: only clusters the guest overwrites during the copy. */
  private async createFleeceFile(p: Plan): Promise<void> {
    await runChecked(this.runner, this.qemuImg, ['create', '-q', '-f', 'qcow2', p.fleeceFile, String(p.virtualSize)]);
  }

  /** Turns a completed copy into a Snapshot: for an incremental, the changed ranges and a raw view of them. */
  private async finish(c: Copied): Promise<Snapshot> {
    const p = c.plan;
    const tracking: ChangeTracking = { kind: QEMU_TRACKING_KIND, token: p.newBitmap };
    const common = { disk: p.disk, tracking, ...(p.fullReadReason ? { fullReadReason: p.fullReadReason } : {}) };
    let changed: ByteRange[] | undefined;
    if (p.since) {
      const map = await runChecked(this.runner, this.qemuImg, ['map', '--output=json', '-f', 'qcow2', p.targetFile]);
      changed = presentRanges(map.stdout, p.targetFile);
      checkCoverage(changed, c, p);
    }
    const rawFile = join(this.workDir, `${p.base}.raw`);
    // A raw, sparse view the backup can read at any offset: zero and
    // unwritten clusters become holes (SEEK_DATA skips them).
    await runChecked(this.runner, this.qemuImg, ['convert', '-f', 'qcow2', '-O', 'raw', p.targetFile, rawFile]);
    await unlink(p.targetFile);
    return { ...common, readPath: rawFile, ownedName: rawFile, ...(changed ? { changed } : {}) };
  }

  private async removeFiles(base: string): Promise<void> {
    await deleteFiles([`${base}.raw`, `${base}.qcow2`, `${base}-cbw.qcow2`].map((name) => join(this.workDir, name)));
  }
}

/** Why the tracking state from the last restore point cannot be used, or undefined if it can. */
function sinceProblem(since: ChangeTracking, bitmaps: QmpDirtyBitmap[], disk: GuestDisk): string | undefined {
  if (since.kind !== QEMU_TRACKING_KIND) {
    return `the last backup of ${disk.device} was tracked by ${since.kind}, not by a QEMU dirty bitmap`;
  }
  if (!since.token.startsWith(TRACKING_BITMAP_PREFIX)) {
    return `tracking token ${JSON.stringify(since.token)} of ${disk.device} is not a ferry bitmap name`;
  }
  const bitmap = bitmaps.find((b) => b.name === since.token);
  if (!bitmap) {
    return `dirty bitmap ${since.token} is gone from ${disk.device} (QEMU restarted, or the bitmap was removed)`;
  }
  if (bitmap.inconsistent) return `dirty bitmap ${since.token} of ${disk.device} is inconsistent (QEMU stopped uncleanly)`;
  if (!bitmap.recording) return `dirty bitmap ${since.token} of ${disk.device} was disabled, so it missed writes`;
  return undefined;
}

function jobFailure(result: PromiseSettledResult<QmpEvent>, p: Plan): string | undefined {
  if (result.status === 'rejected') return `disk ${p.disk.device}: ${(result.reason as Error).message}`;
  const e = result.value;
  if (e.event === 'BLOCK_JOB_CANCELLED') return `disk ${p.disk.device}: copy job ${p.jobId} was cancelled`;
  if (typeof e.data.error === 'string') return `disk ${p.disk.device}: copy job ${p.jobId} into ${p.targetFile} failed: ${e.data.error}`;
  return undefined;
}

/**
 * The ranges the incremental target holds must cover every byte the frozen
 * bitmap marked dirty. With target clusters as large as the bitmap's
 * granularity, the totals are equal exactly; anything less means QEMU skipped
 * a dirty cluster, and the image would be wrong.
 */
function checkCoverage(changed: ByteRange[], c: Copied, p: Plan): void {
  if (c.dirtyBytes === undefined) return;
  const g = p.since!.granularity;
  // A partial last cluster counts as a whole one in the bitmap.
  const covered = changed.reduce((sum, r) => sum + (Math.ceil(r.end / g) * g - r.start), 0);
  const exact = g >= GRANULARITY;
  if (exact ? covered !== c.dirtyBytes : covered < c.dirtyBytes) {
    throw new IncompleteCopyError(
      p,
      `incremental copy of ${p.disk.device} holds ${totalBytes(changed)} bytes in ${changed.length} ranges, but its dirty bitmap ` +
        `marked ${c.dirtyBytes} bytes (job copied ${c.jobLength ?? '?'}): refusing an image that may miss changes; ` +
        'its bitmaps are dropped, so the next run reads the whole disk',
    );
  }
}

/** An incremental copy that does not hold every dirty cluster: never to be used. */
class IncompleteCopyError extends HypervisorError {
  constructor(readonly plan: Plan, message: string) {
    super(message);
  }
}

function isGuestGone(err: unknown): boolean {
  const cause = (err as { cause?: NodeJS.ErrnoException }).cause;
  return cause?.code === 'ENOENT' || cause?.code === 'ECONNREFUSED';
}

/**
 * The QOM path whose `drive` can be swapped while the guest runs, or
 * undefined. virtio-blk reports its backend object; the swap must go through
 * the proxy device above it.
 */
async function swappableDevicePath(client: QmpClient, qemu: QemuDisk): Promise<string | undefined> {
  if (!qemu.qdev) return undefined;
  const version = await client.execute<{ qemu: { major: number; minor: number } }>('query-version');
  if (version.qemu.major < 7 || (version.qemu.major === 7 && version.qemu.minor < 1)) return undefined; // no on-cbw-error before 7.1
  const path = deviceProxyPath(qemu.qdev);
  const type = await client.execute<string>('qom-get', { path, property: 'type' }).catch(() => undefined);
  return type !== undefined && FLEECEABLE_DEVICES.has(type) ? path : undefined;
}
