// `ferry site restore --pull`: each ssh host runs its own ferry (here the
// built one, by absolute path: the test hosts share this machine's file
// system) and reads its guests from the repository itself, which the shared
// file system makes a "shared mount". The controller sends only the plan and
// the passphrase over ssh: the host's network counters show it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT, FERRY_BIN, TestRepo, expectSuccess, parseJson, sha256File, useScratch, writeRandomishImage } from '../support';
import { mustRun } from '../support/system';
import { type SshHostSet, startSshHosts } from '../support/sshHosts';

const scratch = useScratch('site-restore-pull');
const MiB = 1024 * 1024;
let repo: TestRepo;
let hosts: SshHostSet;
const originals: Record<string, string> = {};

interface Report { guest: string; host: string; ok: boolean; error?: string; writtenBytes: number; pulledFrom?: string; disks: Array<{ writtenBytes: number; alreadyRestored?: boolean }> }

/** The host's own ferry: the built one, its journal in the host's own state directory. */
function ferryOn(host: string): string {
  return `FERRY_STATE_DIR=${stateDirOf(host)} ${process.execPath} ${FERRY_BIN}`;
}

function stateDirOf(host: string): string {
  return path.join(hosts.host(host).root, 'var', 'lib', 'ferry');
}

const diskOf = (host: string, guest: string) => path.join(hosts.host(host).pool, guest, `${guest}.img`);

/** new01 gets web01, new02 gets app01; `ferry` per host as given. */
function writeHosts(name: string, ferry: Record<string, string>): string {
  const file = scratch.path(`${name}.toml`);
  fs.writeFileSync(file, [
    `ssh_config = "${hosts.configFile}"`,
    ...['new01', 'new02'].map((n) => `[[host]]\nname = "${n}"\naddress = "${hosts.host(n).url}"\nhypervisor = "xen"\nmemory = "3G"\ncpus = 4\nconfig_dir = "${path.join(hosts.host(n).root, 'etc', 'xen')}"\nferry = ${JSON.stringify(ferry[n])}\n[[host.pool]]\nname = "images"\ntype = "dir"\npath = "${hosts.host(n).pool}"\n`),
    '[guest."web01"]\npin = "new01"\n',
    '[guest."app01"]\npin = "new02"\n',
  ].join('\n'));
  return file;
}

/** Bytes the host's network interface has received: whatever the controller sent it, ssh included. */
async function receivedBy(host: string): Promise<number> {
  return Number(await mustRun('ip', ['netns', 'exec', hosts.host(host).namespace, 'cat', '/sys/class/net/eth0/statistics/rx_bytes']));
}

function clearHosts(): void {
  for (const h of ['new01', 'new02']) {
    for (const dir of [hosts.host(h).pool, path.join(hosts.host(h).root, 'etc')]) {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    fs.mkdirSync(hosts.host(h).pool);
  }
}

/** Pids of `site restore-local` runs on any test host (they share this machine's pid space). */
function remoteRuns(): number[] {
  return fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('\0site\0restore-local\0');
    } catch {
      return false; // gone meanwhile
    }
  }).map(Number);
}

/** Pids whose command line or environment holds `text`. */
function processesShowing(text: string): number[] {
  return fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(text) || fs.readFileSync(`/proc/${p}/environ`, 'utf8').includes(text);
    } catch {
      return false; // gone meanwhile
    }
  }).map(Number);
}

beforeAll(async () => {
  hosts = await startSshHosts(scratch, ['new01', 'new02']);
  repo = await TestRepo.init(scratch, 'repo');
  for (const [name, size, seed] of [['web01', 48, 5], ['app01', 24, 6]] as const) {
    const image = scratch.path(`${name}.img`);
    writeRandomishImage(image, size * MiB, seed);
    const conf = scratch.path(`${name}.cfg`);
    fs.writeFileSync(conf, `name = "${name}"\nmemory = 512\nvcpus = 1\ndisk = [ 'file:${image},xvda,w' ]\n`);
    await repo.backup(name, [image], ['--config', conf]);
    originals[name] = await sha256File(image);
  }
});

describe('ferry site restore --pull', () => {
  it('--dry-run prints the command each host would run, and what that ferry would do there, and writes nothing', async () => {
    const hostsToml = writeHosts('dry', { new01: ferryOn('new01'), new02: ferryOn('new02') });
    const out = expectSuccess(await repo.run(['site', 'restore', '--pull', '--hosts', hostsToml, '--dry-run']));
    for (const [host, guest] of [['new01', 'web01'], ['new02', 'app01']] as const) {
      expect(out).toContain(`${host}: would run ssh -F ${hosts.configFile} `);
      expect(out).toContain(` -- '${ferryOn(host)} site restore-local --plan -' for ${guest}, reading ${repo.path} there (the plan and the passphrase on its stdin)`);
      // The host's own ferry says what it would create and write there.
      expect(out).toContain(`${host}: create ${diskOf(host, guest)}.ferry-partial (sparse, `);
      expect(fs.readdirSync(hosts.host(host).pool)).toEqual([]);
    }
    expect(out).not.toContain('correct horse'); // the passphrase is never printed
  });

  it('restores bit-exact onto the host, which read the repository itself: the controller sent it no disk bytes', async () => {
    clearHosts();
    const hostsToml = writeHosts('pull', { new01: ferryOn('new01'), new02: ferryOn('new02') });
    const before = await receivedBy('new01');
    const report = parseJson<Report[]>(await repo.run(['site', 'restore', '--pull', '--no-start', '--hosts', hostsToml, '--guest', 'web01', '--json']));
    const received = (await receivedBy('new01')) - before;
    expect(report).toMatchObject([{ guest: 'web01', host: 'new01', ok: true, pulledFrom: repo.path }]);
    expect(await sha256File(diskOf('new01', 'web01'))).toBe(originals.web01);
    expect(report[0]!.writtenBytes).toBeGreaterThan(24 * MiB);
    // Only ssh, the plan and the report crossed the network: far less than one 32 MiB region.
    expect(received).toBeLessThan(MiB);
    // The host keeps its own journal; its config was written there too.
    expect(fs.readdirSync(path.join(stateDirOf('new01'), 'site-restore')).some((f) => f.endsWith('.json'))).toBe(true);
    expect(fs.readFileSync(path.join(hosts.host('new01').root, 'etc', 'xen', 'web01.cfg'), 'utf8')).toContain(`'file:${diskOf('new01', 'web01')},xvda,w'`);

    // A restore without --pull streams the disk through ssh: the counter sees every byte of it.
    const before2 = await receivedBy('new02');
    const streamed = parseJson<Report[]>(await repo.run(['site', 'restore', '--no-start', '--hosts', hostsToml, '--guest', 'app01', '--json']));
    expect(streamed[0]!.writtenBytes).toBeGreaterThan(8 * MiB);
    expect((await receivedBy('new02')) - before2).toBeGreaterThan(streamed[0]!.writtenBytes);
  });

  it('a host without ferry fails in one line saying what to do; the other host completes', async () => {
    clearHosts();
    const hostsToml = writeHosts('missing', { new01: ferryOn('new01'), new02: '/nonexistent/bin/ferry' });
    const r = await repo.run(['site', 'restore', '--pull', '--no-start', '--hosts', hostsToml, '--json']);
    expect(r.code).toBe(EXIT.someGuestsFailed);
    const report = JSON.parse(r.stdout) as Report[];
    expect(report.find((g) => g.guest === 'web01')).toMatchObject({ ok: true, pulledFrom: repo.path });
    expect(await sha256File(diskOf('new01', 'web01'))).toBe(originals.web01);
    const app01 = report.find((g) => g.guest === 'app01')!;
    expect(app01.ok).toBe(false);
    expect(app01.error).toMatch(/^host new02 has no ferry to run \(\w+: (line )?(1: )?\/nonexistent\/bin\/ferry: (No such file or directory|not found)\): install ferry there, or set ferry = "\/path\/to\/ferry" for it in new02's \[\[host\]\] of the hosts file, or restore without --pull$/);
    expect(fs.readdirSync(hosts.host('new02').pool)).toEqual([]);
  });

  it('a host that reaches another repository is refused in one line', async () => {
    clearHosts();
    const other = await TestRepo.init(scratch, 'other-repo', { password: 'correct horse repo' }); // the same passphrase: only the id tells them apart
    const hostsToml = writeHosts('elsewhere', { new01: ferryOn('new01'), new02: ferryOn('new02') });
    const text = fs.readFileSync(hostsToml, 'utf8').replace('[[host]]', `repository = "${other.path}"\n[[host]]`);
    fs.writeFileSync(hostsToml, text);
    const r = await repo.run(['site', 'restore', '--pull', '--no-start', '--hosts', hostsToml, '--guest', 'app01', '--json']);
    expect(r.code).toBe(EXIT.someGuestsFailed);
    const [app01] = JSON.parse(r.stdout) as Report[];
    expect(app01!.error).toMatch(/^ferry on host new02 stopped before it restored anything \(exit \d+: ferry: .* is another repository than the controller's; set repository = "…" for new02 in the hosts file to where it reaches that one\); /);
    expect(fs.readdirSync(hosts.host('new02').pool)).toEqual([]);
  });

  it('SIGKILL of the controller stops the host\'s run too; a re-run completes, and one more writes nothing', async () => {
    clearHosts();
    const hostsToml = writeHosts('kill', { new01: ferryOn('new01'), new02: ferryOn('new02') });
    const args = ['site', 'restore', '--pull', '--no-start', '--hosts', hostsToml, '--guest', 'web01'];
    const run = repo.spawn(args);
    // Kill once the host's ferry is writing the disk.
    const partial = `${diskOf('new01', 'web01')}.ferry-partial`;
    for (let i = 0; i < 1200 && !fs.existsSync(partial) && !fs.existsSync(diskOf('new01', 'web01')); i++) await new Promise((r) => setTimeout(r, 10));
    // Meanwhile the passphrase is in no process's arguments or environment, here or on the host.
    expect(processesShowing('correct horse repo')).toEqual([]);
    run.child.kill('SIGKILL');
    await run.done;
    // Its ssh session closes, so the host's run sees its stdin end and stops (it does not write on alone).
    for (let i = 0; i < 600 && remoteRuns().length > 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(remoteRuns()).toEqual([]);
    if (fs.existsSync(diskOf('new01', 'web01'))) expect(await sha256File(diskOf('new01', 'web01'))).toBe(originals.web01);
    const again = parseJson<Report[]>(await repo.run([...args, '--json']));
    expect(again[0]!.ok).toBe(true);
    expect(await sha256File(diskOf('new01', 'web01'))).toBe(originals.web01);
    expect(fs.readdirSync(path.dirname(diskOf('new01', 'web01')))).toEqual(['web01.img']);
    const once = parseJson<Report[]>(await repo.run([...args, '--json']));
    expect(once[0]!.disks[0]).toMatchObject({ alreadyRestored: true, writtenBytes: 0 });
  });
});
