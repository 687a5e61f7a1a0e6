// The core repository scenarios, written once and run over every backend
// (a local directory, S3 on a real Ceph RGW): whatever works on one must work
// the same on the other, through the real CLI. And a small repository made
// through the CLI for tests that call a module's functions directly.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { openBackend } from '../../src/storage/open';
import { Backend } from '../../src/storage/backend';
import { LocalBackend } from '../../src/storage/local';
import { Repository } from '../../src/repo/repository';
import { PipelinePool } from '../../src/workers/pipelinePool';
import { EXIT, TestRepo, expectCleanFailure, expectSuccess, type BackupSummary } from './ferry';
import { overwriteRandomPages, sha256File, writeRandomishImage } from './files';
import type { Scratch } from './scratch';

const MiB = 1024 * 1024;

export interface ScenarioBackend {
  /** A fresh, empty repository location (a directory path or an s3: location). */
  newLocation(): Promise<string>;
}

/** Flip one byte in the middle of a stored object, through the Backend seam (works for any backend). */
export async function corruptObject(backend: Backend, type: 'data' | 'index' | 'restorepoints', name: string): Promise<void> {
  const bytes = await backend.read(type, name);
  bytes[Math.floor(bytes.length / 2)] ^= 0xff;
  await backend.write(type, name, bytes);
}

export async function objectNames(backend: Backend, type: 'data' | 'index' | 'restorepoints'): Promise<string[]> {
  const names: string[] = [];
  for await (const info of backend.list(type)) names.push(info.name);
  return names.sort();
}

export function repositoryScenarios(label: string, scratch: Scratch, where: ScenarioBackend): void {
  describe(`repository on ${label}`, () => {
    const tag = label.replace(/[^a-z0-9]+/gi, '-').toLowerCase();
    // One guest backed up on two nights (8 pages changed between): every test here reads it, none changes it.
    let repo: TestRepo;
    let first: BackupSummary;
    let second: BackupSummary;
    const points: { id: string; sha256: string }[] = [];

    beforeAll(async () => {
      repo = await TestRepo.init(scratch, `scenario-${tag}`, { dir: await where.newLocation() });
      const image = scratch.path(`scenario-${tag}.img`);
      writeRandomishImage(image, 40 * MiB, 4242);
      first = await repo.backup('web', [image]);
      points.push({ id: first.id, sha256: await sha256File(image) });
      overwriteRandomPages(image, 8, 77);
      second = await repo.backup('web', [image]);
      points.push({ id: second.id, sha256: await sha256File(image) });
    });

    it('starts with no restore points', async () => {
      const fresh = await TestRepo.init(scratch, `scenario-${tag}-fresh`, { dir: await where.newLocation() });
      expect(await fresh.list()).toEqual([]);
    });

    it('backs up a guest twice; the second night stores only about what changed', () => {
      expect(first.newBytes).toBeGreaterThan(10 * MiB);
      // 8 dirty 4 KiB pages touch at most 8 chunks (≤ 1 MiB each) plus their region maps.
      expect(second.newBytes).toBeLessThan(first.newBytes / 4);
      expect(second.id).not.toBe(first.id);
    });

    it('lists both restore points, oldest first', async () => {
      const list = await repo.list();
      expect(list.map((p) => p.id)).toEqual(points.map((p) => p.id));
      expect(list.every((p) => p.guest === 'web')).toBe(true);
    });

    it('restores each restore point bit-exact', async () => {
      for (const [i, p] of points.entries()) {
        const dir = scratch.path(`scenario-${tag}-restore-${i}`);
        expectSuccess(await repo.run(['restore', p.id, '--to', dir]));
        expect(await sha256File(`${dir}/scenario-${tag}.img`), `restore point ${i}`).toBe(p.sha256);
      }
    });

    it('passes check --read-data', async () => {
      await repo.expectCheckPasses(true);
    });

    it('finds a corrupted pack with check --read-data and names it', async () => {
      // Its own repository: the damage must not reach the others' tests.
      const damaged = await TestRepo.init(scratch, `scenario-${tag}-damaged`, { dir: await where.newLocation() });
      const image = scratch.path(`scenario-${tag}-damaged.img`);
      writeRandomishImage(image, 16 * MiB, 4343);
      const backedUp = { id: (await damaged.backup('web', [image])).id, sha256: await sha256File(image) };
      const backend = openBackend(damaged.path);
      try {
        const packs = await objectNames(backend, 'data');
        expect(packs.length).toBeGreaterThan(0);
        await corruptObject(backend, 'data', packs[0]);
        const r = await damaged.check(true);
        expect(r.code, r.stderr).toBe(EXIT.damageFound);
        expect(r.stdout + r.stderr).toContain(packs[0]);
        // And a restore that needs the damaged pack fails cleanly instead of writing wrong data.
        const out = scratch.path(`scenario-${tag}-damaged-restore`);
        const restore = await damaged.run(['restore', backedUp.id, '--to', out]);
        if (restore.code !== 0) expectCleanFailure(restore, { code: EXIT.corrupt });
        else expect(await sha256File(path.join(out, path.basename(image)))).toBe(backedUp.sha256);
      } finally {
        await backend.close();
      }
    });
  });
}

/** A restore point of a small repository, with a copy of the image it was made from. */
export interface BackedUpImage {
  id: string;
  guest: string;
  /** The image as it was at backup time (a copy: later nights change the original). */
  image: string;
  sha256: string;
}

/**
 * A small local repository made through the real CLI, for tests that call a
 * module's functions directly: guest `web` backed up on two nights (8 pages
 * changed between, so night 2 shares most chunks with night 1) and guest `db`
 * once. Restore points are oldest first.
 */
export async function smallRepository(scratch: Scratch, name: string): Promise<{ repo: TestRepo; points: BackedUpImage[] }> {
  const repo = await TestRepo.init(scratch, name);
  const points: BackedUpImage[] = [];
  const backUp = async (guest: string, image: string, night: number) => {
    const { id } = await repo.backup(guest, [image]);
    const copy = scratch.path(`${name}-${guest}-night${night}.img`);
    fs.copyFileSync(image, copy);
    points.push({ id, guest, image: copy, sha256: await sha256File(image) });
  };
  const web = scratch.path(`${name}-web.img`);
  const db = scratch.path(`${name}-db.img`);
  writeRandomishImage(web, 16 * MiB, 5150);
  writeRandomishImage(db, 8 * MiB, 5151);
  await backUp('web', web, 1);
  await backUp('db', db, 1);
  overwriteRandomPages(web, 8, 5152);
  await backUp('web', web, 2);
  return { repo, points };
}

/** `testRepo` opened in this process, as the CLI opens it (index loaded), with a worker pool closed at clean-up. */
export async function openInProcess(scratch: Scratch, testRepo: TestRepo): Promise<{ repo: Repository; pool: PipelinePool }> {
  const passphrase = fs.readFileSync(testRepo.passwordFile, 'utf8').replace(/\r?\n$/, '');
  const repo = await Repository.open(new LocalBackend(testRepo.path), Buffer.from(passphrase));
  await repo.loadIndex();
  const pool = new PipelinePool(repo.keys, repo.settings, 2);
  scratch.defer(() => pool.close());
  return { repo, pool };
}
