// The local cache of an S3 repository must not be trusted over the repository:
// a cached copy that fails authentication is evicted and read again from S3
// (so one bad byte on this host's disk does not break every run, nor is the
// remote object blamed), and `check` judges the repository itself, never the
// cache. Against a real Ceph RGW.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { expectSuccess, flipByte, listFiles, overwriteRandomPages, sha256File, TestRepo, useScratch, writeRandomishImage } from '../support';
import { useS3Server } from '../support/s3server';

const MiB = 1024 * 1024;
const scratch = useScratch('s3-cache');
const s3 = useS3Server();
const env = { XDG_CACHE_HOME: '' };

let repo: TestRepo;
let image: string;
const points: { id: string; sha256: string }[] = [];

/** The cached copy of `type/name` (the cache directory is keyed by the location's hash). */
function cachedFile(type: 'index' | 'snapshots' | 'keys' | 'config', name?: string): string {
  const root = env.XDG_CACHE_HOME;
  const files = listFiles(root).filter((f) =>
    type === 'config' ? path.basename(f) === 'config' : f.split('/').slice(-2, -1)[0] === type && (!name || path.basename(f) === name),
  );
  expect(files.length, `a cached ${type} file${name ? ` ${name}` : ''} under ${root}`).toBeGreaterThan(0);
  return path.join(root, files[0]);
}

function damage(file: string): Buffer {
  const original = fs.readFileSync(file);
  flipByte(file, Math.floor(original.length / 2));
  return original;
}

beforeAll(async () => {
  env.XDG_CACHE_HOME = scratch.path('cache');
  repo = await TestRepo.init(scratch, 'repo', { dir: await s3.server.newLocation('ferry') });
  image = scratch.path('web.img');
  writeRandomishImage(image, 8 * MiB, 81);
  for (let i = 0; i < 2; i++) {
    if (i > 0) overwriteRandomPages(image, 4, 82);
    const r = await repo.run(['backup', '--guest', 'web', image, '--json'], { env });
    points.push({ id: (JSON.parse(expectSuccess(r)) as { id: string }).id, sha256: await sha256File(image) });
  }
});

describe('a flipped byte in the local cache', () => {
  it('of a restore point: list and restore succeed, and the cached copy is repaired', async () => {
    const file = cachedFile('snapshots', points[1].id);
    const original = damage(file);
    const list = await repo.run(['list', '--json'], { env });
    expect((JSON.parse(expectSuccess(list, 'list')) as { id: string }[]).map((p) => p.id)).toEqual(points.map((p) => p.id));
    expect(list.stderr).toBe('');
    expect(fs.readFileSync(file).equals(original), 'the cached copy is the repository\'s again').toBe(true);

    damage(file);
    const out = scratch.mkdir('restore-latest');
    expectSuccess(await repo.run(['restore', 'latest', '--to', out], { env }), 'restore latest');
    expect(await sha256File(path.join(out, 'web.img'))).toBe(points[1].sha256);
    expect(fs.readFileSync(file).equals(original)).toBe(true);
  });

  it('of an index file: restore succeeds and check reports no damage', async () => {
    const file = cachedFile('index');
    const original = damage(file);
    const check = await repo.run(['check'], { env });
    expectSuccess(check, 'check with a damaged cached index');
    expect(check.stdout).not.toContain('damaged');
    const out = scratch.mkdir('restore-first');
    expectSuccess(await repo.run(['restore', points[0].id, '--to', out], { env }), 'restore');
    expect(await sha256File(path.join(out, 'web.img'))).toBe(points[0].sha256);
    expect(fs.readFileSync(file).equals(original)).toBe(true);
  });

  it('of the key slot or the config: the repository still opens (no "wrong passphrase"), and the copies are repaired', async () => {
    for (const type of ['keys', 'config'] as const) {
      const file = cachedFile(type);
      const original = fs.readFileSync(file);
      if (type === 'keys') {
        // Damage the wrapped key itself (a flip in a label such as "created" would change nothing).
        const slot = JSON.parse(original.toString()) as { wrapped: string };
        const at = Math.floor(slot.wrapped.length / 2);
        const wrapped = slot.wrapped.slice(0, at) + (slot.wrapped[at] === 'A' ? 'B' : 'A') + slot.wrapped.slice(at + 1);
        fs.writeFileSync(file, JSON.stringify({ ...slot, wrapped }));
      } else {
        damage(file);
      }
      const list = await repo.run(['list', '--json'], { env });
      expectSuccess(list, `list with a damaged cached ${type} file`);
      expect(fs.readFileSync(file).equals(original), `cached ${type} file repaired`).toBe(true);
    }
  });
});
