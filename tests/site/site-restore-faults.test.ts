// Faults in the middle of a site restore (issue 7, "Bad input and faults"):
// the pool filling up (ENOSPC) and the ssh connection to a host dropping
// mid-stream. The guest fails with its reason, nothing half-written lies
// under a final name, and a re-run once the fault is gone finishes bit-exact.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT, TestRepo, expectSuccess, parseJson, sha256File, useScratch, writeRandomishImage } from '../support';
import { mountTmpfs } from '../support/mounts';
import { type SshHostSet, startSshHosts } from '../support/sshHosts';

const scratch = useScratch('site-restore-faults');
const MiB = 1024 * 1024;
let repo: TestRepo;
let hosts: SshHostSet;
let sha: string;
let fullPool: string;
let localPlan: string;
let remotePlan: string;

interface Report { guest: string; ok: boolean; error?: string; writtenBytes: number }

beforeAll(async () => {
  hosts = await startSshHosts(scratch, ['new01']);
  repo = await TestRepo.init(scratch, 'repo');
  const image = scratch.path('big01.img');
  writeRandomishImage(image, 160 * MiB, 91, { holes: 0.1, text: 0.1 }); // ~130 MiB of data over five regions
  sha = await sha256File(image);
  await repo.backup('big01', [image]);
  fullPool = await mountTmpfs(scratch, 'small-pool', 200);
  const host = hosts.host('new01');
  const common = (name: string, address: string, pool: string, configDir: string) =>
    `[[host]]\nname = "${name}"\naddress = "${address}"\nhypervisor = "qemu"\naccel = "tcg"\nmemory = "4G"\ncpus = 2\nconfig_dir = "${configDir}"\n[[host.pool]]\nname = "images"\ntype = "dir"\npath = "${pool}"\n`;
  const localHosts = scratch.path('local-hosts.toml');
  fs.writeFileSync(localHosts, common('here', 'local', fullPool, scratch.mkdir('local-etc')));
  const remoteHosts = scratch.path('remote-hosts.toml');
  fs.writeFileSync(remoteHosts, `ssh_config = "${hosts.configFile}"\n${common('new01', host.url, host.pool, path.join(host.root, 'etc', 'ferry'))}`);
  localPlan = scratch.path('local-plan.json');
  remotePlan = scratch.path('remote-plan.json');
  // Planned while the pools have room: the space goes (or the link drops) afterwards, as on the day.
  expectSuccess(await repo.run(['site', 'plan', '--hosts', localHosts, '--out', localPlan]));
  expectSuccess(await repo.run(['site', 'plan', '--hosts', remoteHosts, '--out', remotePlan]));
});

function filesUnder(dir: string): string[] {
  return fs.existsSync(dir) ? fs.readdirSync(dir, { recursive: true }).map(String) : [];
}

describe('site restore, a fault mid-stream', () => {
  it('a pool that fills up: the guest fails naming the full disk, no final file, and the re-run after space is freed finishes', async () => {
    // Leave 40 MiB of the 200: the disk's ~130 MiB of data cannot fit.
    const filler = path.join(fullPool, 'filler');
    fs.writeFileSync(filler, Buffer.alloc(160 * MiB, 1));
    const r = await repo.run(['site', 'restore', '--no-start', '--plan', localPlan, '--json']);
    expect(r.code, r.stderr).toBe(EXIT.someGuestsFailed);
    const [report] = JSON.parse(r.stdout) as Report[];
    expect(report).toMatchObject({ guest: 'big01', ok: false });
    expect(report!.error).toMatch(/no space left on device/i);
    expect(report!.error!.split('\n')).toHaveLength(1);
    const target = path.join(fullPool, 'big01', 'big01.img');
    expect(fs.existsSync(target)).toBe(false);

    fs.rmSync(filler);
    const again = parseJson<Report[]>(await repo.run(['site', 'restore', '--no-start', '--plan', localPlan, '--json']));
    expect(again[0]!.ok).toBe(true);
    expect(await sha256File(target)).toBe(sha);
    expect(filesUnder(path.join(fullPool, 'big01'))).toEqual(['big01.img']);
  });

  it('an ssh connection that drops mid-stream: the guest fails naming the host, no final file, and the re-run finishes', async () => {
    const host = hosts.host('new01');
    const target = path.join(host.pool, 'big01', 'big01.img');
    const run = repo.spawn(['site', 'restore', '--no-start', '--plan', remotePlan, '--json']);
    // Drop the link once bytes are arriving: kill the ssh clients ferry started (their sshd ends the session).
    const partial = () => filesUnder(path.dirname(target)).find((f) => f.includes('partial'));
    const arriving = () => {
      const p = partial();
      return p !== undefined && fs.statSync(path.join(path.dirname(target), p)).blocks > 0;
    };
    for (let i = 0; i < 1200 && !arriving(); i++) await new Promise((r) => setTimeout(r, 50));
    expect(arriving(), 'the restore started writing on the host').toBe(true);
    const killed = sshClientsOf(run.child.pid!);
    for (const pid of killed) process.kill(pid, 'SIGKILL');
    expect(killed.length).toBeGreaterThan(0);
    const r = await run.done;
    expect(r.code, r.stderr).toBe(EXIT.someGuestsFailed);
    const [report] = JSON.parse(r.stdout) as Report[];
    expect(report).toMatchObject({ guest: 'big01', ok: false });
    expect(report!.error).toContain('new01');
    expect(report!.error!.split('\n')).toHaveLength(1);
    expect(fs.existsSync(target)).toBe(false);

    const again = parseJson<Report[]>(await repo.run(['site', 'restore', '--no-start', '--plan', remotePlan, '--json']));
    expect(again[0]!.ok).toBe(true);
    expect(await sha256File(target)).toBe(sha);
    expect(filesUnder(path.dirname(target))).toEqual(['big01.img']);
  });
});

/** The `ssh` processes whose parent is `pid` (the writers to the host). */
function sshClientsOf(pid: number): number[] {
  return fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).flatMap((p) => {
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const cmd = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8');
      return ppid === pid && cmd.startsWith('ssh\0') ? [Number(p)] : [];
    } catch {
      return []; // gone meanwhile
    }
  });
}
