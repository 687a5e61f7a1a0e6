// `ferry backup --all` over guests described in ferry.conf: one guest's
// failure never stops the others, and the summary and exit code say which
// failed and why. Shut-off guests are read in place.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { sha256File, useScratch, writeRandomishImage } from '../support';
import { ferry, expectSuccess, FAST_KDF } from '../support/ferry';

const MiB = 1024 * 1024;
const scratch = useScratch('fleet-static');
const env = { FERRY_PASSWORD: 'static-fleet' };
let repo: string;
let conf: string;
const images: Record<string, string> = {};

beforeAll(async () => {
  repo = scratch.path('repo');
  expectSuccess(await ferry(['init', '--repo', repo, ...FAST_KDF], { env }));
  for (const [i, name] of ['app01', 'app02'].entries()) {
    images[name] = scratch.path(`${name}.img`);
    writeRandomishImage(images[name], 24 * MiB, 100 + i);
  }
  const guest = (name: string, disk: string) => `[[static.guest]]\nname = "${name}"\ndisks = [${JSON.stringify(disk)}]\n`;
  conf = scratch.path('ferry.conf');
  fs.writeFileSync(conf, [
    `repository = ${JSON.stringify(repo)}`,
    guest('app01', images.app01),
    guest('broken01', scratch.path('no-such-disk.img')),
    guest('app02', images.app02),
  ].join('\n'));
});

describe('backup --all with a failing guest', () => {
  it('backs up every other guest, names the failed one and why, and exits 11', async () => {
    const r = await ferry(['backup', '--all', '--config', conf, '--concurrency', '2', '--work-dir', scratch.mkdir('work')], { env });
    expect(r.code).toBe(11);
    expect(r.stdout).toMatch(/^ok +app01 \(static, none\)/m);
    expect(r.stdout).toMatch(/^ok +app02 \(static, none\)/m);
    expect(r.stdout).toMatch(/^FAILED broken01 \(static\): .*no-such-disk\.img/m);
    const lastLine = r.stderr.trim().split('\n').pop()!;
    expect(lastLine).toMatch(/^ferry: 1 of 3 guest\(s\) failed: broken01: /);
  });

  it('the guests that succeeded restore bit-exact', async () => {
    const list = JSON.parse(expectSuccess(await ferry(['list', '--repo', repo, '--json'], { env }))) as { id: string; guest: string }[];
    expect(list.map((p) => p.guest).sort()).toEqual(['app01', 'app02']);
    for (const p of list) {
      const out = scratch.mkdir(`restore-${p.guest}`);
      expectSuccess(await ferry(['restore', '--repo', repo, p.id, '--to', out], { env }));
      expect(await sha256File(path.join(out, 'disk0.img'))).toBe(await sha256File(images[p.guest]));
    }
  });

  it('a config typo is one line naming the file and line, before anything is touched', async () => {
    const bad = scratch.path('typo.conf');
    fs.writeFileSync(bad, `repository = ${JSON.stringify(repo)}\nconcurency = 2\n`);
    const r = await ferry(['backup', '--all', '--config', bad], { env });
    expect(r.code).toBe(7);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/typo\.conf:2: .*concurency/);
  });

  it('refuses to run beside another backup --all on the same host, and takes over a stale run lock', async () => {
    const runDir = scratch.mkdir('run');
    fs.writeFileSync(path.join(runDir, 'backup-all.pid'), `${process.pid}\n`); // a live holder: this test process
    const busy = await ferry(['backup', '--all', '--config', conf], { env: { ...env, FERRY_RUN_DIR: runDir } });
    expect(busy.code).toBe(5);
    expect(busy.stderr).toMatch(new RegExp(`another 'ferry backup --all' \\(pid ${process.pid}\\) is running on this host`));
    fs.writeFileSync(path.join(runDir, 'backup-all.pid'), '2147483646\n'); // a holder that is gone
    const after = await ferry(['backup', '--all', '--config', conf, '--guest', 'app*', '--work-dir', scratch.mkdir('work2')], { env: { ...env, FERRY_RUN_DIR: runDir } });
    expect(after.code).toBe(0);
    expect(fs.existsSync(path.join(runDir, 'backup-all.pid'))).toBe(false);
  });
});
