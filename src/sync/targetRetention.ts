// Sync into a target under S3 Object Lock: the restore points it copies get
// the target's full retention, and so must the packs and index files they
// need that an earlier sync copied (repo/retentionCoverage.ts). Run after the
// packs and index files are copied, before the restore points.
import { Backend } from '../storage/backend';
import { Repository } from '../repo/repository';
import { CorruptionError } from '../errors';
import { DiskRecord } from '../repo/restorePoint';
import { RetentionCoverage, coverObjectsRetention, coverRetention } from '../repo/retentionCoverage';

/**
 * With the passphrase: what the restore points named `restorePointNames`
 * (read from SRC) need in DST. Without it the sync cannot read which packs
 * those are, and raises every pack and index file DST holds.
 */
export async function coverTargetRetention(
  source: Backend,
  target: Backend,
  restorePointNames: readonly string[],
  secret: Buffer | undefined,
): Promise<RetentionCoverage | undefined> {
  if (!target.objectLock || restorePointNames.length === 0) return undefined;
  if (!secret) {
    const objects: { type: 'config' | 'data' | 'index'; name: string }[] = [{ type: 'config', name: 'config' }];
    for (const type of ['data', 'index'] as const) for await (const info of target.list(type)) objects.push({ type, name: info.name });
    return coverObjectsRetention(target.objectLock, objects);
  }
  const srcRepo = await Repository.open(source, secret);
  const disks: DiskRecord[] = [];
  for (const name of restorePointNames) {
    try {
      disks.push(...(await srcRepo.loadRestorePointByName(name)).disks);
    } catch (err) {
      // A damaged restore point is not copied (the copy names it), so it needs nothing.
      if (!(err instanceof CorruptionError)) throw err;
    }
  }
  const dstRepo = await Repository.open(target, secret);
  // A damaged index file is not this step's to judge: its packs are found from their headers.
  await dstRepo.loadIndex(() => undefined);
  await dstRepo.indexOrphanPacks({ keep: 'memory-only' });
  return coverRetention(dstRepo, disks);
}
