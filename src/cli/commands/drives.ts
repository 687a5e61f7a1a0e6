// `ferry drives TARGET...`: what each copy target (a rotated USB drive, an S3
// copy) holds and when it was last synced, from the sync record `ferry sync`
// leaves in it (src/sync/syncRecord.ts). A command of its own rather than
// `list --repo DST`: it needs no passphrase (the record is plain), takes
// several targets at once, and a drive that is not mounted is a line of the
// answer, not a failure before the others are shown.
import { Command } from 'commander';
import { openBackendAt, StorageOptions } from '../session';
import { formatBytes, formatDuration } from '../format';
import { FerryError, RepositoryNotFoundError } from '../../errors';
import { NotFoundError } from '../../storage/backend';
import { readIdentity } from '../../sync/copyTarget';
import { readSyncRecord, SyncRecord } from '../../sync/syncRecord';
import { localFreeBytes } from '../../sync/freeSpace';

interface DriveState {
  location: string;
  /** Repository id (hex), when a repository is there. */
  repositoryId?: string;
  /** The newest sync record; absent when no recording sync reached it (an older repository). */
  lastSync?: SyncRecord;
  /** Sync records that could not be read. */
  unreadableRecords?: number;
  /** Free bytes of a local target's file system. */
  freeBytes?: number;
  /** Why nothing could be read there. */
  problem?: string;
}

export function registerDrives(program: Command): void {
  program
    .command('drives <target...>')
    .description('show, for each copy target, when it was last synced, from where, and what it holds (no passphrase needed)')
    .option('--json', 'print the states as JSON')
    .action(async (targets: string[], opts: { json?: boolean }, cmd: Command) => {
      const global = cmd.optsWithGlobals() as StorageOptions;
      const states: DriveState[] = [];
      for (const location of targets) states.push(await driveState(location, global));
      if (opts.json) console.log(JSON.stringify(states));
      else for (const s of states) console.log(describeDrive(s, Date.now()));
      const missing = states.filter((s) => s.problem);
      if (missing.length > 0) {
        throw new RepositoryNotFoundError(`${missing.length} of ${states.length} target(s) hold no readable repository (first: ${missing[0].location}); is the drive mounted?`);
      }
    });
}

async function driveState(location: string, global: StorageOptions): Promise<DriveState> {
  const backend = openBackendAt(location, { ...global, cache: false });
  try {
    const { repositoryId } = await readIdentity(backend);
    const { record, unreadable } = await readSyncRecord(backend);
    const freeBytes = location.startsWith('s3:') ? undefined : await localFreeBytes(location);
    return { location, repositoryId: repositoryId.toString('hex'), lastSync: record, unreadableRecords: unreadable || undefined, freeBytes };
  } catch (err) {
    if (err instanceof RepositoryNotFoundError || err instanceof NotFoundError) return { location, problem: err.message };
    if (err instanceof FerryError && !location.startsWith('s3:')) return { location, problem: err.message };
    throw err;
  } finally {
    await backend.close();
  }
}

function describeDrive(s: DriveState, now: number): string {
  if (s.problem) return `${s.location}: no repository here (${s.problem})`;
  const free = s.freeBytes === undefined ? '' : `; ${formatBytes(s.freeBytes)} free`;
  const id = s.repositoryId!.slice(0, 8);
  const r = s.lastSync;
  if (!r) return `${s.location}: repository ${id}, no sync record (never synced by a ferry that records syncs)${free}`;
  const ago = formatDuration(Math.max(0, now - Date.parse(r.time)));
  return (
    `${s.location}: repository ${id}, last synced ${r.time} (${ago} ago) from ${r.source} on ${r.host}${r.mirror ? ' (mirror)' : ''}; ` +
    `holds ${r.restorePoints} restore point(s), ${r.packs} pack(s), ${formatBytes(r.bytes)}${free}` +
    `${s.unreadableRecords ? `; ${s.unreadableRecords} unreadable sync record(s) ignored` : ''}`
  );
}
