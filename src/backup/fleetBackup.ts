// `ferry backup --all`: every guest the hypervisor drivers know, each one
// quiesced only while its disks are snapshotted, then read from the
// snapshots through the dedupe pipeline. Guests run in parallel up to a limit;
// one guest's failure never stops the others.
import { Repository } from '../repo/repository';
import { RestorePointListing } from '../repo/restorePointStore';
import { DiskRecord, StoredRestorePoint } from '../repo/restorePoint';
import { PipelinePool } from '../workers/pipelinePool';
import { GuestDisk, GuestHooks, GuestInfo, HypervisorDriver, QuiesceHandle } from '../hypervisor/driver';
import { WatchdogGuard } from '../hypervisor/watchdog';
import { Snapshot, SnapshotProvider } from '../snapshot/provider';
import { openImageSource } from '../dedupe/imageSource';
import { backupGuest, DiskInput } from './guestBackup';
import { forEachLimit } from './forEachLimit';

/** A guest to back up, with what it takes: its driver, hooks and a snapshot provider per disk. */
export interface FleetGuest {
  driver: HypervisorDriver;
  guest: GuestInfo;
  hooks?: GuestHooks;
  providerFor(disk: GuestDisk): Promise<SnapshotProvider>;
}

export interface FleetBackupOptions {
  concurrency: number;
  tags: string[];
  runId: string;
  watchdogTimeoutMs?: number;
  log: (line: string) => void;
  /** The repository's restore points, if the caller listed them already. */
  listing?: RestorePointListing;
  /** What this host recorded of a restore point (its guest and time), e.g. of a damaged one. */
  about?: (id: string) => { guest: string; time: string } | undefined;
}

export interface GuestOutcome {
  guest: string;
  driver: string;
  ok: boolean;
  id?: string;
  /** The restore point's time (with `id`). */
  time?: string;
  error?: string;
  /** How long the guest was paused or frozen, in ms (0 when it was not). */
  pauseMs: number;
  logicalBytes: number;
  readBytes: number;
  newBytes: number;
  /** Disks read in full although tracking was asked for, with the reason. */
  fullReads: string[];
  snapshotKinds: string[];
}

/** Restore file name of a guest disk: its device name, which is stable across runs. */
export function fleetDiskName(disk: GuestDisk): string {
  return `${disk.device.replace(/[^A-Za-z0-9._-]/g, '_')}.img`;
}

export async function backupFleet(
  repo: Repository,
  pool: PipelinePool,
  guests: FleetGuest[],
  opts: FleetBackupOptions,
): Promise<GuestOutcome[]> {
  const latest = new Map<string, StoredRestorePoint>();
  const { points, damaged } = opts.listing ?? (await repo.listAllRestorePoints());
  for (const rp of points) latest.set(rp.guest, rp); // oldest first: the last one wins
  // A damaged restore point may be a guest's newest, and its changed-block tracking state is
  // lost with it: the one before would miss what changed in between. Such a guest is read in full.
  const newestMayBeDamaged = (guest: string): string | undefined =>
    damaged.find((d) => {
      const known = opts.about?.(d.id);
      return !known || (known.guest === guest && known.time > (latest.get(guest)?.time ?? ''));
    })?.id;
  const held = new Set<QuiesceHandle>();
  // Ctrl-C or a cron timeout during a quiesce must not leave a guest paused.
  const onSignal = (signal: NodeJS.Signals) => {
    opts.log(`${signal}: releasing ${held.size} held guest(s)`);
    void Promise.allSettled([...held].map((h) => h.release())).then(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const outcomes: GuestOutcome[] = [];
  try {
    await forEachLimit(guests, opts.concurrency, async (g) => {
      const damagedId = newestMayBeDamaged(g.guest.name);
      if (damagedId) opts.log(`${g.guest.name}: restore point ${damagedId.slice(0, 8)} is damaged and may be its newest: reading its disks in full`);
      const outcome = await backupOne(repo, pool, g, damagedId ? undefined : latest.get(g.guest.name), held, opts).catch((err: unknown): GuestOutcome => ({
        guest: g.guest.name, driver: g.driver.kind, ok: false, error: (err as Error).message,
        pauseMs: 0, logicalBytes: 0, readBytes: 0, newBytes: 0, fullReads: [], snapshotKinds: [],
      }));
      outcomes.push(outcome);
      opts.log(outcome.ok
        ? `${outcome.guest}: restore point ${outcome.id?.slice(0, 8)}, paused ${outcome.pauseMs} ms, read ${outcome.readBytes} of ${outcome.logicalBytes} bytes, ${outcome.newBytes} new`
        : `${outcome.guest}: FAILED: ${outcome.error}`);
    });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return outcomes.sort((a, b) => a.guest.localeCompare(b.guest));
}

async function backupOne(
  repo: Repository,
  pool: PipelinePool,
  g: FleetGuest,
  previous: StoredRestorePoint | undefined,
  held: Set<QuiesceHandle>,
  opts: FleetBackupOptions,
): Promise<GuestOutcome> {
  const disks = g.guest.disks.filter((d) => !d.cdrom);
  if (disks.length === 0) throw new Error(`guest ${g.guest.name} has no disks to back up`);
  const providers = await Promise.all(disks.map((d) => g.providerFor(d)));
  const previousDisk = (d: GuestDisk): DiskRecord | undefined => previous?.disks.find((p) => p.name === fleetDiskName(d));
  const groups = new Map<SnapshotProvider, GuestDisk[]>();
  disks.forEach((d, i) => groups.set(providers[i], [...(groups.get(providers[i]) ?? []), d]));

  const snapshots: { provider: SnapshotProvider; snapshot: Snapshot }[] = [];
  const deferredChanges: (() => Promise<void>)[] = [];
  const createAll = async (byItself: boolean) => {
    for (const [provider, group] of groups) {
      if (Boolean(provider.pointInTimeByItself) !== byItself) continue;
      const since = group.map((d) => previousDisk(d)?.tracking);
      // Providers that can compare later (btrfs send) do so after the guest is released: shorter pauses.
      const made = await provider.create(group, opts.runId, provider.findChanges ? undefined : since);
      if (provider.findChanges) deferredChanges.push(() => provider.findChanges!(made, since));
      for (const s of made) snapshots.push({ provider, snapshot: s });
    }
  };

  let pauseMs = 0;
  try {
    const needsPause = g.guest.state === 'running' && [...groups.keys()].some((p) => !p.pointInTimeByItself);
    if (needsPause) {
      // Armed by the driver right before it pauses: a SIGKILL at any moment after the pause finds a watchdog.
      const watchdog = new WatchdogGuard(opts.watchdogTimeoutMs);
      let handle: QuiesceHandle;
      try {
        handle = await g.driver.quiesce(g.guest, g.hooks, watchdog);
      } catch (err) {
        watchdog.releaseNow(); // a pause that timed out may still take effect
        throw err;
      }
      held.add(handle);
      if (!handle.quiesced) watchdog.standDown();
      const t0 = process.hrtime.bigint();
      try {
        // A rehearsal knob: hold the guest longer, to prove the watchdog (tests, drills). Never set in production.
        const hold = Number(process.env.FERRY_HOLD_QUIESCE_MS ?? 0);
        if (hold > 0 && handle.quiesced) await new Promise((r) => setTimeout(r, hold));
        await createAll(false);
      } finally {
        await handle.release();
        pauseMs = handle.quiesced ? Number((process.hrtime.bigint() - t0) / 1_000_000n) : 0;
        held.delete(handle);
        watchdog.standDown();
      }
    } else {
      await createAll(false); // shut off, or paused by someone else: nothing moves
    }
    await createAll(true);
    for (const find of deferredChanges) await find();

    const inputs: DiskInput[] = snapshots.map(({ snapshot }) => {
      const prev = previousDisk(snapshot.disk);
      return {
        source: openImageSource(snapshot.readPath),
        name: fleetDiskName(snapshot.disk),
        base: prev ? { previous: prev, changed: snapshot.changed } : undefined,
        tracking: snapshot.tracking,
        fullReadReason: snapshot.changed && !prev ? 'no previous restore point to build on' : snapshot.fullReadReason,
      };
    });
    const config = g.guest.config ? { fileName: g.guest.config.fileName, content: Buffer.from(g.guest.config.text).toString('base64') } : undefined;
    const result = await backupGuest(repo, pool, { guest: g.guest.name, disks: inputs, config, tags: opts.tags });
    for (const provider of groups.keys()) {
      const mine = snapshots.filter((s) => s.provider === provider).map((s) => s.snapshot);
      // The restore point is safe; a failed commit only costs the next run a full read.
      await provider.commit?.(mine).catch((err: unknown) => opts.log(`${g.guest.name}: ${provider.kind}: could not keep the tracking baseline: ${(err as Error).message}`));
    }
    const s = result.restorePoint.stats;
    return {
      guest: g.guest.name, driver: g.driver.kind, ok: true, id: result.id, time: result.restorePoint.time, pauseMs,
      logicalBytes: s.logicalBytes, readBytes: s.readBytes, newBytes: s.newBytes,
      fullReads: result.restorePoint.disks.filter((d) => d.fullReadReason).map((d) => `${d.name}: ${d.fullReadReason}`),
      snapshotKinds: [...new Set(snapshots.map((s) => s.provider.kind))],
    };
  } finally {
    for (const { provider, snapshot } of snapshots) {
      await provider.remove(snapshot).catch((err: unknown) => opts.log(`${g.guest.name}: could not remove snapshot ${snapshot.ownedName}: ${(err as Error).message}`));
    }
  }
}
