// Crash safety of `ferry prune` step by step (FORMAT.md, garbage-collection
// rule 8): prune stopped right before each of its writes and deletions in turn
// leaves a repository that checks clean and restores every restore point
// bit-exact, and the next prune, run straight after with no backup between,
// finishes the job. prune-crash.test.ts kills at random moments; this visits
// every prefix of the run, which no timing can promise (a prune stopped among
// its pack deletions once left a dropped pack's page patch whose base was
// already gone, and the next prune followed it and refused).
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkRepository } from '../../src/check/repositoryCheck';
import { pruneRepository } from '../../src/prune/pruneRun';
import { Repository } from '../../src/repo/repository';
import type { Backend, ObjectBytes, ObjectInfo, ObjectType } from '../../src/storage/backend';
import { LocalBackend } from '../../src/storage/local';
import { PipelinePool } from '../../src/workers/pipelinePool';
import { readInProcess } from '../support/inProcessRestore';
import {
  FAST_KDF, SeededRandom, TestRepo, expectSuccess, ferry, overwriteRandomPages, pseudoRandomBytes, sha256File, useScratch, writeRandomishImage,
} from '../support';

const MiB = 1024 * 1024;
const KiB = 1024;
const scratch = useScratch('prune-stopped');

class Stopped extends Error {}

/** A backend that performs the first `allowed` writes and removals, then refuses every later one (a process killed there). */
class StoppingBackend implements Backend {
  readonly location: string;
  mutations = 0;
  private readonly pending: Promise<unknown>[] = [];
  constructor(private readonly inner: Backend, private readonly allowed = Infinity) {
    this.location = inner.location;
  }
  read(type: ObjectType, name: string): Promise<Buffer> {
    return this.inner.read(type, name);
  }
  readRange(type: ObjectType, name: string, offset: number, length: number, into?: Uint8Array): Promise<Buffer> {
    return this.inner.readRange(type, name, offset, length, into);
  }
  stat(type: ObjectType, name: string): Promise<ObjectInfo | undefined> {
    return this.inner.stat(type, name);
  }
  list(type: ObjectType): AsyncIterable<ObjectInfo> {
    return this.inner.list(type);
  }
  write(type: ObjectType, name: string, data: ObjectBytes): Promise<void> {
    return this.mutate(() => this.inner.write(type, name, data));
  }
  remove(type: ObjectType, name: string): Promise<void> {
    return this.mutate(() => this.inner.remove(type, name));
  }
  /** Waits for writes already under way (a kill does not undo a rename that happened). */
  async close(): Promise<void> {
    await Promise.allSettled(this.pending);
    await this.inner.close();
  }
  private mutate(op: () => Promise<void>): Promise<void> {
    if (this.mutations >= this.allowed) return Promise.reject(new Stopped(`stopped before mutation ${this.mutations + 1}`));
    this.mutations++;
    const done = op();
    this.pending.push(done);
    return done;
  }
}

function passphraseOf(repo: TestRepo): Buffer {
  return Buffer.from(fs.readFileSync(repo.passwordFile, 'utf8').replace(/\r?\n$/, ''));
}

/** Prunes `repo` in this process (rule 7 included, every pack below full repacked); returns the writes and removals made. */
async function pruneInProcess(repo: TestRepo, allowed = Infinity): Promise<{ mutations: number; stopped: boolean }> {
  const backend = new StoppingBackend(new LocalBackend(repo.path), allowed);
  const opened = await Repository.open(backend, passphraseOf(repo));
  try {
    await pruneRepository(opened, { repackBelow: 1, mode: 'prune' });
    return { mutations: backend.mutations, stopped: false };
  } catch (err) {
    if (!(err instanceof Stopped)) throw err;
    return { mutations: backend.mutations, stopped: true };
  } finally {
    await backend.close();
  }
}

/** `check --read-data`'s findings, in this process. */
async function damageFound(repo: TestRepo): Promise<string[]> {
  const opened = await Repository.open(new LocalBackend(repo.path), passphraseOf(repo));
  const pool = new PipelinePool(opened.keys, opened.settings, 1);
  try {
    const report = await checkRepository(opened, pool, 'read-data');
    return report.damage.map((d) => `${d.object}: ${d.problem}`);
  } finally {
    await pool.close();
    await opened.backend.close();
  }
}

describe('ferry prune stopped before each of its writes and deletions', () => {
  it('leaves a repository that checks clean and restores bit-exact, and the next prune finishes the job', async () => {
    const passwordFile = scratch.path('repo.password');
    fs.writeFileSync(passwordFile, 'stopped\n', { mode: 0o600 });
    const repo = new TestRepo(scratch.path('repo'), passwordFile);
    // Small packs, so that prune writes and deletes several; a fast key derivation.
    expectSuccess(await ferry(['init', '--repo', repo.path, '--password-file', passwordFile, '--pack-size', '1M', ...FAST_KDF]));
    const image = scratch.path('g.img');
    writeRandomishImage(image, 3 * MiB, 43, { holes: 0, text: 0.3 });
    const rng = new SeededRandom(44);
    const points: { id: string; sha256: string }[] = [];
    // Each night replaces 512 KiB and writes scattered pages: patches on patches, whose chains rule 7 stores whole.
    for (let night = 0; night < 6; night++) {
      const fd = fs.openSync(image, 'r+');
      fs.writeSync(fd, pseudoRandomBytes(300 + night, 0, 512 * KiB), 0, 512 * KiB, rng.int(6) * 512 * KiB);
      fs.closeSync(fd);
      overwriteRandomPages(image, 12, 400 + night);
      const { id } = await repo.backup('g', [image]);
      points.push({ id, sha256: await sha256File(image) });
    }
    for (const p of points.splice(0, 3)) expectSuccess(await repo.run(['forget', p.id]));
    const before = scratch.path('before');
    fs.cpSync(repo.path, before, { recursive: true });

    const whole = await pruneInProcess(repo);
    expect(whole.stopped).toBe(false);
    // Packs, index files, a bridge, deletions: enough steps for the prefixes to mean something.
    expect(whole.mutations).toBeGreaterThanOrEqual(8);

    for (let allowed = 0; allowed < whole.mutations; allowed++) {
      fs.rmSync(repo.path, { recursive: true });
      fs.cpSync(before, repo.path, { recursive: true });
      expect((await pruneInProcess(repo, allowed)).stopped, `prune stopped after ${allowed} of ${whole.mutations}`).toBe(true);
      const expectIntact = async (when: string) => {
        expect(await damageFound(repo), `check ${when}`).toEqual([]);
        await readInProcess(repo, async (r) => {
          expect(r.restorePointIds).toEqual(points.map((p) => p.id));
          for (const p of points) {
            const sums = await r.restoreSha256(p.id, scratch.path('restored'));
            expect(sums.get('g.img'), `restore point ${p.id} ${when}`).toBe(p.sha256);
          }
        });
      };
      await expectIntact(`after prune stopped at ${allowed} of ${whole.mutations}`);
      expect((await pruneInProcess(repo)).stopped).toBe(false);
      await expectIntact(`after the prune that followed a stop at ${allowed} of ${whole.mutations}`);
    }
  }, 600_000);
});
