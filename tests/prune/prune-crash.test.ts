// Crash safety of `ferry prune` (FORMAT.md, garbage-collection rule 8): a
// SIGKILL at any moment leaves a repository that checks clean and restores
// every remaining restore point bit-exact, and a later prune finishes the job.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readInProcess } from '../support/inProcessRestore';
import {
  FAST_KDF, SeededRandom, TestRepo, ferry, describeResult, expectSuccess, listFiles, overwriteRandomPages, pseudoRandomBytes,
  sha256File, useScratch, writeRandomishImage,
} from '../support';

const MiB = 1024 * 1024;
const KILLS = 30;
// Reads and writes slowed down, so that most of a run is its writes and deletions, not the process start.
const PRUNE = ['prune', '--repack-below', '1', '--limit-upload', '3M', '--limit-download', '3M'];
const scratch = useScratch('prune-crash');

interface Point {
  id: string;
  sha256: string;
}

const WRITE_PHASE_MS = 800;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The repository's packs and index files, as one comparable string. */
function storedObjects(dir: string): string {
  return ['data', 'index'].flatMap((d) => listFiles(path.join(dir, d)).filter((f) => /[0-9a-f]{64}$/.test(f))).join(',');
}

describe('ferry prune killed at random moments', () => {
  it(`after each of ${KILLS} SIGKILLs the repository checks clean and every remaining restore point restores bit-exact`, async () => {
    // Small packs, so that a prune writes and deletes several and a kill lands between them.
    const passwordFile = scratch.path('repo.password');
    fs.writeFileSync(passwordFile, 'crash\n', { mode: 0o600 });
    const repo = new TestRepo(scratch.path('repo'), passwordFile);
    expectSuccess(await ferry(['init', '--repo', repo.path, '--password-file', passwordFile, '--pack-size', '1M', ...FAST_KDF]));
    const image = scratch.path('g.img');
    writeRandomishImage(image, 6 * MiB, 41, { holes: 0.1, text: 0.3 });
    const rng = new SeededRandom(42);
    let points: Point[] = [];
    let restored = 0;
    const backUp = async (night: number) => {
      // Each night replaces one MiB (whole chunks) and scatters page writes (patches).
      const at = rng.int(6) * MiB;
      const fd = fs.openSync(image, 'r+');
      fs.writeSync(fd, pseudoRandomBytes(100 + night, 0, MiB), 0, MiB, at);
      fs.closeSync(fd);
      overwriteRandomPages(image, 20, 200 + night);
      const { id } = await repo.backup('g', [image]);
      points.push({ id, sha256: await sha256File(image) });
    };
    const expectIntact = async (readData: boolean, restoreWith: 'cli' | 'in-process') => {
      await repo.expectCheckPasses(readData);
      if (restoreWith === 'in-process') {
        // After each kill (four CLI restores a round were a third of this file's time): see tests/support/inProcessRestore.ts.
        await readInProcess(repo, async (r) => {
          for (const p of points) {
            const sums = await r.restoreSha256(p.id, scratch.path(`restored-${++restored}`));
            expect(sums.get('g.img'), `restore point ${p.id}`).toBe(p.sha256);
          }
        });
        return;
      }
      for (const p of points) {
        const out = scratch.path(`restored-${++restored}`);
        expectSuccess(await repo.run(['restore', p.id, '--to', out]), `restore ${p.id}`);
        expect(await sha256File(path.join(out, 'g.img')), `restore point ${p.id}`).toBe(p.sha256);
        fs.rmSync(out, { recursive: true });
      }
    };

    for (let night = 0; night < 4; night++) await backUp(night);
    expectSuccess(await repo.run(['forget', points[0].id]));
    points = points.slice(1);
    // How long an uninterrupted prune takes here, so the kills spread over all of it (process start included).
    const started = Date.now();
    expectSuccess(await repo.run(PRUNE));
    const span = (Date.now() - started) * 1.3;

    let killedMidRun = 0;
    let killedWhileWriting = 0; // after its first write or deletion, before its last
    for (let kill = 0; kill < KILLS; kill++) {
      await backUp(4 + kill);
      if (points.length > 3) {
        expectSuccess(await repo.run(['forget', points[0].id]));
        points = points.slice(1);
      }
      const objectsBefore = storedObjects(repo.path);
      const running = repo.spawn(PRUNE);
      if (kill % 2 === 0) {
        await sleep(rng.int(Math.max(1, Math.round(span))));
      } else {
        // Every other kill lands inside the writes: after the first object appears or goes, a random moment later.
        let exited = false;
        void running.done.then(() => (exited = true));
        while (!exited && storedObjects(repo.path) === objectsBefore) await sleep(2);
        await sleep(rng.int(WRITE_PHASE_MS));
      }
      running.child.kill('SIGKILL');
      const result = await running.done;
      if (result.signal === 'SIGKILL') {
        killedMidRun++;
        if (storedObjects(repo.path) !== objectsBefore) killedWhileWriting++;
      }
      else expectSuccess(result, `prune (not killed in time): ${describeResult(result)}`);
      await expectIntact(false, 'in-process');
    }
    // Most kills must land inside a run for the loop to test anything.
    expect(killedMidRun).toBeGreaterThanOrEqual(KILLS / 2);
    expect(killedWhileWriting).toBeGreaterThanOrEqual(KILLS / 6);

    const final = JSON.parse(expectSuccess(await repo.run(['prune', '--json']))) as { indexFilesAfter: number; restorePointsKept: number };
    expect(final.restorePointsKept).toBe(points.length);
    // (A kill during a write may leave a `.tmp-` file: never an object, removed by a later backup after 30 minutes.)
    const indexObjects = listFiles(path.join(repo.path, 'index')).filter((f) => /^[0-9a-f]{64}$/.test(f));
    expect(indexObjects.length).toBe(final.indexFilesAfter);
    expect(final.indexFilesAfter).toBeLessThanOrEqual(1);
    await expectIntact(true, 'cli');
    // Next to no garbage remains: a prune right after frees at most a few bytes, and the repository stays intact.
    // (Known: after kills, duplicate copies of a blob in two packs that both stay whole can make the second prune
    // repack one of them; one CI run freed 2 bytes that way. To be made exactly idempotent.)
    const again = JSON.parse(expectSuccess(await repo.run(['prune', '--json']))) as { bytesFreed: number };
    expect(again.bytesFreed).toBeLessThanOrEqual(64 * 1024);
    await expectIntact(true, 'cli');
  }, 900_000);
});
