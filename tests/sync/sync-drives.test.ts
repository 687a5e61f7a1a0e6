// Rotating USB drives: `ferry sync` leaves a sync record in the target (when,
// from where, what it holds) and `ferry drives` shows it for several targets
// at once, without the passphrase; a copy target no recording sync reached
// says so. A sync to a drive too small for the missing packs says so in one
// line before copying anything (small loop-mounted ext4 file systems).
import * as fs from 'node:fs';
import * as os from 'node:os';
import { beforeAll, describe, expect, it } from 'vitest';
import { expectCleanFailure, expectSuccess, FAST_KDF, ferry, listFiles, parseJson, sha256File, TestRepo, useScratch, writeRandomishImage } from '../support';
import { mountLoopFileSystem } from '../support/loopFileSystems';
import { EXIT_CODES } from '../../src/errors';

const MiB = 1024 * 1024;
const scratch = useScratch('sync-drives');

interface DriveJson {
  location: string;
  repositoryId?: string;
  lastSync?: { time: string; source: string; host: string; repositoryId: string; mirror: boolean; restorePoints: number; packs: number; bytes: number };
  freeBytes?: number;
  problem?: string;
}

let src: TestRepo;
let big: string;
let small: string;
let webSha: string;

beforeAll(async () => {
  src = new TestRepo(scratch.path('src'), scratch.path('src.pw'));
  fs.writeFileSync(src.passwordFile, 'correct horse drives\n');
  expectSuccess(await ferry(['init', '--repo', src.path, '--password-file', src.passwordFile, '--pack-size', '1M', ...FAST_KDF]));
  writeRandomishImage(scratch.path('web.img'), 12 * MiB, 41, { holes: 0, text: 0 });
  writeRandomishImage(scratch.path('db.img'), 4 * MiB, 42, { holes: 0, text: 0 });
  await src.backup('web', [scratch.path('web.img')]);
  await src.backup('db', [scratch.path('db.img')]);
  webSha = await sha256File(scratch.path('web.img'));
  // Two "USB drives": one with room for the repository (~16 MiB), one without.
  const mkfs = ['mkfs.ext4', '-q', '-F', '-m', '0'];
  big = `${await mountLoopFileSystem(scratch, 'usb-big', { mkfs, sizeMiB: 64 })}/ferry`;
  small = `${await mountLoopFileSystem(scratch, 'usb-small', { mkfs, sizeMiB: 12 })}/ferry`;
  for (const drive of [big, small]) expectSuccess(await ferry(['init', '--from', src.path, '--repo', drive]), `init --from ${drive}`);
}, 120_000);

const drives = async (targets: string[]) => ferry(['drives', ...targets, '--json']);

describe('ferry drives', () => {
  it('a copy target no recording sync reached: a repository, no sync record', async () => {
    const states = parseJson<DriveJson[]>(await drives([big]));
    expect(states).toHaveLength(1);
    expect(states[0].repositoryId).toMatch(/^[0-9a-f]{32}$/);
    expect(states[0].lastSync).toBeUndefined();
    expect(states[0].freeBytes).toBeGreaterThan(32 * MiB);
  });

  it('after a sync: when, from where, and what the drive holds; the copy restores bit-exact', async () => {
    const before = Date.now();
    expectSuccess(await ferry(['sync', src.path, big]));
    const [state] = parseJson<DriveJson[]>(await drives([big]));
    const r = state.lastSync!;
    expect(Date.parse(r.time)).toBeGreaterThanOrEqual(before - 1000);
    expect(r.source).toBe(src.path);
    expect(r.host).toBe(os.hostname());
    expect(r.repositoryId).toBe(state.repositoryId);
    expect(r.mirror).toBe(false);
    expect(r.restorePoints).toBe(2);
    expect(r.packs).toBe(listFiles(`${big}/data`).length);
    expect(r.bytes).toBeGreaterThan(16 * MiB);
    // One record: a second sync replaces it.
    expectSuccess(await ferry(['sync', src.path, big]));
    expect(listFiles(`${big}/syncs`)).toHaveLength(1);

    const copy = src.at(big);
    await copy.expectCheckPasses(true);
    const id = (await copy.list()).find((p) => p.guest === 'web')!.id;
    const out = scratch.path('restore-web');
    expectSuccess(await copy.run(['restore', id, '--to', out]));
    expect(await sha256File(`${out}/web.img`)).toBe(webSha);
  });

  it('shows several drives in one call, and names one that holds no repository (not mounted)', async () => {
    const absent = scratch.path('not-mounted/ferry');
    const r = await ferry(['drives', big, small, absent]);
    expect(r.code).toBe(EXIT_CODES.notARepository);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(new RegExp(`^${big}: repository [0-9a-f]{8}, last synced \\S+ \\(.* ago\\) from ${src.path} on \\S+; holds 2 restore point\\(s\\), \\d+ pack\\(s\\), [\\d.]+ MiB; [\\d.]+ MiB free$`));
    expect(lines[1]).toMatch(new RegExp(`^${small}: repository [0-9a-f]{8}, no sync record \\(never synced by a ferry that records syncs\\); [\\d.]+ \\w+ free$`));
    expect(lines[2]).toMatch(new RegExp(`^${absent}: no repository here`));
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^ferry: 1 of 3 target\(s\) hold no readable repository \(first: .*not-mounted.*\); is the drive mounted\?$/)]);
  });
});

describe('a drive too small', () => {
  it('says so in one line before copying anything', async () => {
    const r = await ferry(['sync', src.path, small]);
    expectCleanFailure(r, {
      code: EXIT_CODES.doesNotFit,
      message: /: the sync does not fit: it needs about [\d.]+ MiB for \d+ missing object\(s\) \(\d+ packs, [\d.]+ MiB\) and [\d.]+ MiB is free; nothing was copied/,
    });
    expect(listFiles(`${small}/data`)).toEqual([]);
    expect(listFiles(`${small}/snapshots`)).toEqual([]);
    expect(listFiles(`${small}/syncs`)).toEqual([]);
  });
});
