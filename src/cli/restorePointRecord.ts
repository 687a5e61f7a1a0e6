// The CLI side of this host's record of restore points (src/repo/seenRestorePoints.ts):
// where it lives, and the warnings a command prints from it.
import * as os from 'node:os';
import * as path from 'node:path';
import { Repository } from '../repo/repository';
import { RestorePointListing } from '../repo/restorePointStore';
import { SeenRestorePoints } from '../repo/seenRestorePoints';

export interface StateOptions {
  /** `--state-dir DIR` (env FERRY_STATE_DIR). */
  stateDir?: string;
}

/** `--state-dir`, FERRY_STATE_DIR, `$XDG_STATE_HOME/ferry`, or ~/.local/state/ferry. */
export function stateDir(opts: StateOptions): string {
  if (opts.stateDir) return path.resolve(opts.stateDir);
  if (process.env.FERRY_STATE_DIR) return path.resolve(process.env.FERRY_STATE_DIR);
  return path.join(process.env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state'), 'ferry');
}

export function seenRestorePoints(repo: Repository, opts: StateOptions): SeenRestorePoints {
  const seen = SeenRestorePoints.load(stateDir(opts), repo.repositoryId, repo.location);
  warnRecordProblems(seen);
  return seen;
}

/** The record only adds warnings; trouble with it is a warning too, never a failed backup. */
export function warnRecordProblems(seen: SeenRestorePoints): void {
  for (const p of seen.problems.splice(0)) process.stderr.write(`ferry: warning: ${p}\n`);
}

/**
 * After a complete listing: one warning line per damaged restore point and per
 * point this host saw here before that is gone without a local `forget`; then
 * remember what is here now.
 */
export function reviewListing(repo: Repository, opts: StateOptions, listing: RestorePointListing, say = { warnDamaged: true }): SeenRestorePoints {
  const seen = seenRestorePoints(repo, opts);
  const warn = (line: string) => process.stderr.write(`ferry: warning: ${line}\n`);
  for (const d of say.warnDamaged ? listing.damaged : []) {
    const known = seen.about(d.id);
    warn(`restore point ${d.id}${known ? ` (${known.guest}, ${known.time})` : ''} is damaged and cannot be read; 'ferry check' reports it, 'ferry forget ${d.id.slice(0, 8)}' removes it`);
  }
  const present = [...listing.points.map((rp) => rp.id), ...listing.damaged.map((d) => d.id)];
  for (const v of seen.vanished(present)) {
    warn(
      `restore point ${v.id} of guest '${v.guest}' (${v.time}) is gone from ${repo.location} although this host did not forget it: ` +
        `files were deleted, an older copy of the repository is in place, or another host forgot it; if that is expected, 'ferry forget ${v.id.slice(0, 8)}' stops this warning`,
    );
  }
  seen.saw(listing.points);
  warnRecordProblems(seen);
  return seen;
}
