// `ferry backup --all`: every guest the hypervisor drivers know, each one
// quiesced only while its disks are snapshotted, then read from the
// snapshots through the dedupe pipeline. Guests run in parallel up to a limit;
// one guest's failure never stops the others.
import { Repository } from '../repo/repository';
import { RestorePointListing } from '../repo/restorePointStore';
import { DiskRecord, RestorePointSummary } from '../repo/restorePoint';
import { PipelinePool } from '../workers/pipelinePool';
import { GuestDisk, GuestHooks, GuestInfo, HypervisorDriver, QuiesceHandle, QuiesceMethod, ShutdownHandle } from '../hypervisor/driver';
import { NO_WATCHDOG_TIME_LIMIT, WatchdogGuard } from '../hypervisor/watchdog';
import { InPlaceHold, Snapshot, SnapshotProvider } from '../snapshot/provider';
import { openImageSource } from '../dedupe/imageSource';
import { backupGuest, DiskInput, GuestBackupProgress, GuestBackupResult, GuestHoldStats } from './guestBackup';
import { type BootOrder, driverGuestSpec } from './guestSpec';
import { forEachLimit } from '../concurrency/forEachLimit';
import { HypervisorError, InputError, UsageError } from '../errors';

/** A guest to back up, with what it takes: its driver, hooks and a snapshot provider per disk. */
export interface FleetGuest {
  driver: HypervisorDriver;
  guest: GuestInfo;
  hooks?: GuestHooks;
  providerFor(disk: GuestDisk): Promise<SnapshotProvider>;
  /** Boot group and priority (ferry.conf), recorded in the restore point's spec for site restore. */
  boot?: BootOrder;
  /** ferry.conf `quiesce =`: how the driver holds the guest; undefined: the driver's default. */
  quiesce?: QuiesceMethod;
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
  /** Each guest's bytes as its disks are read, and its end, for a progress display. */
  onProgress?: (p: FleetProgress) => void;
}

/** A guest's progress in a fleet backup: reading its disks, or finished (ok or failed). */
export type FleetProgress =
  | ({ guest: string; kind: 'reading' } & GuestBackupProgress)
  | { guest: string; kind: 'finished'; ok: boolean };

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
  /** How long the guest was shut down for its backup (snapshot = "shutdown"), in ms; 0 otherwise. */
  downMs: number;
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
  const latest = new Map<string, RestorePointSummary>();
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
        pauseMs: 0, downMs: 0, logicalBytes: 0, readBytes: 0, newBytes: 0, fullReads: [], snapshotKinds: [], durationMs: 0,
      }));
      outcome.durationMs = Date.now() - started;
      outcomes.push(outcome);
      // Each guest had its own pack and batch buffers: freed now, not piled up behind the next guests'.
      pool.collectBetweenJobs();
      opts.onProgress?.({ guest: outcome.guest, kind: 'finished', ok: outcome.ok });
      opts.log(outcome.ok
        ? `${outcome.guest}: restore point ${outcome.id?.slice(0, 8)}, paused ${outcome.pauseMs} ms${outcome.downMs ? `, shut down ${outcome.downMs} ms` : ''}, read ${outcome.readBytes} of ${outcome.logicalBytes} bytes, ${outcome.newBytes} new`
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
  latest: RestorePointSummary | undefined,
  held: HeldGuests,
  opts: FleetBackupOptions,
): Promise<GuestOutcome> {
  const disks = g.guest.disks.filter((d) => !d.cdrom);
  if (disks.length === 0) throw new InputError(`guest ${g.guest.name} has no disks to back up`);
  // Its region maps are read now, for this guest only: a listing keeps none (RestorePointSummary).
  const previous = latest && (await repo.loadRestorePointByName(latest.id));
  const providers = await Promise.all(disks.map((d) => g.providerFor(d)));
  const previousDisk = (d: GuestDisk): DiskRecord | undefined => previous?.disks.find((p) => p.name === fleetDiskName(d));
  const groups = new Map<SnapshotProvider, GuestDisk[]>();
  disks.forEach((d, i) => groups.set(providers[i], [...(groups.get(providers[i]) ?? []), d]));

  const snapshots: MadeSnapshot[] = [];
  try {
    const inPlace = inPlaceHold(g, groups);
    let result: GuestBackupResult;
    if (inPlace && g.guest.state !== 'shutoff') {
      const [provider] = [...groups.keys()];
      const readInPlace = async (afterRead: () => Promise<GuestHoldStats>) => {
        for (const s of await provider!.create(disks, opts.runId)) snapshots.push({ provider: provider!, snapshot: s });
        return backupSnapshots(repo, pool, g, snapshots, previousDisk, opts, afterRead);
      };
      result = inPlace === 'paused' ? await whilePaused(g, held, opts, readInPlace) : await whileShutDown(g, held, opts, readInPlace);
    } else {
      const pauseMs = await snapshotGuest(g, groups, previousDisk, held, opts, snapshots);
      result = await backupSnapshots(repo, pool, g, snapshots, previousDisk, opts, async () => ({ pauseMs }));
    }
    await commitTracking(g, groups, snapshots, opts);
    const s = result.restorePoint.stats;
    return {
      guest: g.guest.name, driver: g.driver.kind, ok: true, id: result.id, time: result.restorePoint.time,
      pauseMs: s.pauseMs ?? 0, downMs: s.downMs ?? 0,
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

/** `pause` or `shutdown` when the guest's disks are read in place (every disk then is: the setting is per guest). */
function inPlaceHold(g: FleetGuest, groups: Map<SnapshotProvider, GuestDisk[]>): InPlaceHold | undefined {
  const holds = [...groups.keys()].map((p) => p.readsInPlace);
  const hold = holds.find((h) => h !== undefined);
  if (hold && holds.some((h) => h !== hold)) {
    throw new UsageError(`guest ${g.guest.name}: some disks would be read in place with the guest held and others copied; give every disk of it the same snapshot setting`);
  }
  return hold;
}

/** Arms a watchdog, asks the driver to hold the guest; the handle is tracked for stop signals until released. */
async function quiesceGuarded(
  g: FleetGuest,
  held: HeldGuests,
  watchdog: WatchdogGuard,
  how: QuiesceMethod | undefined,
): Promise<QuiesceHandle> {
  let handle: QuiesceHandle;
  held.quiescing.add(watchdog);
  try {
    // Armed by the driver right before it pauses: a SIGKILL at any moment after the pause finds a watchdog.
    handle = await g.driver.quiesce(g.guest, g.hooks, watchdog, how ? { how } : {});
  } catch (err) {
    watchdog.releaseNow(); // a pause that timed out may still take effect
    throw err;
  } finally {
    held.quiescing.delete(watchdog);
  }
  held.handles.add(handle);
  if (!handle.quiesced) watchdog.standDown();
  return handle;
}

/**
 * snapshot = "pause": the guest stays paused from before its disks are
 * opened until the last byte is read (the watchdog has no time limit: it
 * resumes the guest only if ferry dies or is stopped), then is resumed
 * before the restore point is written.
 */
async function whilePaused(
  g: FleetGuest,
  held: HeldGuests,
  opts: FleetBackupOptions,
  read: (afterRead: () => Promise<GuestHoldStats>) => Promise<GuestBackupResult>,
): Promise<GuestBackupResult> {
  if (g.quiesce && g.quiesce !== 'pause') {
    throw new UsageError(
      `guest ${g.guest.name}: snapshot = "pause" reads its disks while it is paused, but quiesce = "${g.quiesce}" would not pause it; ` +
        'set quiesce = "pause" for this guest or remove the quiesce key',
    );
  }
  const watchdog = new WatchdogGuard(NO_WATCHDOG_TIME_LIMIT);
  const handle = await quiesceGuarded(g, held, watchdog, 'pause');
  const t0 = process.hrtime.bigint();
  let pauseMs: number | undefined;
  const resume = async (): Promise<GuestHoldStats> => {
    await handle.release();
    pauseMs ??= handle.quiesced ? Number((process.hrtime.bigint() - t0) / 1_000_000n) : 0;
    held.handles.delete(handle);
    watchdog.standDown();
    return { pauseMs };
  };
  try {
    await rehearsalHold(opts, handle.quiesced);
    return await read(resume);
  } finally {
    await resume().catch((err: unknown) => {
      // The watchdog has no time limit in this mode: a resume that failed must not wait for ferry's exit.
      watchdog.releaseNow();
      throw err;
    });
  }
}

/**
 * snapshot = "shutdown": a clean shutdown through the driver, the disks read
 * while the guest is off, then the guest started again with its config before
 * the restore point is written. It is started again whatever failed in
 * between; a start that fails twice fails the guest's backup with a message
 * that says so, and leaves the watchdog retrying it.
 */
async function whileShutDown(
  g: FleetGuest,
  held: HeldGuests,
  opts: FleetBackupOptions,
  read: (afterRead: () => Promise<GuestHoldStats>) => Promise<GuestBackupResult>,
): Promise<GuestBackupResult> {
  const name = g.guest.name;
  if (!g.driver.shutDown) throw new UsageError(`guest ${name}: snapshot = "shutdown" ${SHUTDOWN_UNSUPPORTED[g.driver.kind] ?? `is not supported by the ${g.driver.kind} driver`}; use snapshot = "pause"`);
  if (g.guest.state !== 'running') throw new HypervisorError(`guest ${name} is ${g.guest.state}: snapshot = "shutdown" needs it running; resume it or use snapshot = "pause"`);
  const watchdog = new WatchdogGuard(NO_WATCHDOG_TIME_LIMIT);
  held.quiescing.add(watchdog);
  let handle: ShutdownHandle;
  try {
    handle = await g.driver.shutDown(g.guest, watchdog);
  } catch (err) {
    watchdog.releaseNow(); // a shutdown that failed part way may still take effect: the watchdog starts it (or finds it running)
    throw err;
  } finally {
    held.quiescing.delete(watchdog);
  }
  const t0 = process.hrtime.bigint();
  // A stop signal starts the guest again too.
  const asHeld: QuiesceHandle = { guest: name, quiesced: true, releaseArgv: handle.startArgv, release: () => handle.start() };
  held.handles.add(asHeld);
  let downMs: number | undefined;
  let startError: unknown;
  const start = async (): Promise<GuestHoldStats> => {
    await handle.start().catch((err: unknown) => {
      startError = err;
      throw err;
    });
    downMs ??= Number((process.hrtime.bigint() - t0) / 1_000_000n);
    held.handles.delete(asHeld);
    watchdog.standDown();
    return { downMs };
  };
  let readError: unknown;
  try {
    await rehearsalHold(opts, true);
    return await read(start);
  } catch (err) {
    if (err !== startError) readError = err; // a failed start after the read is reported below, once
    throw err;
  } finally {
    try {
      await start();
    } catch (err) {
      watchdog.releaseNow(); // keeps trying from outside, for 2 minutes
      opts.log(`${name}: NOT STARTED AGAIN after its shutdown for the backup: ${(err as Error).message}`);
      // eslint-disable-next-line no-unsafe-finally -- a guest left off must be the error the admin reads
      throw new HypervisorError(
        `guest ${name} was shut down for its backup and could not be started again: ${(err as Error).message}; ` +
          `start it by hand: ${handle.startArgv.join(' ')}${readError ? ` (the backup failed first: ${(readError as Error).message})` : ''}`,
      );
    }
  }
}

/** Why a driver has no shutDown, for snapshot = "shutdown". */
const SHUTDOWN_UNSUPPORTED: Record<string, string> = {
  qemu: 'is not supported for QEMU guests reached by QMP: QEMU exits when its guest shuts down, and ferry has no config to start it again with (only the command line of a process it did not start)',
  static: 'is not supported for guests described by hand: ferry has no way to shut them down or start them',
};

/** The rehearsal knob: keep a held guest held this long (tests, drills). */
async function rehearsalHold(opts: FleetBackupOptions, held: boolean): Promise<void> {
  const hold = opts.holdQuiesceMs ?? 0;
  if (hold > 0 && held) await new Promise((r) => setTimeout(r, hold));
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
    const watchdog = new WatchdogGuard(opts.watchdogTimeoutMs);
    const handle = await quiesceGuarded(g, held, watchdog, g.quiesce);
    const t0 = process.hrtime.bigint();
    try {
      await rehearsalHold(opts, handle.quiesced);
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

/** Packs of guests backed up at once are cut no smaller than this. */
const MIN_SHARED_PACK_BYTES = 2 * 1024 * 1024;

/** Phase 2: read the copies through the dedupe pipeline into a restore point, each disk on its previous one. */
async function backupSnapshots(
  repo: Repository,
  pool: PipelinePool,
  g: FleetGuest,
  snapshots: MadeSnapshot[],
  previousDisk: (d: GuestDisk) => DiskRecord | undefined,
  opts: FleetBackupOptions,
  afterRead: () => Promise<GuestHoldStats>,
): Promise<GuestBackupResult> {
  const inputs: DiskInput[] = snapshots.map(({ snapshot }) => {
    const prev = previousDisk(snapshot.disk);
    return {
      source: openImageSource(snapshot.readPath),
      name: fleetDiskName(snapshot.disk),
      base: prev ? { previous: prev, changed: snapshot.changed, wholeDisk: snapshot.wholeDisk } : undefined,
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
  // The budget holds one pack being filled: guests backed up at once split it (8 MiB packs each for two, by default).
  const packBytes = Math.max(MIN_SHARED_PACK_BYTES, Math.floor(Math.min(repo.settings.packSize, pool.sizing.packBytes) / Math.max(1, opts.concurrency)));
  return backupGuest(repo, pool, { guest: g.guest.name, disks: inputs, config, tags: opts.tags, spec, confirmLock: opts.confirmLock, afterRead, packBytes },
    opts.onProgress && ((p) => opts.onProgress!({ guest: g.guest.name, kind: 'reading', ...p })));
}

/** Phase 3: each provider keeps its changed-block tracking baseline for the next run. */
async function commitTracking(g: FleetGuest, groups: Map<SnapshotProvider, GuestDisk[]>, snapshots: MadeSnapshot[], opts: FleetBackupOptions): Promise<void> {
  for (const provider of groups.keys()) {
    const mine = snapshots.filter((s) => s.provider === provider).map((s) => s.snapshot);
    // The restore point is safe; a failed commit only costs the next run a full read.
    await provider.commit?.(mine).catch((err: unknown) => opts.log(`${g.guest.name}: ${provider.kind}: could not keep the tracking baseline: ${(err as Error).message}`));
  }
}
