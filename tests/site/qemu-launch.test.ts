// The QEMU launch definition of a guest restored onto a `qemu` host (issue 7
// §3): a POSIX sh script and a systemd unit. The script is checked by the
// shell itself (it hands QEMU exactly the argv, whatever the paths hold) and,
// the real test, by booting a real guest disk with it, reading its identity
// from the serial log and quitting QEMU through its QMP socket.
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { InputError } from '../../src/errors';
import { QmpClient } from '../../src/hypervisor/qemu/qmpClient';
import type { GuestSpec } from '../../src/repo/restorePoint';
import type { DiskTarget } from '../../src/site/guestRewrite';
import { qemuLaunch } from '../../src/site/qemuLaunch';
import { buildBootableGuest, waitForGuestIdentity } from '../support/bootableGuest';
import { useScratch } from '../support/scratch';
import { mustRun, runCommand } from '../support/system';

const scratch = useScratch('qemu-launch');

const spec: GuestSpec = {
  hypervisor: 'xen', vcpus: 2, memoryMiB: 1024, maxMemoryMiB: 2048,
  nics: [{ mac: '00:16:3e:1a:2b:01', bridge: 'xenbr0', model: 'e1000' }, { bridge: 'xenbr1' }],
  disks: [
    { name: 'disk0.img', device: 'xvda', origin: '/dev/vg0/web01', format: 'raw', storage: 'lv', readOnly: false },
    { name: 'disk1.img', device: 'hdc', origin: '/srv/data.qcow2', format: 'qcow2', storage: 'file', readOnly: true },
  ],
  bootGroup: 0, bootPriority: 0,
};
const targets = (second = '/srv/pool/web01/data.qcow2'): Map<string, DiskTarget> =>
  new Map([['disk0.img', { path: '/dev/vg1/web01', format: 'raw', storage: 'block' }], ['disk1.img', { path: second, format: 'qcow2', storage: 'file' }]]);

describe('the QEMU command line of a restored guest', () => {
  it('gives memory, vCPUs, each disk on its bus, NICs on the mapped bridges with their MACs, a QMP socket and the serial console in a file', () => {
    const launch = qemuLaunch('web01', spec, { disks: targets(), bridges: { xenbr0: 'br-prod' }, runDir: '/run/ferry', accel: 'tcg' });
    expect(launch.argv).toEqual([
      '/usr/bin/qemu-system-x86_64', '-name', 'web01', '-accel', 'tcg', '-m', '1024', '-smp', '2',
      '-drive', 'file=/dev/vg1/web01,format=raw,if=virtio',
      '-drive', 'file=/srv/pool/web01/data.qcow2,format=qcow2,if=ide,index=2,readonly=on',
      '-netdev', 'bridge,id=net0,br=br-prod', '-device', 'e1000,netdev=net0,mac=00:16:3e:1a:2b:01',
      '-netdev', 'bridge,id=net1,br=xenbr1', '-device', 'virtio-net-pci,netdev=net1',
      '-qmp', 'unix:/run/ferry/web01.qmp,server=on,wait=off', '-serial', 'file:/run/ferry/web01.serial',
      '-display', 'none', '-monitor', 'none',
    ]);
    expect(launch).toMatchObject({ qmpSocket: '/run/ferry/web01.qmp', serialLog: '/run/ferry/web01.serial', pidFile: '/run/ferry/web01.pid' });
    expect(launch.notes).toEqual(['web01: disk disk0.img was xvda; under QEMU it is a virtio disk (vd*)']);
  });

  it('uses KVM with the host CPU only when the caller says /dev/kvm works', () => {
    const kvm = qemuLaunch('web01', spec, { disks: targets(), runDir: '/run/ferry', accel: 'kvm' }).argv;
    expect(kvm.slice(3, 7)).toEqual(['-accel', 'kvm', '-cpu', 'host']);
    expect(qemuLaunch('web01', spec, { disks: targets(), runDir: '/run/ferry', accel: 'tcg' }).argv).not.toContain('host');
  });

  it('makes new MACs in 52:54:00 when asked, and puts a NIC without a bridge on user networking', () => {
    const launch = qemuLaunch('q1', { ...spec, hypervisor: 'qemu', nics: [{ mac: '52:54:00:00:00:01' }] }, { disks: targets(), runDir: '/run/ferry', accel: 'tcg', macs: { kind: 'new', seed: 's' } });
    const devices = launch.argv.filter((_, i) => launch.argv[i - 1] === '-device' || launch.argv[i - 1] === '-netdev');
    expect(devices[0]).toBe('user,id=net0');
    expect(devices[1]).toMatch(/^virtio-net-pci,netdev=net0,mac=52:54:00(:[0-9a-f]{2}){3}$/);
    expect(devices[1]).not.toContain('52:54:00:00:00:01');
  });

  it('refuses a libvirt network the bridge map does not turn into a bridge, and a name QEMU cannot take, in one line', () => {
    const onNetwork: GuestSpec = { ...spec, hypervisor: 'libvirt', nics: [{ network: 'default' }] };
    expect(() => qemuLaunch('k1', onNetwork, { disks: targets(), runDir: '/run/ferry', accel: 'tcg' })).toThrow(
      new InputError('guest k1: NIC 0 is on libvirt network default, which plain QEMU does not have; map it to a bridge with "network:default" = "BRIDGE" in the host\'s bridges'),
    );
    expect(qemuLaunch('k1', onNetwork, { disks: targets(), runDir: '/run/ferry', accel: 'tcg', bridges: { 'network:default': 'br0' } }).argv).toContain('bridge,id=net0,br=br0');
    expect(() => qemuLaunch('web 01', spec, { disks: targets(), runDir: '/run/ferry', accel: 'tcg' })).toThrow(InputError);
  });
});

describe('the launch script and unit', () => {
  it('are accepted by sh -n and systemd-analyze verify', async () => {
    const launch = qemuLaunch('web01', spec, { disks: targets(), runDir: '/run/ferry', accel: 'tcg' });
    const script = scratch.path('web01.sh');
    const unit = scratch.path('ferry-guest-web01.service');
    fs.writeFileSync(script, launch.script);
    fs.writeFileSync(unit, launch.unit);
    await mustRun('sh', ['-n', script]);
    const verify = await runCommand('systemd-analyze', ['verify', unit]);
    expect({ code: verify.code, stderr: verify.stderr }).toEqual({ code: 0, stderr: '' });
    expect(launch.unit).toMatch(/^ExecStart="\/usr\/bin\/qemu-system-x86_64" \\\n {2}"-name" "web01" \\\n/m);
    expect(launch.unit).not.toContain('-daemonize');
  });

  it('hands QEMU exactly its argv, whatever quotes, $ and % the paths hold, and daemonizes it with a pid file', async () => {
    const echo = scratch.path('fake-qemu');
    fs.writeFileSync(echo, '#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n', { mode: 0o755 });
    const runDir = scratch.path('odd-run');
    const launch = qemuLaunch('web01', spec, { disks: targets("/srv/it's$HOME%i`x`.qcow2"), runDir, accel: 'tcg', qemuBinary: echo });
    const script = scratch.path('odd.sh');
    fs.writeFileSync(script, launch.script);
    const out = await mustRun('sh', [script]);
    expect(out.trimEnd().split('\n')).toEqual([...launch.argv.slice(1), '-daemonize', '-pidfile', launch.pidFile]);
    expect(fs.statSync(runDir).isDirectory()).toBe(true);
  });
});

describe('booting a restored guest with its launch script', () => {
  it('starts a real guest disk under TCG: it prints its identity on the serial log, and quits through QMP', async () => {
    const disk = await buildBootableGuest(scratch.path('launched.raw'), 'launched');
    const bootSpec: GuestSpec = { hypervisor: 'qemu', vcpus: 1, memoryMiB: 256, nics: [], disks: [{ name: 'disk0.img', device: 'vda', origin: '/old/launched.raw', format: 'raw', storage: 'file', readOnly: false }], bootGroup: 0, bootPriority: 0 };
    const runDir = scratch.path('run');
    const launch = qemuLaunch('launched', bootSpec, { disks: new Map([['disk0.img', { path: disk.path, format: 'raw', storage: 'file' }]]), runDir, accel: 'tcg' });
    const script = scratch.path('launched.sh');
    fs.writeFileSync(script, launch.script, { mode: 0o755 });

    let pid = 0;
    const isAlive = () => pid > 0 && fs.existsSync(`/proc/${pid}`) && !/\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
    scratch.defer(() => { if (isAlive()) process.kill(pid, 'SIGKILL'); });
    await mustRun(script, [], { timeoutMs: 60_000 });
    pid = Number(fs.readFileSync(launch.pidFile, 'utf8').trim());
    expect(isAlive()).toBe(true);

    expect(await waitForGuestIdentity(launch.serialLog, { isAlive })).toEqual({ name: 'launched', sum: disk.sum });

    await QmpClient.with(launch.qmpSocket, async (qmp) => {
      expect(await qmp.execute<{ status: string }>('query-status')).toMatchObject({ status: 'running' });
      await qmp.execute('quit');
    });
    for (let i = 0; i < 600 && isAlive(); i++) await new Promise((r) => setTimeout(r, 100));
    expect(isAlive()).toBe(false);
  }, 600_000);
});
