// `ferry sync SRC DST --mirror`: after the copy, DST drops the restore points
// SRC no longer has (forgotten there), then prunes (src/prune/, under DST's
// exclusive lock, which the caller holds). Without --mirror a sync only adds.
//
// Safety: a source that lists no restore point at all is far more often a
// wrong path or an unmounted drive with an empty copy on it than a fleet
// that was forgotten on purpose; mirroring it would empty DST. So an empty
// source stops the sync before anything is copied or removed, unless the
// caller says `emptySource: 'allow'` (--allow-empty).
import { Backend } from '../storage/backend';
import { Repository } from '../repo/repository';
import { UsageError } from '../errors';
import { pruneRepository, PruneReport } from '../prune/pruneRun';

export interface MirrorOptions {
  /** Opens DST to prune it (prune reads region maps). */
  secret: Buffer;
  /** What an empty source means: refuse (the default at the CLI) or mirror it, emptying DST. */
  emptySource: 'refuse' | 'allow';
  /** Prune's repack threshold on DST. */
  repackBelow: number;
  /** Confirms DST's exclusive lock before each kind of deletion (see PruneOptions.confirmLock). */
  confirmLock?: () => Promise<void>;
}

export interface MirrorSummary {
  /** DST's restore points that SRC no longer has: removed. */
  removedRestorePoints: string[];
  /** The prune of DST that followed. */
  prune: PruneReport;
}

/** Refuse an empty source before anything is copied (see the safety note above). */
export function checkMirrorSource(source: Backend, target: Backend, sourceRestorePoints: number, opts: Pick<MirrorOptions, 'emptySource'>): void {
  if (sourceRestorePoints === 0 && opts.emptySource === 'refuse') {
    throw new UsageError(
      `${source.location}: lists no restore point, so --mirror would empty ${target.location}; nothing was copied or removed — check the source location, or add --allow-empty if the source really is empty`,
    );
  }
}

/** Remove from DST the restore points SRC (listed during this sync) does not have, then prune DST. */
export async function mirrorTarget(target: Backend, sourceRestorePoints: ReadonlySet<string>, opts: MirrorOptions): Promise<MirrorSummary> {
  const repo = await Repository.open(target, opts.secret);
  const removedRestorePoints: string[] = [];
  await opts.confirmLock?.();
  for await (const info of target.list('restorepoints')) {
    if (sourceRestorePoints.has(info.name)) continue;
    await repo.removeRestorePoint(info.name);
    removedRestorePoints.push(info.name);
  }
  const prune = await pruneRepository(repo, { repackBelow: opts.repackBelow, mode: 'prune', confirmLock: opts.confirmLock });
  return { removedRestorePoints: removedRestorePoints.sort(), prune };
}
