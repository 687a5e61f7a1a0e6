// `ferry site restore --seed`: a target that already holds an older copy of
// the disk (a warm standby, an earlier restore) is compared chunk by chunk
// with the restore point, and only what differs is written — on this machine
// and on a host reached over ssh — leaving the disk bit-exact.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT, TestRepo, expectSuccess, parseJson, sha256File, useScratch, writeRandomishImage } from '../support';
import { type SshHostSet, startSshHosts } from '../support/sshHosts';

const scratch = useScratch('site-restore-seed');
const MiB = 1024 * 1024;
const GUESTS = { seedl01: 'here', seedr01: 'new01' } as const;
/** Where the second backup differs from the first: three small overwrites, and one data MiB turned to zeros. */
const CHANGES = [5 * MiB + 1000, 37 * MiB + 4096, 70 * MiB + 12345].map((at) => ({ at, bytes: 4096 }));
let repo: TestRepo;
let hosts: SshHostSet;
let hostsToml: string;
const localPool = scratch.mkdir('local-pool');
const images: Record<string, string> = {};

interface Report { guest: string; ok: boolean; error?: string; writtenBytes: number; disks: Array<{ target: string; writtenBytes: number; comparedBytes?: number }> }

beforeAll(async () => {
  hosts = await startSshHosts(scratch, ['new01']);
  repo = await TestRepo.init(scratch, 'repo');
  for (const [i, guest] of Object.keys(GUESTS).entries()) {
    images[guest] = scratch.path(`${guest}.img`);
    writeRandomishImage(images[guest]!, 96 * MiB, 40 + i, { holes: 0.3 });
    await repo.backup(guest, [images[guest]!]);
  }
  const h = hosts.host('new01');
  hostsToml = scratch.path('hosts.toml');
  fs.writeFileSync(hostsToml, [
    `ssh_config = "${hosts.configFile}"`,
    `[[host]]\nname = "new01"\naddress = "${h.url}"\nhypervisor = "qemu"\naccel = "tcg"\nmemory = "2G"\ncpus = 2\nconfig_dir = "${path.join(h.root, 'etc', 'ferry')}"\n[[host.pool]]\nname = "images"\ntype = "dir"\npath = "${h.pool}"\n`,
    `[[host]]\nname = "here"\naddress = "local"\nhypervisor = "qemu"\naccel = "tcg"\nmemory = "2G"\ncpus = 2\nconfig_dir = "${scratch.path('local-etc')}"\n[[host.pool]]\nname = "images"\ntype = "dir"\npath = "${localPool}"\n`,
    ...Object.entries(GUESTS).map(([g, host]) => `[guest."${g}"]\npin = "${host}"\n`),
  ].join('\n'));
  // The first restore: the older copies the seeded restore will start from.
  expectSuccess(await repo.run(['site', 'plan', '--hosts', hostsToml, '--out', scratch.path('first.json')]));
  expectSuccess(await repo.run(['site', 'restore', '--no-start', '--plan', scratch.path('first.json')]));
});

const targetOf = (guest: keyof typeof GUESTS) => path.join(GUESTS[guest] === 'here' ? localPool : hosts.host('new01').pool, guest, `${guest}.img`);

/** A data MiB of the image (not a hole), to be zeroed in the second backup. */
function dataMiB(file: string): number {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(MiB);
    for (let m = 80; m > 0; m--) {
      fs.readSync(fd, buf, 0, MiB, m * MiB);
      if (buf.some((b) => b !== 0) && !CHANGES.some((c) => Math.floor(c.at / MiB) === m)) return m;
    }
  } finally {
    fs.closeSync(fd);
  }
  throw new Error(`no data MiB in ${file}`);
}

/** Bytes at which two equally long files differ. */
function differingBytes(a: string, b: string): number {
  const x = fs.readFileSync(a);
  const y = fs.readFileSync(b);
  let n = 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) n++;
  return n;
}

describe('ferry site restore --seed', () => {
  it('writes only the regions that differ from the older copy on the target, locally and over ssh, bit-exact', async () => {
    for (const guest of Object.keys(GUESTS) as Array<keyof typeof GUESTS>) {
      expect(await sha256File(targetOf(guest))).toBe(await sha256File(images[guest]!));
      const fd = fs.openSync(images[guest]!, 'r+');
      for (const [i, c] of CHANGES.entries()) fs.writeSync(fd, Buffer.alloc(c.bytes, 0xa0 + i), 0, c.bytes, c.at);
      fs.writeSync(fd, Buffer.alloc(MiB), 0, MiB, dataMiB(images[guest]!) * MiB);
      fs.closeSync(fd);
      await repo.backup(guest, [images[guest]!]);
    }
    expectSuccess(await repo.run(['site', 'plan', '--hosts', hostsToml, '--out', scratch.path('second.json')]));
    const inodes = Object.fromEntries(Object.keys(GUESTS).map((g) => [g, fs.statSync(targetOf(g as keyof typeof GUESTS)).ino]));
    const olderCopies = Object.fromEntries(Object.keys(GUESTS).map((g) => {
      const copy = scratch.path(`${g}.older`);
      fs.copyFileSync(targetOf(g as keyof typeof GUESTS), copy);
      return [g, copy];
    }));

    const reports = parseJson<Report[]>(await repo.run(['site', 'restore', '--no-start', '--plan', scratch.path('second.json'), '--seed', '--json']));
    for (const guest of Object.keys(GUESTS) as Array<keyof typeof GUESTS>) {
      const r = reports.find((x) => x.guest === guest)!;
      expect(r.ok, r.error).toBe(true);
      expect(await sha256File(targetOf(guest)), guest).toBe(await sha256File(images[guest]!));
      expect(fs.readdirSync(path.dirname(targetOf(guest)))).toEqual([`${guest}.img`]);
      // Every byte of the disk was compared; what was written covers what changed and little more:
      // the three overwritten pieces each within at most three chunks (1 MiB at most each), and the zeroed MiB.
      expect(r.disks[0]!.comparedBytes).toBe(96 * MiB);
      const changed = differingBytes(olderCopies[guest]!, targetOf(guest));
      expect(r.writtenBytes).toBeGreaterThanOrEqual(changed);
      expect(r.writtenBytes).toBeLessThanOrEqual(CHANGES.length * 3 * MiB + MiB);
      expect(r.writtenBytes).toBeGreaterThanOrEqual(MiB);
      // Updated in place (renamed aside while it changed, and back), not written anew.
      expect(fs.statSync(targetOf(guest)).ino).toBe(inodes[guest]);
      console.log(`${guest} (${GUESTS[guest]}): ${r.writtenBytes} bytes written, ${r.disks[0]!.comparedBytes} compared, ${changed} bytes differ`);
    }
  });

  it('refuses --seed with --force in one line', async () => {
    const both = await repo.run(['site', 'restore', '--no-start', '--plan', scratch.path('second.json'), '--seed', '--force']);
    expect(both.code).toBe(EXIT.usage);
    expect(both.stderr.trim()).toBe('ferry: --seed and --force: choose one (--seed keeps and updates what is there, --force overwrites it)');
  });
});
