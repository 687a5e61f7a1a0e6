// The core repository scenarios, written once and run over every backend
// (a local directory, S3 on a real Ceph RGW): whatever works on one must work
// the same on the other, through the real CLI.
import { beforeAll, describe, expect, it } from 'vitest';
import { openBackend } from '../../src/storage/open';
import { Backend } from '../../src/storage/backend';
import { EXIT, TestRepo, expectCleanFailure, expectSuccess } from './ferry';
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
    let repo: TestRepo;
    let image: string;
    const points: { id: string; sha256: string }[] = [];

    beforeAll(async () => {
      const location = await where.newLocation();
      repo = await TestRepo.init(scratch, `scenario-${tag}`, { dir: location });
      image = scratch.path(`scenario-${tag}.img`);
      writeRandomishImage(image, 40 * MiB, 4242);
    });

    it('starts with no restore points', async () => {
      expect(await repo.list()).toEqual([]);
    });

    it('backs up a guest twice; the second night stores only about what changed', async () => {
      const first = await repo.backup('web', [image]);
      points.push({ id: first.id, sha256: await sha256File(image) });
      overwriteRandomPages(image, 8, 77);
      const second = await repo.backup('web', [image]);
      points.push({ id: second.id, sha256: await sha256File(image) });
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
      const backend = openBackend(repo.path);
      try {
        const packs = await objectNames(backend, 'data');
        expect(packs.length).toBeGreaterThan(0);
        await corruptObject(backend, 'data', packs[0]);
        const r = await repo.check(true);
        expect(r.code, r.stderr).toBe(EXIT.damageFound);
        expect(r.stdout + r.stderr).toContain(packs[0]);
        // And a restore that needs the damaged pack fails cleanly instead of writing wrong data.
        const restore = await repo.run(['restore', points[0].id, '--to', scratch.path(`scenario-${tag}-damaged`)]);
        if (restore.code !== 0) expectCleanFailure(restore, { code: EXIT.corrupt });
        else expect(await sha256File(scratch.path(`scenario-${tag}-damaged`, `scenario-${tag}.img`))).toBe(points[0].sha256);
      } finally {
        await backend.close();
      }
    });
  });
}
