// `ferry backup --all` of a guest described in ferry.conf whose image lives on
// btrfs: a read-only snapshot per run, and from the second run on only the
// ranges `btrfs send --no-data` reports as changed are read.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { mustRun, overwriteRandomPages, sha256File, useScratch, writeRandomishImage } from '../support';
import { mountLoopFileSystem } from '../support/loopFileSystems';
import { ferry, expectSuccess, FAST_KDF } from '../support/ferry';

const MiB = 1024 * 1024;
const scratch = useScratch('fleet-btrfs');
const env = { FERRY_PASSWORD: 'btrfs-fleet' };
let repo: string;
let conf: string;
let image: string;

interface FleetJson {
  guests: { guest: string; ok: boolean; id: string; readBytes: number; logicalBytes: number; fullReads: string[]; snapshotKinds: string[] }[];
}

beforeAll(async () => {
  const mnt = await mountLoopFileSystem(scratch, 'btrfs', { mkfs: ['mkfs.btrfs', '-q'], sizeMiB: 1024 });
  await mustRun('btrfs', ['subvolume', 'create', path.join(mnt, 'vms')]);
  image = path.join(mnt, 'vms', 'files01.img');
  writeRandomishImage(image, 256 * MiB, 11);
  repo = scratch.path('repo');
  expectSuccess(await ferry(['init', '--repo', repo, ...FAST_KDF], { env }));
  conf = scratch.path('ferry.conf');
  fs.writeFileSync(conf, `repository = ${JSON.stringify(repo)}\n\n[[static.guest]]\nname = "files01"\ndisks = [${JSON.stringify(image)}]\n`);
});

async function backupAll(): Promise<FleetJson['guests'][0]> {
  const out = expectSuccess(await ferry(['backup', '--all', '--config', conf, '--work-dir', scratch.mkdir('work'), '--json'], { env }), 'backup --all');
  return (JSON.parse(out) as FleetJson).guests[0];
}

async function restoredSha(id: string): Promise<string> {
  const out = scratch.mkdir(`restore-${id.slice(0, 8)}`);
  expectSuccess(await ferry(['restore', '--repo', repo, id, '--to', out], { env }), 'restore');
  return sha256File(path.join(out, 'disk0.img'));
}

describe('backup --all of a guest on btrfs', () => {
  it('reads everything the first night, then only the chunks the changes touched, from the snapshot', async () => {
    const first = await backupAll();
    expect(first.ok).toBe(true);
    expect(first.snapshotKinds).toEqual(['btrfs']);
    expect(await restoredSha(first.id)).toBe(await sha256File(image));

    const pages = overwriteRandomPages(image, 1300, 12).length; // ~2% of the image in scattered 4 KiB pages
    const second = await backupAll();
    expect(second.ok).toBe(true);
    expect(second.fullReads).toEqual([]);
    expect(second.readBytes).toBeGreaterThanOrEqual(pages * 4096 * 0.9);
    // 1300 pages over ~1000 chunks of ~256 KiB leave about a third of them untouched, and unread.
    expect(second.readBytes).toBeLessThan(first.readBytes * 0.85);
    expect(await restoredSha(second.id)).toBe(await sha256File(image));
  });
});
