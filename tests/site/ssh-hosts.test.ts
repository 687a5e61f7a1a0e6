// The multi-host harness itself (tests/support/sshHosts.ts): fresh hosts made
// of network namespaces running real sshd, reached with the system ssh
// through a generated config, and removed completely afterwards, guests
// started on them included.
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildBootableGuest, waitForGuestIdentity } from '../support/bootableGuest';
import { useScratch } from '../support/scratch';
import { processIsRunning, removeLeftoverHosts, startSshHosts, type SshHostSet } from '../support/sshHosts';
import { mustRun, runCommand } from '../support/system';

const scratch = useScratch('ssh-hosts');
let set: SshHostSet;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const netnsList = async () => (await mustRun('ip', ['netns', 'list'])).split('\n').map((l) => l.split(' ')[0]);
const alive = processIsRunning;

beforeAll(async () => {
  set = await startSshHosts(scratch, ['new01', 'new02']);
});

describe('test hosts over ssh', () => {
  it('runs each command inside its own host: its address, its hostname, its network namespace', async () => {
    const [a, b] = set.hosts;
    const ourNet = fs.readlinkSync('/proc/self/ns/net');
    for (const [me, other] of [[a!, b!], [b!, a!]]) {
      const out = await set.ssh(me.name, 'hostname; readlink /proc/self/ns/net; ip -o -4 addr show');
      const [hostname, netns, ...addrs] = out.trim().split('\n');
      expect(hostname).toBe(me.name);
      expect(netns).not.toBe(ourNet);
      expect(addrs.join('\n')).toContain(`inet ${me.address}/24`);
      expect(addrs.join('\n')).not.toContain(other.address);
    }
  });

  it('works with the plain system ssh and the generated config, without prompts', async () => {
    // BatchMode in the config: a prompt would be a failure, not a hang.
    const r = await runCommand('ssh', [...set.sshArgs, 'new02', 'echo ok; id -u'], { timeoutMs: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('ok\n0\n');
    expect(fs.readFileSync(set.configFile, 'utf8')).toMatch(new RegExp(`Host new01\\n  HostName ${set.host('new01').address.replace(/\./g, '\\.')}`));
  });

  it('streams data through ssh intact, in both directions', async () => {
    const data = randomBytes(6 * 1024 * 1024);
    const blob = path.join(set.host('new01').root, 'blob.bin');
    const remoteSum = await set.ssh('new01', `cat > ${blob} && sha256sum ${blob}`, { input: data });
    expect(remoteSum.split(' ')[0]).toBe(sha256(data));
    expect(sha256(fs.readFileSync(blob))).toBe(sha256(data));
    // And back: stdout of ssh carries the bytes unchanged.
    const back = spawnSync('ssh', [...set.sshArgs, 'new02', `cat ${blob}`], { maxBuffer: 64 * 1024 * 1024 });
    expect(back.status).toBe(0);
    expect(sha256(back.stdout)).toBe(sha256(data));
  });

  it('gives each host its own root and pool directory', () => {
    const [a, b] = set.hosts;
    expect(a!.root).not.toBe(b!.root);
    expect(a!.pool.startsWith(a!.root + '/')).toBe(true);
    expect(fs.readdirSync(a!.pool)).toEqual([]);
  });
});

describe('test host clean-up', () => {
  it('a host boots a guest from its pool with QEMU inside its namespace; teardown removes the namespace, the bridge, sshd and the guest', async () => {
    const one = await startSshHosts(scratch, ['gone01']);
    const host = one.host('gone01');
    const sshdPid = Number(fs.readFileSync(host.sshdPidFile, 'utf8'));
    // A guest started over ssh on the host, as a site restore starts one.
    const disk = await buildBootableGuest(path.join(host.pool, 'web01.raw'), 'web01');
    const serial = path.join(host.root, 'web01.serial');
    const pidFile = path.join(host.root, 'web01.pid');
    await one.ssh(
      'gone01',
      `qemu-system-x86_64 -name web01 -accel tcg -m 256 -display none -no-reboot -monitor none -nic none ` +
        `-serial file:${serial} -drive file=${disk.path},format=raw,if=virtio -pidfile ${pidFile} -daemonize`,
    );
    const qemuPid = Number(fs.readFileSync(pidFile, 'utf8'));
    expect(await waitForGuestIdentity(serial, { isAlive: () => alive(qemuPid) })).toEqual({ name: 'web01', sum: disk.sum });
    const hostNet = (await one.ssh('gone01', 'readlink /proc/self/ns/net')).trim();
    expect(fs.readlinkSync(`/proc/${qemuPid}/ns/net`)).toBe(hostNet);
    expect(alive(sshdPid)).toBe(true);
    expect(await netnsList()).toContain(host.namespace);

    await one.teardown();

    expect(await netnsList()).not.toContain(host.namespace);
    expect(alive(sshdPid)).toBe(false);
    expect(alive(qemuPid)).toBe(false);
    expect(await mustRun('ip', ['-o', 'addr', 'show'])).not.toContain(one.gatewayAddress + '/');
    // The other set is untouched.
    expect(await set.ssh('new01', 'echo still-here')).toBe('still-here\n');
  });

  it('a new setup removes what a killed run left behind, and only that', async () => {
    // A pid that certainly is not running any more.
    const dead = spawnSync('true').pid!;
    expect(alive(dead)).toBe(false);
    const ns = `ferryhost-${dead}_1-old01`;
    const bridge = `fhb${dead.toString(36)}_1`;
    await mustRun('ip', ['netns', 'add', ns]);
    await mustRun('ip', ['link', 'add', bridge, 'type', 'bridge']);
    const orphan = Number((await mustRun('ip', ['netns', 'exec', ns, 'sh', '-c', 'setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!'])).trim());
    expect(alive(orphan)).toBe(true);

    const removed = await removeLeftoverHosts();

    expect(removed).toEqual(expect.arrayContaining([ns, bridge]));
    expect(await netnsList()).not.toContain(ns);
    expect(await mustRun('ip', ['-o', 'link', 'show'])).not.toContain(bridge);
    expect(alive(orphan)).toBe(false);
    // This run's hosts belong to a live process: kept.
    for (const h of set.hosts) expect(await netnsList()).toContain(h.namespace);
    expect(await set.ssh('new02', 'echo alive')).toBe('alive\n');
  });
});
