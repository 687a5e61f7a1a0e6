// The sync record (docs/FORMAT.md, "Sync records"): `ferry sync` writes into
// the target, after everything else, when it was synced, from where, and what
// it then holds, so a rotated USB drive can say what is on it (`ferry drives`).
//
// Plain JSON, not sealed: `ferry drives` and a full sync need no passphrase,
// and everything in it can already be seen on the drive without a key (the
// repository id is in the config header, restore points and packs are
// counted and sized by listing them, the time by mtimes), except the source's
// location and host name. It is informational only: nothing ferry decides
// reads it, so a forged record misleads a reader but damages nothing.
import { Backend, ObjectType } from '../storage/backend';
import { contentName } from '../crypto/chunkId';

export const SYNC_RECORD_TYPE: ObjectType = 'syncs';
const FORMAT = 'ferry-sync-record';
const VERSION = 1;

export interface SyncRecord {
  /** ISO 8601 UTC time the sync finished. */
  time: string;
  /** The source's location as the syncing host named it. */
  source: string;
  /** Host name of the host that ran the sync. */
  host: string;
  /** Repository id (hex); a copy target shares its source's, which is what makes it a copy. */
  repositoryId: string;
  /** Whether the sync mirrored the source (--mirror). */
  mirror: boolean;
  /** What the target held once the sync finished. */
  restorePoints: number;
  packs: number;
  /** Bytes of packs, index files and restore points. */
  bytes: number;
}

/** Write a new record, then remove the older ones (a reader takes the newest, so a kill in between is harmless). */
export async function writeSyncRecord(target: Backend, record: SyncRecord): Promise<string> {
  const older: string[] = [];
  for await (const info of target.list(SYNC_RECORD_TYPE)) older.push(info.name);
  const bytes = Buffer.from(`${JSON.stringify({ format: FORMAT, version: VERSION, ...record })}\n`, 'utf8');
  const name = contentName(bytes);
  await target.write(SYNC_RECORD_TYPE, name, bytes);
  for (const o of older) if (o !== name) await target.remove(SYNC_RECORD_TYPE, o);
  return name;
}

/** The newest readable record, or undefined (a repository no recording sync has reached). Unreadable records are skipped and counted. */
export async function readSyncRecord(target: Backend): Promise<{ record?: SyncRecord; unreadable: number }> {
  let newest: SyncRecord | undefined;
  let unreadable = 0;
  for await (const info of target.list(SYNC_RECORD_TYPE)) {
    const record = parseSyncRecord(await target.read(SYNC_RECORD_TYPE, info.name));
    if (!record) {
      unreadable++;
      continue;
    }
    if (!newest || record.time > newest.time) newest = record;
  }
  return { record: newest, unreadable };
}

function parseSyncRecord(bytes: Buffer): SyncRecord | undefined {
  let v: unknown;
  try {
    v = JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as Record<string, unknown>;
  if (o.format !== FORMAT || o.version !== VERSION) return undefined;
  const str = (k: string) => typeof o[k] === 'string';
  const num = (k: string) => typeof o[k] === 'number' && Number.isSafeInteger(o[k]) && (o[k] as number) >= 0;
  if (!str('time') || !str('source') || !str('host') || !str('repositoryId') || typeof o.mirror !== 'boolean') return undefined;
  if (!num('restorePoints') || !num('packs') || !num('bytes') || Number.isNaN(Date.parse(o.time as string))) return undefined;
  return {
    time: o.time as string,
    source: o.source as string,
    host: o.host as string,
    repositoryId: o.repositoryId as string,
    mirror: o.mirror as boolean,
    restorePoints: o.restorePoints as number,
    packs: o.packs as number,
    bytes: o.bytes as number,
  };
}

/** What `target` holds now, by listing it. */
export async function targetContents(target: Backend): Promise<Pick<SyncRecord, 'restorePoints' | 'packs' | 'bytes'>> {
  const count = { restorePoints: 0, packs: 0, bytes: 0 };
  for (const type of ['data', 'index', 'restorepoints'] as const) {
    for await (const info of target.list(type)) {
      count.bytes += info.size;
      if (type === 'data') count.packs++;
      if (type === 'restorepoints') count.restorePoints++;
    }
  }
  return count;
}
