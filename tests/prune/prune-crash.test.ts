// Crash safety of `ferry prune` (FORMAT.md, garbage-collection rule 8): a
// SIGKILL at any moment leaves a repository that checks clean and restores
// every remaining restore point bit-exact, and a later prune finishes the job.
// Each round forgets the oldest restore point, so prune also stores patch
// chains whole (rule 7), and a third of the kills aim at that.
// 15 kills, 5 at each kind of moment (anywhere in the run, inside its writes,
// while it stores a chain whole), each followed by check --read-data and a
// restore of every point: each round costs ~4 s, so the count trades samples
// of the same three phases for suite time (it was 54, then 27). Every prefix
// of a run's writes and deletions is visited in order by
// prune-stopped-each-step.test.ts; this one adds real kills of a real process
// at moments no list of steps names (inside a write, between two reads).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlobType, blobType } from '../../src/crypto/blobCodec';
import { Repository } from '../../src/repo/repository';
import { LocalBackend } from '../../src/storage/local';
import { readInProcess } from '../support/inProcessRestore';
import {
  FAST_KDF, SeededRandom, TestRepo, ferry, describeResult, expectSuccess, listFiles, overwriteRandomPages, pseudoRandomBytes,
  sha256File, useScratch, writeRandomishImage,
} from '../support';

const MiB = 1024 * 1024;
const KiB = 1024;
const KILLS = 15;
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

/** The repository's objects of one kind (`data`: packs as xx/id), sorted. */
function objectsOf(dir: string, kind: 'data' | 'index'): string[] {
  return listFiles(path.join(dir, kind)).filter((f) => /[0-9a-f]{64}$/.test(f)).sort();
}

/** The repository's packs and index files, as one comparable string. */
function storedObjects(dir: string): string {
  return [...objectsOf(dir, 'data'), ...objectsOf(dir, 'index')].join(',');
}

async function openRepository(repo: TestRepo): Promise<Repository> {
  const passphrase = fs.readFileSync(repo.passwordFile, 'utf8').replace(/\r?\n$/, '');
  return Repository.open(new LocalBackend(repo.path), Buffer.from(passphrase));
}

/** The ids (hex) the repository's index files name as page patches. */
async function indexedPatches(repo: TestRepo): Promise<Set<string>> {
  const opened = await openRepository(repo);
  try {
    await opened.loadIndex();
    const patches = new Set<string>();
    opened.forEachBlob((id, loc) => {
      if (blobType(loc.typeFlags) === BlobType.Patch) patches.add(id.toString('hex'));
    });
    return patches;
  } finally {
    await opened.backend.close();
  }
}

/** Watches for packs a running prune writes that hold a page patch of `patches` stored whole (rule 7). */
class RewriteWatch {
  private readonly seen = new Set<string>();
  constructor(
    private readonly repo: TestRepo,
    private readonly packsBefore: ReadonlySet<string>,
    readonly patches: ReadonlySet<string>,
  ) {}

  /** Whether a new pack now holds a rewritten chain (each pack's header is read once). */
  async found(opened: Repository): Promise<boolean> {
    for (const file of objectsOf(this.repo.path, 'data')) {
      if (this.packsBefore.has(file) || this.seen.has(file)) continue;
      this.seen.add(file);
      let size: number;
      try {
        size = fs.statSync(path.join(this.repo.path, 'data', file)).size;
      } catch {
        continue; // deleted meanwhile
      }
      const entries = await opened.readPackHeader(path.basename(file), size).catch(() => undefined);
      if (entries?.some((e) => blobType(e.typeFlags) === BlobType.Data && this.patches.has(e.id.toString('hex')))) return true;
    }
    return false;
  }
}

describe('ferry prune killed at random moments', () => {
  it(`after each of ${KILLS} SIGKILLs (some while it stores patch chains whole) the repository checks clean and every remaining restore point restores bit-exact`, async () => {
    // Small packs, so that a prune writes and deletes several and a kill lands between them; fixed
    // chunks, so that the nights' patches are the same in every run (content-defined cut points are
    // keyed per repository, and a pack of patches filled with whole chunks by moved cut points stays
    // whole) and every night patches the same chunks, deepening their chains: a chunk left stored
    // both whole and as a patch by a kill once let a later prune drop the whole copy, and the prune
    // after it refused ('names no readable base', a chain past the depth limit; 2 runs in 16).
    const passwordFile = scratch.path('repo.password');
    fs.writeFileSync(passwordFile, 'crash\n', { mode: 0o600 });
    const repo = new TestRepo(scratch.path('repo'), passwordFile);
    expectSuccess(await ferry(['init', '--repo', repo.path, '--password-file', passwordFile, '--pack-size', '1M', '--chunker', 'fixed:256K', ...FAST_KDF]));
    const image = scratch.path('g.img');
    writeRandomishImage(image, 3 * MiB, 41, { holes: 0, text: 0.3 });
    const rng = new SeededRandom(42);
    let points: Point[] = [];
    let restored = 0;
    const backUp = async (night: number) => {
      // Each night replaces 512 KiB (whole chunks) and scatters page writes (patches on the night before's chunks).
      const at = rng.int(6) * 512 * KiB;
      const fd = fs.openSync(image, 'r+');
      fs.writeSync(fd, pseudoRandomBytes(100 + night, 0, 512 * KiB), 0, 512 * KiB, at);
      fs.closeSync(fd);
      overwriteRandomPages(image, 12, 200 + night);
      const { id } = await repo.backup('g', [image]);
      points.push({ id, sha256: await sha256File(image) });
    };
    const expectIntact = async (restoreWith: 'cli' | 'in-process') => {
      await repo.expectCheckPasses(true);
      if (restoreWith === 'in-process') {
        // After each kill (CLI restores a round were a third of this file's time): see tests/support/inProcessRestore.ts.
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
    const first = JSON.parse(expectSuccess(await repo.run([...PRUNE, '--json']))) as { chainsRewritten: number };
    const span = (Date.now() - started) * 1.3;
    expect(first.chainsRewritten, 'the forgotten night leaves patch chains to store whole').toBeGreaterThan(0);

    let killedMidRun = 0;
    let killedWhileWriting = 0; // after its first write or deletion, before its last
    let killedWhileRewriting = 0; // a chain stored whole in a new pack, no new index file yet
    for (let kill = 0; kill < KILLS; kill++) {
      await backUp(4 + kill);
      if (points.length > 3) {
        expectSuccess(await repo.run(['forget', points[0].id]));
        points = points.slice(1);
      }
      const objectsBefore = storedObjects(repo.path);
      const packsBefore = new Set(objectsOf(repo.path, 'data'));
      const indexesBefore = objectsOf(repo.path, 'index').join(',');
      const watch = new RewriteWatch(repo, packsBefore, await indexedPatches(repo));
      const running = repo.spawn(PRUNE);
      let exited = false;
      void running.done.then(() => (exited = true));
      if (kill % 3 === 0) {
        await sleep(rng.int(Math.max(1, Math.round(span))));
      } else if (kill % 3 === 1) {
        // Inside the writes: after the first object appears or goes, a random moment later.
        while (!exited && storedObjects(repo.path) === objectsBefore) await sleep(2);
        await sleep(rng.int(WRITE_PHASE_MS));
      } else {
        // While it stores chains whole: right after the first new pack holding one appears.
        const opened = await openRepository(repo);
        try {
          while (!exited && !(await watch.found(opened))) await sleep(2);
        } finally {
          await opened.backend.close();
        }
        await sleep(rng.int(100));
      }
      running.child.kill('SIGKILL');
      const result = await running.done;
      if (result.signal === 'SIGKILL') {
        killedMidRun++;
        if (storedObjects(repo.path) !== objectsBefore) killedWhileWriting++;
        if (objectsOf(repo.path, 'index').join(',') === indexesBefore) {
          const opened = await openRepository(repo);
          try {
            if (await new RewriteWatch(repo, packsBefore, watch.patches).found(opened)) killedWhileRewriting++;
          } finally {
            await opened.backend.close();
          }
        }
      } else expectSuccess(result, `prune (not killed in time): ${describeResult(result)}`);
      await expectIntact('in-process');
    }
    console.log(`prune crash: ${killedMidRun}/${KILLS} kills mid-run, ${killedWhileWriting} while writing, ${killedWhileRewriting} while storing a chain whole`);
    // Most kills must land inside a run for the loop to test anything.
    expect(killedMidRun).toBeGreaterThanOrEqual(Math.ceil(KILLS / 2));
    expect(killedWhileWriting).toBeGreaterThanOrEqual(Math.ceil(KILLS / 6));
    expect(killedWhileRewriting).toBeGreaterThanOrEqual(Math.ceil(KILLS / 9));

    const final = JSON.parse(expectSuccess(await repo.run(['prune', '--json']))) as { indexFilesAfter: number; restorePointsKept: number };
    expect(final.restorePointsKept).toBe(points.length);
    // (A kill during a write may leave a `.tmp-` file: never an object, removed by a later backup after 30 minutes.)
    expect(objectsOf(repo.path, 'index').length).toBe(final.indexFilesAfter);
    expect(final.indexFilesAfter).toBeLessThanOrEqual(1);
    await expectIntact('cli');
    // Next to no garbage remains: prunes right after settle within a few runs to freeing at most a few bytes, and the
    // repository stays intact. (Known: after kills, duplicate copies of a blob in two packs that both stay whole can
    // make the next prune repack one of them; and a chain rule 7 stores whole can leave a base needed by one patch
    // only, whose chain the next prune rewrites: two runs under load freed 0.9 MB and 0.7 MB that way. To be made
    // exactly idempotent.)
    let freed = Infinity;
    for (let run = 0; run < 3 && freed > 64 * 1024; run++) {
      freed = (JSON.parse(expectSuccess(await repo.run(['prune', '--json']))) as { bytesFreed: number }).bytesFreed;
    }
    expect(freed).toBeLessThanOrEqual(64 * 1024);
    await expectIntact('cli');
  }, 900_000);
});
