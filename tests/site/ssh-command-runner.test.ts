// Commands on a target host over the system ssh: real sshd in a network
// namespace (tests/support/sshHosts.ts), real df on that host.
import * as fs from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { ExecFileCommandRunner } from '../../src/hypervisor/commandRunner';
import { HypervisorError } from '../../src/errors';
import { parseSiteHosts } from '../../src/site/hostsFile';
import { measurePool } from '../../src/site/poolCapacity';
import { SshCommandRunner, hostCommandRunner } from '../../src/site/sshCommandRunner';
import { useScratch } from '../support';
import { type SshHostSet, startSshHosts } from '../support/sshHosts';

const scratch = useScratch('ssh-command-runner');
let hosts: SshHostSet;

beforeAll(async () => {
  hosts = await startSshHosts(scratch, ['new01']);
});

function runnerFor(name: string): SshCommandRunner {
  const host = hosts.host(name);
  return new SshCommandRunner({ kind: 'ssh', destination: `root@${host.address}` }, new ExecFileCommandRunner(), hosts.configFile);
}

describe('commands on a host over ssh', () => {
  it('runs argv on the host, every argument arriving as it was given', async () => {
    const tricky = ["it's", 'a b', '$HOME', '`id`', '; rm -rf /', '*', ''];
    const r = await runnerFor('new01').run('printf', ['%s|', ...tricky]);
    expect(r).toMatchObject({ code: 0, stdout: `${tricky.join('|')}|` });
    expect((await runnerFor('new01').run('hostname', [])).stdout.trim()).toBe('new01');
  });

  it('passes the exit status and stderr of the remote command through', async () => {
    const r = await runnerFor('new01').run('ls', ['/no/such/path']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/No such file or directory/);
  });

  it('measures a dir pool on the host from a hosts file that names the ssh config', async () => {
    const host = hosts.host('new01');
    fs.writeFileSync(`${host.pool}/marker`, 'x');
    const site = parseSiteHosts(
      `ssh_config = "${hosts.configFile}"\n[[host]]\nname = "new01"\naddress = "${host.url}"\nhypervisor = "qemu"\nmemory = "4G"\ncpus = 2\n[[host.pool]]\nname = "images"\ntype = "dir"\npath = "${host.pool}"\n`,
      scratch.path('hosts.toml'),
    );
    const def = site.hosts[0]!;
    const capacity = await measurePool(hostCommandRunner(def, new ExecFileCommandRunner(), site.sshConfig), def, def.pools[0]!);
    expect(capacity).toMatchObject({ host: 'new01', pool: 'images', sparse: true });
    expect(capacity.freeBytes).toBeGreaterThan(0);
  });

  it('says in one line when a host cannot be reached', async () => {
    // An address of the hosts' subnet where nothing listens: ssh gives up with its own exit status 255.
    const dead = hosts.host('new01').address.replace(/\.\d+$/, '.250');
    const runner = new SshCommandRunner({ kind: 'ssh', destination: `root@${dead}` }, new ExecFileCommandRunner(), hosts.configFile);
    const err = await runner.run('true', []).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HypervisorError);
    expect((err as Error).message).toMatch(new RegExp(`^cannot reach root@${dead.replace(/\./g, '\\.')} over ssh: .+; check the host's address in the hosts file and that \`ssh root@${dead.replace(/\./g, '\\.')}\` works without a prompt$`));
  });
});
