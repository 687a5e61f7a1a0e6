// A site restore killed at any moment and run again finishes, writes only
// what was missing, and never leaves a half-written disk under its final name.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { TestRepo, expectSuccess, ferryStateDir, parseJson, sha256File, useScratch, writeRandomishImage } from '../support';
import { type SshHostSet, startSshHosts } from '../support/sshHosts';

const scratch = useScratch('site-restore-resume');
const MiB = 1024 * 1024;
let repo: TestRepo;
let hosts: SshHostSet;
let image: string;
let sha: string;
let planFile: string;

interface Report { guest: string; ok: boolean; writtenBytes: number; disks: Array<{ writtenBytes: number; resumedAfterRegions?: number; alreadyRestored?: boolean }> }

beforeAll(async () => {
  hosts = await startSshHosts(scratch, ['new01']);
  repo = await TestRepo.init(scratch, 'repo');
  image = scratch.path('big01.img');
  writeRandomishImage(image, 320 * MiB, 77); // ten 32 MiB regions: three batches to the remote host
  sha = await sha256File(image);
  await repo.backup('big01', [image]);
  const host = hosts.host('new01');
  const hostsToml = scratch.path('hosts.toml');
  fs.writeFileSync(hostsToml, `ssh_config = "${hosts.configFile}"\n[[host]]\nname = "new01"\naddress = "${host.url}"\nhypervisor = "qemu"\naccel = "tcg"\nmemory = "4G"\ncpus = 2\nconfig_dir = "${path.join(host.root, 'etc', 'ferry')}"\n[[host.pool]]\nname = "images"\ntype = "dir"\npath = "${host.pool}"\n`);
  planFile = scratch.path('plan.json');
  expectSuccess(await repo.run(['site', 'plan', '--hosts', hostsToml, '--out', planFile]));
});

const target = () => path.join(hosts.host('new01').pool, 'big01', 'big01.img');

/**
 * SIGKILL ferry after `ms`. Its ssh sessions to the host outlive it and finish
 * what they were sent (a fsync, a rename of a complete disk): wait for them,
 * as the next run on a real site would find the host after them.
 */
async function killAfter(ms: number, extra: string[] = ['--force']): Promise<void> {
  const run = repo.spawn(['site', 'restore', '--no-start', '--plan', planFile, ...extra]);
  await new Promise((r) => setTimeout(r, ms));
  run.child.kill('SIGKILL');
  await run.done;
  await sshSessionsGone();
}

async function sshSessionsGone(): Promise<void> {
  const address = hosts.host('new01').address;
  for (let i = 0; i < 1200; i++) {
    const running = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).some((p) => {
      try {
        const cmd = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8');
        const state = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
        return cmd.startsWith('ssh\0') && cmd.includes(`root@${address}\0`) && state.slice(state.lastIndexOf(')') + 2)[0] !== 'Z';
      } catch {
        return false; // gone meanwhile
      }
    });
    if (!running) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`ssh sessions to ${address} still running a minute after ferry was killed`);
}

describe('site restore, killed and run again', () => {
  it('never leaves a half-written disk under its final name, and a re-run completes bit-exact', async () => {
    for (const ms of [400, 1500, 3000, 5000]) {
      await killAfter(ms);
      // Either the final file is complete and right, or it is not there at all.
      if (fs.existsSync(target())) expect(await sha256File(target()), `after a kill at ${ms} ms`).toBe(sha);
    }
    fs.rmSync(target(), { force: true });
    const report = parseJson<Report[]>(await repo.run(['site', 'restore', '--no-start', '--plan', planFile, '--json']));
    expect(report[0]!.ok).toBe(true);
    expect(await sha256File(target())).toBe(sha);
    expect(fs.readdirSync(path.dirname(target()))).toEqual(['big01.img']);
  });

  it('continues after the regions a killed run wrote and fsynced, writing only the rest', async () => {
    fs.rmSync(path.dirname(target()), { recursive: true, force: true });
    const full = parseJson<Report[]>(await repo.run(['site', 'restore', '--no-start', '--plan', planFile, '--json']))[0]!;
    fs.rmSync(path.dirname(target()), { recursive: true, force: true });
    // Kill once the journal says a batch is durable on the host.
    const run = repo.spawn(['site', 'restore', '--no-start', '--plan', planFile]);
    const journalDir = path.join(ferryStateDir(), 'site-restore'); // FERRY_STATE_DIR of every ferry this file runs
    // Only the records themselves: a `.tmp-PID` file is written before the rename that makes it the record.
    const durable = () => fs.existsSync(journalDir) && fs.readdirSync(journalDir).filter((f) => f.endsWith('.json')).some((f) => {
      try {
        const r = JSON.parse(fs.readFileSync(path.join(journalDir, f), 'utf8')) as { disk: string; regionsDone: number; complete: boolean };
        return r.disk === 'big01.img' && !r.complete && r.regionsDone >= 4;
      } catch {
        return false; // being replaced right now
      }
    });
    for (let i = 0; i < 600 && !durable(); i++) await new Promise((r) => setTimeout(r, 50));
    expect(durable(), 'the run checkpointed a batch').toBe(true);
    run.child.kill('SIGKILL');
    await run.done;
    await sshSessionsGone();
    expect(fs.existsSync(target())).toBe(false);
    const resumed = parseJson<Report[]>(await repo.run(['site', 'restore', '--no-start', '--plan', planFile, '--json']))[0]!;
    expect(resumed.ok).toBe(true);
    expect(resumed.disks[0]!.resumedAfterRegions).toBeGreaterThanOrEqual(4);
    expect(resumed.writtenBytes).toBeLessThan(full.writtenBytes);
    expect(await sha256File(target())).toBe(sha);
    // Run once more: the disk is complete and unchanged, so nothing is written.
    const again = parseJson<Report[]>(await repo.run(['site', 'restore', '--no-start', '--plan', planFile, '--json']))[0]!;
    expect(again.disks[0]).toMatchObject({ alreadyRestored: true, writtenBytes: 0 });
  });
});
