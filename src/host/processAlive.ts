// Whether a process of this host still runs: how a lock or temporary file
// whose writer is on this host is known to be a dead writer's.

/** True while `pid` runs on this host (EPERM: it runs, as another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
