// Whether an offsite target can be synced tonight. A USB drive is often not
// plugged in: a local path that does not exist, or that lies on the root file
// system although it is below /mnt, /media or /run/media (the drive is not
// mounted, so writing there would fill the root disk), is skipped with that
// reason, not failed. s3: targets are always tried.
import * as fs from 'node:fs';
import * as path from 'node:path';

const REMOVABLE_ROOTS = ['/mnt', '/media', '/run/media'];

/** The mount points of this host, longest first (from /proc/self/mountinfo). */
function mountPoints(): string[] {
  const text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  const points = text.split('\n').filter(Boolean).map((l) => l.split(' ')[4]!.replace(/\\040/g, ' '));
  return points.sort((a, b) => b.length - a.length);
}

function isUnder(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

/** Why the target is skipped tonight, or undefined to sync it. */
export function offsiteSkipReason(location: string): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(location)) return undefined;
  const target = path.resolve(location);
  if (!fs.existsSync(target)) return `${target} does not exist (drive not mounted?)`;
  if (REMOVABLE_ROOTS.some((r) => isUnder(target, r))) {
    const real = fs.realpathSync(target);
    const mount = mountPoints().find((m) => isUnder(real, m));
    if (mount === undefined || mount === '/') return `${target} is not on a mounted drive (it lies on the root file system)`;
  }
  return undefined;
}
