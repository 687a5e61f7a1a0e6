// The base each stored page patch names, read from its body once per prune.
// Finding the live set walks every patch chain from each restore point's
// chunks, and planning follows every kept copy's base again: before this
// memo a 1.5 GB repository's prune read patch bodies for 10 of its 12 s, one
// at a time, most of them more than once (a chain 8 deep was read from every
// patch on it).
import { Repository } from '../repo/repository';
import { PackEntry } from '../repo/packFormat';
import { decodePatchHeader } from '../repo/pagePatchFormat';
import { forEachLimit } from '../concurrency/forEachLimit';

/** Patch bodies read at once while prefetching (small ranged reads: local disk or S3 alike). */
const READS_IN_FLIGHT = 8;

export class PatchBaseMemo {
  private readonly bases = new Map<string, Promise<Buffer | undefined>>();
  /** Read buffers free for the next body (at most one per read in flight). */
  private readonly scratches: Buffer[] = [];

  constructor(private readonly repo: Repository) {}

  /**
   * The base the stored copy `entry` in pack `packId` names; undefined when
   * its body holds no readable patch header. Rejects, with the read's or the
   * authentication's own error, when the body cannot be read.
   */
  ofCopy(packId: string, entry: PackEntry): Promise<Buffer | undefined> {
    const key = `${packId}:${entry.offset}`;
    let base = this.bases.get(key);
    if (!base) {
      base = this.read(packId, entry);
      // Asked for later (or never, when a prefetch outruns a failed walk): not an unhandled rejection meanwhile.
      base.catch(() => undefined);
      this.bases.set(key, base);
    }
    return base;
  }

  /** The base of the copy of patch `id` the in-memory index locates (the one restore reads); undefined if none is indexed or it holds no readable header. */
  ofIndexed(id: Buffer): Promise<Buffer | undefined> {
    const loc = this.repo.blobLocation(id);
    if (!loc) return Promise.resolve(undefined);
    return this.ofCopy(this.repo.packIds[loc.pack], { id, offset: loc.offset, storedLength: loc.storedLength, rawLength: loc.rawLength, typeFlags: loc.typeFlags });
  }

  /**
   * Read the bases of these patches (their indexed copies) a few at a time,
   * ahead of a walk that asks for them in the same order. Failures are left
   * in the memo for the walk to report with its context.
   */
  prefetch(ids: readonly Buffer[]): Promise<void> {
    return forEachLimit(ids, READS_IN_FLIGHT, (id) => this.ofIndexed(id).then(
      () => undefined,
      () => undefined,
    ));
  }

  private async read(packId: string, entry: PackEntry): Promise<Buffer | undefined> {
    // Bodies are read into a few buffers kept for the run and opened into the reader's own: ~20,000 bodies
    // of a 1.5 GB repository allocated ~1 GB of fresh buffers, a quarter of the run's CPU in the collector.
    const scratch = this.scratches.pop() ?? Buffer.allocUnsafe(0);
    const into = scratch.length >= entry.storedLength ? scratch : Buffer.allocUnsafe(Math.max(entry.storedLength, 64 * 1024));
    try {
      const sealed = await this.repo.backend.readRange('data', packId, entry.offset, entry.storedLength, into.subarray(0, entry.storedLength));
      const loc = { pack: this.repo.packNumber(packId), offset: entry.offset, storedLength: entry.storedLength, rawLength: entry.rawLength, typeFlags: entry.typeFlags };
      const header = decodePatchHeader(this.repo.unsealBlob(loc, entry.id, sealed, true));
      return header?.baseId;
    } finally {
      this.scratches.push(into);
    }
  }
}
