// SnapshotProvider for LVM logical volumes. Thick LVs get a classic COW
// snapshot sized as a percentage of the origin (checked against the VG's
// free space before anything is created); thin LVs get a thin snapshot in
// their pool, activated (-kn) so it can be read. Every snapshot is named
// `ferry-<runId>-<lv>`, which is how leftovers of a killed run are found.
import { HypervisorError, UsageError } from '../errors';
import { type CommandRunner, type RunOptions, lastErrorLine, runChecked } from '../hypervisor/commandRunner';
import type { GuestDisk } from '../hypervisor/driver';
import { InsufficientSnapshotSpaceError } from './errors';
import {
  LVS_ARGS, VGS_ARGS, type LogicalVolume, findVolumeByPath, isSnapshot, isThin, parseLvsReport, parseVgsReport,
} from './lvmReport';
import { checkRunId, ownedByLiveRun, type Snapshot, type SnapshotProvider } from './provider';
import { LeftoverSweep } from './providerParts';

export const LVM_SNAPSHOT_PREFIX = 'ferry-';
// lvm2 limits LV names to 127 characters.
const MAX_LV_NAME = 127;
// Quiets lvm's "File descriptor N leaked" warnings; LC_ALL=C is set by the runner.
const LVM_ENV: RunOptions = { env: { LVM_SUPPRESS_FD_WARNINGS: '1' } };

export interface LvmSnapshotOptions {
  runner: CommandRunner;
  /** COW space for a thick snapshot, in percent of the origin's size. Default 10. */
  snapshotPercent?: number;
}

interface PlannedSnapshot {
  disk: GuestDisk;
  origin: LogicalVolume;
  name: string;
  /** Bytes reserved in the VG; undefined for thin snapshots, which use the pool. */
  sizeBytes?: number;
}

export class LvmSnapshotProvider implements SnapshotProvider {
  readonly kind = 'lvm';
  private readonly runner: CommandRunner;
  private readonly snapshotPercent: number;

  constructor(options: LvmSnapshotOptions) {
    this.runner = options.runner;
    this.snapshotPercent = options.snapshotPercent ?? 10;
    if (!(this.snapshotPercent > 0 && this.snapshotPercent <= 100)) {
      throw new UsageError(`LVM snapshot size must be between 0 and 100 percent of the origin, got ${this.snapshotPercent}`);
    }
  }

  async canHandle(disk: GuestDisk): Promise<boolean> {
    if (!disk.path.startsWith('/dev/')) return false; // image files: no need to ask LVM
    const lv = findVolumeByPath(await this.listVolumes(), disk.path);
    return lv !== undefined && !isSnapshot(lv);
  }

  async create(disks: GuestDisk[], runId: string): Promise<Snapshot[]> {
    checkRunId(runId, 'an LVM name');
    const volumes = await this.listVolumes();
    const plan = disks.map((disk) => this.plan(disk, runId, volumes));
    await this.checkFreeSpace(plan);

    const created: Snapshot[] = [];
    try {
      for (const p of plan) {
        await runChecked(this.runner, 'lvcreate', this.lvcreateArgs(p), LVM_ENV);
        created.push({ disk: p.disk, readPath: `/dev/${p.origin.vg}/${p.name}`, ownedName: `${p.origin.vg}/${p.name}` });
      }
    } catch (err) {
      // All or nothing: a guest whose disks are only partly snapshotted is not a consistent backup.
      for (const s of created.reverse()) {
        await this.remove(s).catch(() => undefined); // removeLeftovers catches what this misses
      }
      throw err;
    }
    return created;
  }

  async remove(snapshot: Snapshot): Promise<void> {
    const lvName = snapshot.ownedName.split('/')[1] ?? '';
    if (!lvName.startsWith(LVM_SNAPSHOT_PREFIX)) {
      throw new UsageError(`refusing to remove ${snapshot.ownedName}: not a ferry snapshot (name must start with ${LVM_SNAPSHOT_PREFIX})`);
    }
    const result = await this.runner.run('lvremove', ['-f', snapshot.ownedName], LVM_ENV);
    if (result.code === 0) return;
    if (/Failed to find logical volume/.test(result.stderr)) return; // already gone
    throw new HypervisorError(`lvremove -f ${snapshot.ownedName} failed (exit ${result.code}): ${lastErrorLine(result.stderr) || 'no message'}`);
  }

  async removeLeftovers(): Promise<string[]> {
    // Only snapshots named by ferry: an admin's own `ferry-...` volume that is not a snapshot stays.
    // And none of a run that still runs: it may be reading that snapshot now.
    const leftovers = (await this.listVolumes()).filter((lv) =>
      lv.name.startsWith(LVM_SNAPSHOT_PREFIX) && isSnapshot(lv) && !ownedByLiveRun(lv.name, LVM_SNAPSHOT_PREFIX));
    const sweep = new LeftoverSweep('leftover snapshot(s)');
    for (const lv of leftovers) {
      const ownedName = `${lv.vg}/${lv.name}`;
      await sweep.remove(ownedName, async () => { await runChecked(this.runner, 'lvremove', ['-f', ownedName], LVM_ENV); });
    }
    return sweep.done();
  }

  private async listVolumes(): Promise<LogicalVolume[]> {
    return parseLvsReport((await runChecked(this.runner, 'lvs', LVS_ARGS, LVM_ENV)).stdout);
  }

  private plan(disk: GuestDisk, runId: string, volumes: readonly LogicalVolume[]): PlannedSnapshot {
    const origin = findVolumeByPath(volumes, disk.path);
    if (!origin) throw new HypervisorError(`disk ${disk.device} (${disk.path}) is not an LVM logical volume`);
    if (isSnapshot(origin)) {
      throw new HypervisorError(`disk ${disk.device} (${disk.path}) is itself a snapshot of ${origin.vg}/${origin.origin}; ferry does not snapshot snapshots`);
    }
    const name = `${LVM_SNAPSHOT_PREFIX}${runId}-${origin.name}`;
    if (name.length > MAX_LV_NAME) {
      throw new UsageError(`snapshot name ${name} is longer than LVM's ${MAX_LV_NAME} characters: use a shorter run id`);
    }
    if (volumes.some((lv) => lv.vg === origin.vg && lv.name === name)) {
      throw new HypervisorError(`${origin.vg}/${name} already exists: an earlier run with the same id left it; run removeLeftovers first`);
    }
    if (isThin(origin)) return { disk, origin, name };
    return { disk, origin, name, sizeBytes: Math.ceil((origin.sizeBytes * this.snapshotPercent) / 100) };
  }

  /** Rounds thick sizes up to whole extents and refuses before creating anything if a VG is short. */
  private async checkFreeSpace(plan: PlannedSnapshot[]): Promise<void> {
    const thick = plan.filter((p) => p.sizeBytes !== undefined);
    if (thick.length === 0) return;
    const groups = parseVgsReport((await runChecked(this.runner, 'vgs', VGS_ARGS, LVM_ENV)).stdout);
    const neededByVg = new Map<string, number>();
    for (const p of thick) {
      const vg = groups.find((g) => g.name === p.origin.vg);
      if (!vg) throw new HypervisorError(`vgs does not report volume group ${p.origin.vg} of ${p.disk.path}`);
      p.sizeBytes = Math.max(1, Math.ceil(p.sizeBytes! / vg.extentBytes)) * vg.extentBytes;
      neededByVg.set(vg.name, (neededByVg.get(vg.name) ?? 0) + p.sizeBytes);
    }
    for (const [vgName, needed] of neededByVg) {
      const vg = groups.find((g) => g.name === vgName)!;
      if (needed > vg.freeBytes) {
        const what = thick.filter((p) => p.origin.vg === vgName).map((p) => `${vgName}/${p.origin.name}`).join(', ');
        throw new InsufficientSnapshotSpaceError(vgName, needed, vg.freeBytes, what);
      }
    }
  }

  private lvcreateArgs(p: PlannedSnapshot): string[] {
    const origin = `${p.origin.vg}/${p.origin.name}`;
    // -pr: ferry only reads a snapshot; read-only keeps a stray writer from changing it.
    if (p.sizeBytes === undefined) return ['-s', '-kn', '-pr', '-n', p.name, origin];
    return ['-s', '-pr', '-n', p.name, '-L', `${p.sizeBytes}b`, origin];
  }
}
