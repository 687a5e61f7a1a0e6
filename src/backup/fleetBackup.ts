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
import { backupGuest, DiskInput, GuestBackupResult } from './guestBackup';
import { type BootOrder, driverGuestSpec } from './guestSpec';
import { forEachLimit } from '../concurrency/forEachLimit';
import { InputError } from '../errors';

/** A guest to back up, with what it takes: its driver, hooks and a snapshot provider per disk. */
export interface FleetGuest {
  driver: HypervisorDriver;
  guest: GuestInfo;
  hooks?: GuestHooks;
  providerFor(disk: GuestDisk): Promise<SnapshotProvider>;
  /** Boot group and priority (ferry.conf), recorded in the restore point's spec for site restore. */
  boot?: BootOrder;
}

/** Undo work in progress when the process is stopped; given the reason (the signal's name). */
export type CleanupHook = (reason: string) => Promise<void>;

/** Where the caller (the CLI, which owns signals) collects cleanup hooks; `add` returns their removal. */
export interface CleanupRegistry {
  add(hook: CleanupHook): () => void;
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
  /** Gets a hook that resumes every guest held paused or frozen, for when the process is stopped. */
  cleanup?: CleanupRegistry;
  /** A rehearsal knob: hold each quiesced guest this long, to prove the watchdog (tests, drills). Never set in production. */
  holdQuiesceMs?: number;
  /** Passed to each guest's backup: GuestBackupRequest.confirmLock. */
  confirmLock?: () => Promise<void>;
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
  /** Wall time of this guest's backup (snapshot, read, commit), in ms. */
  durationMs: number;
}

/**
 * What a stop signal must undo: the guests this run holds, and the holds
 * still being taken (a signal between the pause command and its handle is
 * answered by the watchdog the driver armed first, asked to release now).
 */
class HeldGuests {
  readonly handles = new Set<QuiesceHandle>();
  readonly quiescing = new Set<WatchdogGuard>();

  get size(): number {
    return this.handles.size + this.quiescing.size;
  }

  async releaseAll(): Promise<void> {
    for (const guard of this.quiescing) guard.releaseNow();
    await Promise.allSettled([...this.handles].map((h) => h.release()));
  }
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
  const held = new HeldGuests();
  // Ctrl-C or a cron timeout during a quiesce must not leave a guest paused.
  const removeCleanup = opts.cleanup?.add(async (reason) => {
    opts.log(`${reason}: releasing ${held.size} held guest(s)`);
    await held.releaseAll();
  });
  const outcomes: GuestOutcome[] = [];
  try {
    await forEachLimit(guests, opts.concurrency, async (g) => {
      const damagedId = newestMayBeDamaged(g.guest.name);
      if (damagedId) opts.log(`${g.guest.name}: restore point ${damagedId.slice(0, 8)} is damaged and may be its newest: reading its disks in full`);
      const started = Date.now();
      const outcome = await backupOne(repo, pool, g, damagedId ? undefined : latest.get(g.guest.name), held, opts).catch((err: unknown): GuestOutcome => ({
        guest: g.guest.name, driver: g.driver.kind, ok: false, error: (err as Error).message,
        pauseMs: 0, logicalBytes: 0, readBytes: 0, newBytes: 0, fullReads: [], snapshotKinds: [], durationMs: 0,
      }));
      outcome.durationMs = Date.now() - started;
      outcomes.push(outcome);
      opts.log(outcome.ok
        ? `${outcome.guest}: restore point ${outcome.id?.slice(0, 8)}, paused ${outcome.pauseMs} ms, read ${outcome.readBytes} of ${outcome.logicalBytes} bytes, ${outcome.newBytes} new`
        : `${outcome.guest}: FAILED: ${outcome.error}`);
    });
  } finally {
    removeCleanup?.();
  }
  return outcomes.sort((a, b) => a.guest.localeCompare(b.guest));
}

/** The point-in-time copies of one guest's disks, each with the provider that made it. */
type MadeSnapshot = { provider: SnapshotProvider; snapshot: Snapshot };

async function backupOne(
  repo: Repository,
  pool: PipelinePool,
  g: FleetGuest,
  previous: StoredRestorePoint | undefined,
  held: HeldGuests,
  opts: FleetBackupOptions,
): Promise<GuestOutcome> {
  const disks = g.guest.disks.filter((d) => !d.cdrom);
  if (disks.length === 0) throw new InputError(`guest ${g.guest.name} has no disks to back up`);
  const providers = await Promise.all(disks.map((d) => g.providerFor(d)));
  const previousDisk = (d: GuestDisk): DiskRecord | undefined => previous?.disks.find((p) => p.name === fleetDiskName(d));
  const groups = new Map<SnapshotProvider, GuestDisk[]>();
  disks.forEach((d, i) => groups.set(providers[i], [...(groups.get(providers[i]) ?? []), d]));

  const snapshots: MadeSnapshot[] = [];
  try {
    const pauseMs = await snapshotGuest(g, groups, previousDisk, held, opts, snapshots);
    const result = await backupSnapshots(repo, pool, g, snapshots, previousDisk, opts);
    await commitTracking(g, groups, snapshots, opts);
    const s = result.restorePoint.stats;
    return {
      guest: g.guest.name, driver: g.driver.kind, ok: true, id: result.id, time: result.restorePoint.time, pauseMs,
      logicalBytes: s.logicalBytes, readBytes: s.readBytes, newBytes: s.newBytes,
      fullReads: result.restorePoint.disks.filter((d) => d.fullReadReason).map((d) => `${d.name}: ${d.fullReadReason}`),
      snapshotKinds: [...new Set(snapshots.map((s) => s.provider.kind))],
      durationMs: 0, // set by the caller, which times the whole guest
    };
  } finally {
    for (const { provider, snapshot } of snapshots) {
      await provider.remove(snapshot).catch((err: unknown) => opts.log(`${g.guest.name}: could not remove snapshot ${snapshot.ownedName}: ${(err as Error).message}`));
    }
  }
}

/**
 * Phase 1: the point-in-time copies, pushed to `snapshots` as they are made
 * (so that the caller removes them whatever fails). Providers that need the
 * guest held still run while it is quiesced; the others, and the changed-block
 * comparisons that can wait, after it is released. Returns the pause in ms.
 */
async function snapshotGuest(
  g: FleetGuest,
  groups: Map<SnapshotProvider, GuestDisk[]>,
  previousDisk: (d: GuestDisk) => DiskRecord | undefined,
  held: HeldGuests,
  opts: FleetBackupOptions,
  snapshots: MadeSnapshot[],
): Promise<number> {
  const deferredChanges: (() => Promise<void>)[] = [];
  /** The copies of the providers that need the guest held ('held'), or of those that make a point in time by themselves. */
  const createAll = async (which: 'held' | 'by-itself') => {
    for (const [provider, group] of groups) {
      if (Boolean(provider.pointInTimeByItself) !== (which === 'by-itself')) continue;
      const since = group.map((d) => previousDisk(d)?.tracking);
      // Providers that can compare later (btrfs send) do so after the guest is released: shorter pauses.
      const made = await provider.create(group, opts.runId, provider.findChanges ? undefined : since);
      if (provider.findChanges) deferredChanges.push(() => provider.findChanges!(made, since));
      for (const s of made) snapshots.push({ provider, snapshot: s });
    }
  };

  let pauseMs = 0;
  const needsPause = g.guest.state === 'running' && [...groups.keys()].some((p) => !p.pointInTimeByItself);
  if (needsPause) {
    // Armed by the driver right before it pauses: a SIGKILL at any moment after the pause finds a watchdog.
    const watchdog = new WatchdogGuard(opts.watchdogTimeoutMs);
    let handle: QuiesceHandle;
    held.quiescing.add(watchdog);
    try {
      handle = await g.driver.quiesce(g.guest, g.hooks, watchdog);
    } catch (err) {
      watchdog.releaseNow(); // a pause that timed out may still take effect
      throw err;
    } finally {
      held.quiescing.delete(watchdog);
    }
    held.handles.add(handle);
    if (!handle.quiesced) watchdog.standDown();
    const t0 = process.hrtime.bigint();
    try {
      const hold = opts.holdQuiesceMs ?? 0;
      if (hold > 0 && handle.quiesced) await new Promise((r) => setTimeout(r, hold));
      await createAll('held');
    } finally {
      await handle.release();
      pauseMs = handle.quiesced ? Number((process.hrtime.bigint() - t0) / 1_000_000n) : 0;
      held.handles.delete(handle);
      watchdog.standDown();
    }
  } else {
    await createAll('held'); // shut off, or paused by someone else: nothing moves
  }
  await createAll('by-itself');
  for (const find of deferredChanges) await find();
  return pauseMs;
}

/** Phase 2: read the copies through the dedupe pipeline into a restore point, each disk on its previous one. */
async function backupSnapshots(
  repo: Repository,
  pool: PipelinePool,
  g: FleetGuest,
  snapshots: MadeSnapshot[],
  previousDisk: (d: GuestDisk) => DiskRecord | undefined,
  opts: FleetBackupOptions,
): Promise<GuestBackupResult> {
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
  const spec = driverGuestSpec(
    g.driver.kind,
    g.guest,
    snapshots.map(({ provider, snapshot }) => ({ name: fleetDiskName(snapshot.disk), disk: snapshot.disk, providerKind: provider.kind })),
    g.boot,
  );
  return backupGuest(repo, pool, { guest: g.guest.name, disks: inputs, config, tags: opts.tags, spec, confirmLock: opts.confirmLock });
}

/** Phase 3: each provider keeps its changed-block tracking baseline for the next run. */
async function commitTracking(g: FleetGuest, groups: Map<SnapshotProvider, GuestDisk[]>, snapshots: MadeSnapshot[], opts: FleetBackupOptions): Promise<void> {
  for (const provider of groups.keys()) {
    const mine = snapshots.filter((s) => s.provider === provider).map((s) => s.snapshot);
    // The restore point is safe; a failed commit only costs the next run a full read.
    await provider.commit?.(mine).catch((err: unknown) => opts.log(`${g.guest.name}: ${provider.kind}: could not keep the tracking baseline: ${(err as Error).message}`));
  }
}
