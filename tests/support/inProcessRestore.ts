// Restores run inside the test process, for tests that restore after every
// one of many kills: the functions `ferry restore` runs (the index loaded as
// every reading command loads it, then restoreToDirectory), without a Node
// start and a worker pool per restore. The repository is opened afresh for
// each call, so it sees what the kill left. The CLI path (locks, the stale
// lock of a killed run) stays covered by the `ferry check` those tests run
// after each kill, and by their final restores through `ferry restore`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadIndexForReading } from '../../src/cli/session';
import { Repository } from '../../src/repo/repository';
import { restoreToDirectory } from '../../src/restore/guestRestore';
import { LocalBackend } from '../../src/storage/local';
import { PipelinePool } from '../../src/workers/pipelinePool';
import type { TestRepo } from './ferry';
import { sha256File } from './files';

export interface ReadableRepository {
  /** The ids of the restore points the repository lists, oldest first. */
  restorePointIds: string[];
  /** Restores restore point `id` into the new directory `dir` and returns the sha256 of each file written, by name; `dir` is removed again. */
  restoreSha256(id: string, dir: string): Promise<Map<string, string>>;
}

/** Opens `testRepo` (a local directory) as `ferry restore` does, runs `body`, and closes it again. */
export async function readInProcess<T>(testRepo: TestRepo, body: (repo: ReadableRepository) => Promise<T>): Promise<T> {
  const passphrase = fs.readFileSync(testRepo.passwordFile, 'utf8').replace(/\r?\n$/, '');
  const repo = await Repository.open(new LocalBackend(testRepo.path), Buffer.from(passphrase));
  let pool: PipelinePool | undefined;
  try {
    await loadIndexForReading(repo);
    const points = await repo.listRestorePoints();
    pool = new PipelinePool(repo.keys, repo.settings, 1);
    const readable: ReadableRepository = {
      restorePointIds: points.map((p) => p.id),
      restoreSha256: async (id, dir) => {
        const rp = points.find((p) => p.id === id);
        if (!rp) throw new Error(`restore point ${id} is not in ${testRepo.path} (it lists ${points.map((p) => p.id.slice(0, 8)).join(', ')})`);
        try {
          const files = await restoreToDirectory(repo, pool!, await repo.loadRestorePointByName(rp.id), dir);
          const sums = new Map<string, string>();
          for (const f of files) sums.set(path.basename(f.path), await sha256File(f.path));
          return sums;
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
      },
    };
    return await body(readable);
  } finally {
    await pool?.close();
    await repo.backend.close();
  }
}
