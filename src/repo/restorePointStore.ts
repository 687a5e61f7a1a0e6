// The restore points of a repository (ObjectType 'restorepoints', stored under
// `snapshots/`: see storage/backend.ts, objectFolder): sealed,
// padded JSON objects named by the hash of their bytes. Save, load, list,
// resolve a reference (`latest`, id, prefix), remove.
import { Backend } from '../storage/backend';
import { CorruptionError, UsageError } from '../errors';
import { RepositoryKeys } from '../crypto/keys';
import { contentName } from '../crypto/chunkId';
import { sealObject, openObject } from '../crypto/objectCodec';
import { RestorePoint, StoredRestorePoint } from './restorePoint';
import { readDecodedObject } from './storedObject';

/** A restore point file that cannot be read (torn, damaged, or not sealed with this repository's key). */
export interface DamagedRestorePoint {
  id: string;
  problem: string;
}

export interface RestorePointListing {
  points: StoredRestorePoint[];
  damaged: DamagedRestorePoint[];
}

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

  /** Every readable restore point, oldest first; damaged ones go to `onDamaged`. */
  async listRestorePoints(onDamaged?: (name: string, err: CorruptionError) => void): Promise<StoredRestorePoint[]> {
    const out: StoredRestorePoint[] = [];
    for await (const info of this.backend.list('restorepoints')) {
      try {
        out.push(await this.loadRestorePointByName(info.name));
      } catch (err) {
        if (err instanceof CorruptionError && onDamaged) onDamaged(info.name, err);
        else throw err;
      }
    }
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
      return newest;
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
