// The restore points of a repository (ObjectType 'restorepoints', stored under
// `snapshots/`: see storage/backend.ts, objectFolder): sealed,
// padded JSON objects named by the hash of their bytes. Save, load, list,
// resolve a reference (`latest`, id, prefix), remove.
import { Backend, ObjectInfo } from '../storage/backend';
import { forEachLimit } from '../concurrency/forEachLimit';
import { CorruptionError, UsageError } from '../errors';
import { RepositoryKeys } from '../crypto/keys';
import { contentName } from '../crypto/chunkId';
import { sealObject, openObject } from '../crypto/objectCodec';
import { RestorePoint, RestorePointSummary, StoredRestorePoint, summarizeRestorePoint } from './restorePoint';
import { readDecodedObject } from './storedObject';

/** A restore point file that cannot be read (torn, damaged, or not sealed with this repository's key). */
export interface DamagedRestorePoint {
  id: string;
  problem: string;
}

export interface RestorePointListing {
  points: RestorePointSummary[];
  damaged: DamagedRestorePoint[];
}

/** Restore points read at once by a listing: at most this many, */
const LIST_READS_AT_ONCE = 8;
/** and no more than this many stored bytes of the largest (1 TiB disk: ~4 MiB, ~5.5 MiB once parsed). */
const LIST_BYTES_AT_ONCE = 8 * 1024 * 1024;

export class RestorePointStore {
  constructor(
    private readonly backend: Backend,
    private readonly keys: RepositoryKeys,
  ) {}

  async saveRestorePoint(rp: RestorePoint): Promise<string> {
    // Padded to a size class: the exact size would tell how many regions of the guest hold data.
    const bytes = sealObject(this.keys.dataKey, 'restorepoint', Buffer.from(JSON.stringify(rp)), { pad: true });
    const name = contentName(bytes);
    await this.backend.write('restorepoints', name, bytes);
    return name;
  }

  async loadRestorePointByName(name: string): Promise<StoredRestorePoint> {
    const plain = await readDecodedObject(this.backend, 'restorepoints', name, (bytes) =>
      contentName(bytes) === name ? openObject(this.keys.dataKeys, 'restorepoint', bytes) : undefined,
    );
    if (!plain) {
      throw new CorruptionError(`${this.backend.location}/snapshots/${name}: restore point is damaged; run 'ferry check'`, `snapshots/${name}`);
    }
    return { ...(JSON.parse(plain.toString('utf8')) as RestorePoint), id: name };
  }

  /**
   * Every readable restore point, oldest first, as summaries: read a few at a
   * time and kept without their region maps, so only those few points' maps
   * are ever held at once. Damaged ones go to `onDamaged`.
   */
  async listRestorePoints(onDamaged?: (name: string, err: CorruptionError) => void): Promise<RestorePointSummary[]> {
    const infos: ObjectInfo[] = [];
    for await (const info of this.backend.list('restorepoints')) infos.push(info);
    // A few read at once hide a remote store's latency; few enough that the points held whole stay small.
    const largest = infos.reduce((n, i) => Math.max(n, i.size), 1);
    const atOnce = Math.max(1, Math.min(LIST_READS_AT_ONCE, Math.floor(LIST_BYTES_AT_ONCE / largest)));
    const read: (RestorePointSummary | CorruptionError)[] = new Array(infos.length);
    await forEachLimit(infos.keys(), atOnce, async (i) => {
      try {
        read[i] = summarizeRestorePoint(await this.loadRestorePointByName(infos[i].name));
      } catch (err) {
        if (!(err instanceof CorruptionError && onDamaged)) throw err;
        read[i] = err;
      }
    });
    const out: RestorePointSummary[] = [];
    // In the order the backend listed them, whichever read finished first.
    read.forEach((r, i) => (r instanceof CorruptionError ? onDamaged!(infos[i].name, r) : out.push(r)));
    return out.sort((a, b) => a.time.localeCompare(b.time));
  }

  /** Every restore point: the readable ones, oldest first, and the names of those that cannot be read. */
  async listAllRestorePoints(): Promise<RestorePointListing> {
    const damaged: DamagedRestorePoint[] = [];
    const points = await this.listRestorePoints((id, err) => damaged.push({ id, problem: err.message }));
    return { points, damaged };
  }

  /**
   * Resolve `latest`, an id, or a unique id prefix; `guest` narrows `latest`.
   * A damaged restore point cannot say whose or how old it is, so `latest`
   * refuses to pass over it silently (that would restore older data as if it
   * were the newest) unless `about` (what this host recorded of it) shows it
   * is another guest's or older than the newest readable one.
   */
  async findRestorePoint(
    ref: string,
    guest?: string,
    known: { about?: (id: string) => { guest: string; time: string } | undefined; listing?: RestorePointListing } = {},
  ): Promise<StoredRestorePoint> {
    const about = known.about;
    if (ref === 'latest') {
      const { points, damaged } = known.listing ?? (await this.listAllRestorePoints());
      const all = points.filter((rp) => !guest || rp.guest === guest);
      const newest = all.length > 0 ? all[all.length - 1] : undefined;
      for (const d of damaged) {
        const known = about?.(d.id);
        if (known && ((guest && known.guest !== guest) || (newest && known.time < newest.time))) continue;
        const whose = guest ? ` of guest '${guest}'` : '';
        throw new CorruptionError(
          known
            ? `the newest restore point${whose}, ${d.id} (${known.guest}, ${known.time}), is damaged and cannot be read; restore an older one by id (see 'ferry list') or remove it with 'ferry forget ${d.id.slice(0, 8)}'`
            : `restore point ${d.id} is damaged and cannot be read, so it may be the newest${whose}; restore one by id (see 'ferry list') or remove it with 'ferry forget ${d.id.slice(0, 8)}'`,
          `snapshots/${d.id}`,
        );
      }
      if (!newest) {
        throw new UsageError(`${this.backend.location}: no restore point${guest ? ` for guest '${guest}'` : ''}; see 'ferry list'`);
      }
      return this.loadRestorePointByName(newest.id);
    }
    const rp = await this.loadRestorePointByName(await this.restorePointName(ref));
    if (guest && rp.guest !== guest) {
      throw new UsageError(`restore point ${rp.id.slice(0, 8)} belongs to guest '${rp.guest}', not '${guest}'`);
    }
    return rp;
  }

  /** The full name of the restore point an id or unique prefix names, without reading it. */
  async restorePointName(ref: string): Promise<string> {
    const names: string[] = [];
    for await (const info of this.backend.list('restorepoints')) if (info.name.startsWith(ref)) names.push(info.name);
    if (names.length !== 1 || ref.length < 4) {
      throw new UsageError(`restore point '${ref}': ${names.length === 0 ? 'not found' : 'ambiguous or too short'} in ${this.backend.location}; see 'ferry list'`);
    }
    return names[0];
  }

  async removeRestorePoint(id: string): Promise<void> {
    await this.backend.remove('restorepoints', id);
  }
}
