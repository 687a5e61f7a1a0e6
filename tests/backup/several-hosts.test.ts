// Several dom0 hosts back up into one S3 repository at the same moment: every
// backup succeeds, every restore point restores bit-exact, and the repository
// checks clean. Each "host" is a separate ferry process with its own host name
// (a UTS namespace) and its own cache directory, as on separate machines.
import * as fs from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  describeResult,
  expectSuccess,
  FERRY_BIN,
  ferryEnv,
  overwriteRandomPages,
  runCommand,
  sha256File,
  TestRepo,
  useScratch,
  writeRandomishImage,
} from '../support';
import { useS3Server } from '../support/s3server';

const MiB = 1024 * 1024;
const scratch = useScratch('several-hosts');
const s3 = useS3Server();

const hosts = [
  { host: 'dom0-a', guest: 'web' },
  { host: 'dom0-b', guest: 'db' },
  { host: 'dom0-c', guest: 'mail' },
  { host: 'dom0-d', guest: 'web-clone' },
];

let repo: TestRepo;
const expected = new Map<string, { guest: string; sha256: string; host: string }>();

/** `ferry backup` as host `host`: own host name (unshare -u) and own cache, all started at once by the caller. */
async function backupAs(host: string, guest: string): Promise<string> {
  const image = scratch.path(`${guest}.img`);
  const args = repo.argv(['backup', '--guest', guest, image]);
  const r = await runCommand('unshare', ['-u', 'sh', '-c', 'hostname "$1" && shift && exec "$@"', 'sh', host, process.execPath, FERRY_BIN, ...args], {
    env: ferryEnv({ FERRY_PASSWORD_FILE: repo.passwordFile, XDG_CACHE_HOME: scratch.path(`cache-${host}`) }),
    timeoutMs: 240_000,
  });
  expect(r.code, `backup of ${guest} on ${host}: ${describeResult(r)}`).toBe(0);
  const id = r.stdout.trim();
  expected.set(id, { guest, sha256: await sha256File(image), host });
  return id;
}

/** Restore point ids of each night: every host backs up at the same moment, twice, with changes in between. */
let nights: string[][];

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'fleet', { dir: await s3.server.newLocation('fleet') });
  for (const [i, { guest }] of hosts.entries()) {
    if (guest === 'web-clone') continue;
    writeRandomishImage(scratch.path(`${guest}.img`), 24 * MiB, 700 + i);
  }
  // A clone shares nearly all its chunks with another guest: two hosts store the same chunks at once.
  fs.copyFileSync(scratch.path('web.img'), scratch.path('web-clone.img'));
  overwriteRandomPages(scratch.path('web-clone.img'), 3, 9);
  nights = [await Promise.all(hosts.map(({ host, guest }) => backupAs(host, guest)))];
  // The next night, again all at once, with changes.
  for (const [i, { guest }] of hosts.entries()) overwriteRandomPages(scratch.path(`${guest}.img`), 5, 40 + i);
  nights.push(await Promise.all(hosts.map(({ host, guest }) => backupAs(host, guest))));
});

describe('several hosts, one S3 repository', () => {
  it('four hosts back up at the same time, two nights running; every backup makes its own restore point', () => {
    // backupAs already failed the run if any backup exited non-zero.
    for (const ids of nights) expect(new Set(ids).size).toBe(hosts.length);
    expect(new Set(nights.flat()).size).toBe(2 * hosts.length);
  });

  it('lists every restore point with the host that made it', async () => {
    const list = await repo.list();
    expect(list.map((p) => p.id).sort()).toEqual([...expected.keys()].sort());
    for (const p of list) {
      expect(p.guest).toBe(expected.get(p.id)!.guest);
      const show = expectSuccess(await repo.run(['show', p.id]));
      expect(show).toContain(`host:   ${expected.get(p.id)!.host}`);
    }
  });

  it('restores every restore point bit-exact, and check --read-data passes', async () => {
    // Each image was hashed right after its backup and before the next night changed it.
    for (const [id, { guest, sha256 }] of expected) {
      const out = scratch.path(`restore-${id.slice(0, 8)}`);
      expectSuccess(await repo.run(['restore', id, '--to', out]));
      expect(await sha256File(`${out}/${guest}.img`), `${guest} ${id.slice(0, 8)}`).toBe(sha256);
    }
    await repo.expectCheckPasses(true);
  });
});
