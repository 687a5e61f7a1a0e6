// A restore point that vanishes — deleted by hand, or an older copy of the
// repository put in its place — is a valid repository, so only this host can
// tell: it keeps a record of the restore points it has seen (--state-dir /
// FERRY_STATE_DIR) and warns about any that disappear without a local forget.
// Every restore says which point it restored and how old it is.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { expectSuccess, mustRun, overwriteRandomPages, sha256File, TestRepo, useScratch, writeRandomishImage } from '../support';

const scratch = useScratch('rollback');
const MiB = 1024 * 1024;

let repo: TestRepo;
let image: string;
const points: { id: string; sha256: string; time: string }[] = [];
const env = { FERRY_STATE_DIR: '' };

function warnings(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('ferry: warning:'));
}

async function backUp(): Promise<{ id: string; sha256: string; time: string }> {
  overwriteRandomPages(image, 4, points.length + 100);
  const r = await repo.run(['backup', '--guest', 'web', image, '--json'], { env });
  const summary = JSON.parse(expectSuccess(r, 'backup')) as { id: string; time: string };
  const point = { id: summary.id, sha256: await sha256File(image), time: summary.time };
  points.push(point);
  return point;
}

beforeAll(async () => {
  env.FERRY_STATE_DIR = scratch.path('state');
  repo = await TestRepo.init(scratch, 'repo');
  image = scratch.path('web.img');
  writeRandomishImage(image, 4 * MiB, 71);
  await backUp();
  await backUp();
});

describe('a restore point deleted by hand', () => {
  let gone: { id: string; time: string };

  beforeAll(() => {
    gone = points[1];
    fs.rmSync(path.join(repo.path, 'snapshots', gone.id));
  });

  it('makes list warn, naming the guest, the id and the time', async () => {
    const r = await repo.run(['list'], { env });
    expectSuccess(r, 'list');
    const lines = warnings(r.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(gone.id);
    expect(lines[0]).toContain("guest 'web'");
    expect(lines[0]).toContain(gone.time);
    expect(lines[0]).toMatch(/gone from .* this host did not forget it/);
  });

  it('makes restore latest warn, and say which older point it restored and when it was taken', async () => {
    const out = scratch.mkdir('restore-latest');
    const r = await repo.run(['restore', 'latest', '--guest', 'web', '--to', out], { env });
    expectSuccess(r, 'restore latest');
    expect(warnings(r.stderr).join('\n')).toContain(gone.id);
    expect(r.stderr).toContain(`restored restore point ${points[0].id} of guest 'web', taken ${points[0].time}`);
    expect(await sha256File(path.join(out, 'web.img'))).toBe(points[0].sha256);
  });

  it('is not noticed by a host that never saw it (another state directory, --state-dir)', async () => {
    const r = await repo.run(['list', '--state-dir', scratch.path('other-host')], { env });
    expectSuccess(r);
    expect(r.stderr).toBe('');
  });

  it('stops warning once forgotten on this host', async () => {
    const r = await repo.run(['forget', gone.id.slice(0, 8)], { env });
    expect(expectSuccess(r, 'forget of a vanished point')).toContain('already gone');
    const list = await repo.run(['list'], { env });
    expectSuccess(list);
    expect(list.stderr).toBe('');
  });
});

describe('forget on this host', () => {
  it('removes a restore point without any warning afterwards', async () => {
    const point = await backUp();
    expectSuccess(await repo.run(['forget', point.id], { env }));
    const list = await repo.run(['list'], { env });
    expectSuccess(list);
    expect(list.stderr).toBe('');
    const out = scratch.mkdir('restore-after-forget');
    const r = await repo.run(['restore', 'latest', '--to', out], { env });
    expectSuccess(r);
    expect(warnings(r.stderr)).toEqual([]);
  });
});

describe('an older copy of the repository put in its place', () => {
  it('makes list warn about the restore points made since the copy', async () => {
    const oldCopy = scratch.path('repo-old-copy');
    await mustRun('cp', ['-a', repo.path, oldCopy]);
    const newer = await backUp();
    fs.renameSync(repo.path, scratch.path('repo-newer'));
    fs.renameSync(oldCopy, repo.path);
    const r = await repo.run(['list'], { env });
    expectSuccess(r);
    const lines = warnings(r.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(newer.id);
  });
});

describe('trouble with the record itself never stops a command', () => {
  it('a malformed record is kept aside with a warning, and a new one starts', async () => {
    const dir = path.join(env.FERRY_STATE_DIR, 'repositories');
    const [file] = fs.readdirSync(dir).filter((f) => f.endsWith('.json'));
    fs.writeFileSync(path.join(dir, file), '{"version":1,"locations":');
    const r = await repo.run(['list'], { env });
    expectSuccess(r, 'list with a malformed record');
    expect(warnings(r.stderr).join('\n')).toMatch(/record of restore points was malformed and is kept as \S+\.malformed-\d+/);
    expect(fs.readdirSync(dir).some((f) => f.includes('.malformed-'))).toBe(true);
    const again = await repo.run(['list'], { env });
    expect(again.stderr).toBe('');
  });

  it('a state directory that cannot be written does not stop a backup: it says so', async () => {
    const notADirectory = scratch.path('state-is-a-file');
    fs.writeFileSync(notADirectory, '');
    const r = await repo.run(['backup', '--guest', 'web', image], { env: { FERRY_STATE_DIR: notADirectory } });
    expectSuccess(r, 'backup with an unwritable state directory');
    expect(warnings(r.stderr).join('\n')).toMatch(/cannot save this host's record of restore points/);
  });
});
