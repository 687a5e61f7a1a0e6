// The libvirt driver at the command boundary, against virsh output recorded
// from real libvirt 9.0 (tests/fixtures/libvirt/README.md): web01 running with
// a qcow2 and two raw disks, an empty CD-ROM, a user NIC and a guest-agent
// channel with no agent; db01 defined and shut off. The few replies no real
// guest here can produce (an agent that answers) are marked "constructed".
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LibvirtDriver } from '../../src/hypervisor/libvirt/libvirtDriver';
import { parseDomainXml } from '../../src/hypervisor/libvirt/domainXml';
import { parseXml } from '../../src/hypervisor/libvirt/libvirtXml';
import { RecordedCommandRunner, type RecordedReply } from '../support/recordedRunner';
import type { GuestInfo } from '../../src/hypervisor/driver';
import { HypervisorError } from '../../src/errors';
import { recordedVirsh } from '../support/libvirtGuest';

const FIXTURES = join(__dirname, '..', 'fixtures', 'libvirt');
const DIR = '/var/tmp/ferry-libvirt-fixtures';
const URI = ['-c', 'qemu:///system'];

const constructed = (args: string[], stdout: string): RecordedReply => ({ cmd: 'virsh', args: [...URI, ...args], stdout });
const lines = (runner: RecordedCommandRunner) => runner.commandLines().map((l) => l.replace('virsh -c qemu:///system ', ''));

const PING = ['qemu-agent-command', 'web01', '--timeout', '5', '{"execute":"guest-ping"}'];
const web01: GuestInfo = { name: 'web01', state: 'running', nics: [], disks: [] };

describe('LibvirtDriver.listGuests (recorded libvirt 9.0)', () => {
  const replies = () => [
    recordedVirsh(['list', '--all', '--name'], 'list-all-name'),
    recordedVirsh(['domstate', 'web01'], 'domstate-web01'),
    recordedVirsh(['dumpxml', 'web01'], 'dumpxml-web01'),
    recordedVirsh(['dumpxml', '--inactive', 'web01'], 'dumpxml-inactive-web01'),
    recordedVirsh(['domstate', 'db01'], 'domstate-db01'),
    recordedVirsh(['dumpxml', 'db01'], 'dumpxml-db01'),
  ];

  it('reads state, id, vcpus, memory, disks and NICs from the live XML and keeps the persistent XML as config', async () => {
    const runner = new RecordedCommandRunner(replies());
    const guests = await new LibvirtDriver({ runner }).listGuests();
    expect(lines(runner)).toEqual([
      'list --all --name', 'domstate web01', 'dumpxml web01', 'dumpxml --inactive web01', 'domstate db01', 'dumpxml db01',
    ]);
    const [web, db] = guests;
    expect(web).toMatchObject({ name: 'web01', id: 1, state: 'running', vcpus: 1, memoryMiB: 192, maxMemoryMiB: 192 });
    expect(web!.disks).toEqual([
      { device: 'vda', path: `${DIR}/web01-vda.qcow2`, format: 'qcow2', readOnly: false },
      { device: 'vdb', path: `${DIR}/web01-vdb.img`, format: 'raw', readOnly: false },
      { device: 'vdc', path: `${DIR}/web01-vdc.img`, format: 'raw', readOnly: false },
      // hdc, the CD-ROM drive without a medium, holds nothing to back up.
    ]);
    expect(web!.nics).toEqual([{ mac: '52:54:00:fe:01:01', model: 'virtio' }]); // user networking: no host bridge
    expect(web!.config).toEqual({ fileName: 'web01.xml', text: readFileSync(join(FIXTURES, 'dumpxml-inactive-web01.stdout'), 'utf8') });
    expect(db).toMatchObject({ name: 'db01', state: 'shutoff', disks: [{ device: 'vda', path: `${DIR}/db01-vda.img`, format: 'raw', readOnly: false }] });
    expect(db!.id).toBeUndefined();
    expect(db!.config!.text).toBe(readFileSync(join(FIXTURES, 'dumpxml-db01.stdout'), 'utf8'));
  });

  it('skips a domain that disappeared between list and domstate (a transient guest stopped)', async () => {
    const runner = new RecordedCommandRunner([
      recordedVirsh(['list', '--all', '--name'], 'list-all-name'),
      recordedVirsh(['domstate', 'web01'], 'domstate-nosuch'), // "failed to get domain 'nosuch'"
      recordedVirsh(['domstate', 'db01'], 'domstate-db01'),
      recordedVirsh(['dumpxml', 'db01'], 'dumpxml-db01'),
    ]);
    expect((await new LibvirtDriver({ runner }).listGuests()).map((g) => g.name)).toEqual(['db01']);
  });

  it('fails with libvirt\'s own message when virsh cannot connect', async () => {
    const runner = new RecordedCommandRunner([{
      cmd: 'virsh', args: [...URI, 'list', '--all', '--name'], code: 1,
      // as printed by virsh 9.0 with libvirtd stopped
      stderr: "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory\n",
    }]);
    const attempt = new LibvirtDriver({ runner }).listGuests();
    await expect(attempt).rejects.toThrow(HypervisorError);
    await expect(attempt).rejects.toThrow("virsh -c qemu:///system list --all --name failed (exit 1): Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory");
  });

  it('refuses malformed XML, naming the command and line, rather than guessing a disk list', async () => {
    const runner = new RecordedCommandRunner([
      { cmd: 'virsh', args: [...URI, 'list', '--all', '--name'], stdout: 'web01\n' },
      recordedVirsh(['domstate', 'web01'], 'domstate-web01'),
      { cmd: 'virsh', args: [...URI, 'dumpxml', 'web01'], stdout: "<domain type='qemu'>\n  <name>web01</name>\n  <devices><disk type='file'>\n</domain>\n" },
    ]);
    await expect(new LibvirtDriver({ runner }).listGuests()).rejects.toThrow('virsh dumpxml web01: malformed XML at line 4: <disk> closed by </domain>');
  });
});

describe('LibvirtDriver.quiesce (recorded libvirt 9.0)', () => {
  it('suspends when the guest agent is not connected, and resumes on release', async () => {
    const runner = new RecordedCommandRunner([
      recordedVirsh(['domstate', 'web01'], 'domstate-web01'),
      recordedVirsh(PING, 'agent-ping-web01'), // "QEMU guest agent is not connected"
      recordedVirsh(['suspend', 'web01'], 'suspend-web01'),
      recordedVirsh(['resume', 'web01'], 'resume-web01'),
    ]);
    const handle = await new LibvirtDriver({ runner }).quiesce(web01);
    expect(handle).toMatchObject({ guest: 'web01', quiesced: true, mode: 'suspend' });
    expect(handle.releaseArgv).toEqual(['virsh', '-c', 'qemu:///system', 'resume', 'web01']);
    await handle.release();
    await handle.release(); // idempotent: no second resume
    expect(lines(runner)).toEqual(['domstate web01', `qemu-agent-command web01 --timeout 5 '{"execute":"guest-ping"}'`, 'suspend web01', 'resume web01']);
  });

  it('freezes file systems through an answering agent and thaws on release (agent replies constructed)', async () => {
    const runner = new RecordedCommandRunner([
      recordedVirsh(['domstate', 'web01'], 'domstate-web01'),
      constructed(PING, '{"return":{}}\n'),
      constructed(['domfsfreeze', 'web01'], 'Froze 1 filesystem(s)\n\n'),
      constructed(['domfsthaw', 'web01'], 'Thawed 1 filesystem(s)\n\n'),
    ]);
    const handle = await new LibvirtDriver({ runner }).quiesce(web01);
    expect(handle.mode).toBe('fsfreeze');
    expect(handle.releaseArgv).toEqual(['virsh', '-c', 'qemu:///system', 'domfsthaw', 'web01']);
    await handle.release();
    expect(lines(runner).slice(2)).toEqual(['domfsfreeze web01', 'domfsthaw web01']);
  });

  it('falls back to suspend when the freeze fails, thawing whatever it may have frozen first', async () => {
    const runner = new RecordedCommandRunner([
      recordedVirsh(['domstate', 'web01'], 'domstate-web01'),
      constructed(PING, '{"return":{}}\n'),
      recordedVirsh(['domfsfreeze', 'web01'], 'domfsfreeze-web01'),
      recordedVirsh(['domfsthaw', 'web01'], 'domfsfreeze-web01'),
      recordedVirsh(['suspend', 'web01'], 'suspend-web01'),
    ]);
    const handle = await new LibvirtDriver({ runner }).quiesce(web01);
    expect(handle.mode).toBe('suspend');
    expect(lines(runner).slice(2)).toEqual(['domfsfreeze web01', 'domfsthaw web01', 'suspend web01']);
  });

  it('never asks the agent when told not to', async () => {
    const runner = new RecordedCommandRunner([
      recordedVirsh(['domstate', 'web01'], 'domstate-web01'),
      recordedVirsh(['suspend', 'web01'], 'suspend-web01'),
    ]);
    expect((await new LibvirtDriver({ runner, useGuestAgent: false }).quiesce(web01)).mode).toBe('suspend');
  });

  it('treats "already running" on release as done (the watchdog resumed it), and retries other failures', async () => {
    const runner = new RecordedCommandRunner([
      recordedVirsh(['domstate', 'web01'], 'domstate-web01'),
      recordedVirsh(['suspend', 'web01'], 'suspend-web01'),
      recordedVirsh(['resume', 'web01'], 'resume-web01-running'),
    ]);
    await (await new LibvirtDriver({ runner, useGuestAgent: false }).quiesce(web01)).release();

    const flaky = new RecordedCommandRunner([
      recordedVirsh(['domstate', 'web01'], 'domstate-web01'),
      recordedVirsh(['suspend', 'web01'], 'suspend-web01'),
      { cmd: 'virsh', args: [...URI, 'resume', 'web01'], code: 1, stderr: 'error: Disconnected from qemu:///system due to end of file\n' },
      recordedVirsh(['resume', 'web01'], 'resume-web01'),
    ]);
    const handle = await new LibvirtDriver({ runner: flaky, useGuestAgent: false }).quiesce(web01);
    await expect(handle.release()).rejects.toThrow('resume web01 failed (exit 1): Disconnected from qemu:///system due to end of file');
    await handle.release();
    expect(lines(flaky).filter((l) => l === 'resume web01')).toHaveLength(2);
  });

  it('leaves a guest that is already paused (by someone else) alone, and a shut-off one', async () => {
    const runner = new RecordedCommandRunner([recordedVirsh(['domstate', 'web01'], 'domstate-web01-paused')]);
    const handle = await new LibvirtDriver({ runner }).quiesce(web01);
    expect(handle.quiesced).toBe(false);
    await handle.release();
    expect(lines(runner)).toEqual(['domstate web01']);
    const none = new RecordedCommandRunner([]);
    expect((await new LibvirtDriver({ runner: none }).quiesce({ ...web01, state: 'shutoff' })).quiesced).toBe(false);
    expect(none.calls).toEqual([]);
  });

  it('runs the pre hook before suspending and the post hook after resuming', async () => {
    const runner = new RecordedCommandRunner([
      recordedVirsh(['domstate', 'web01'], 'domstate-web01'),
      { cmd: 'ssh', args: ['web01', 'sync'] },
      recordedVirsh(['suspend', 'web01'], 'suspend-web01'),
      recordedVirsh(['resume', 'web01'], 'resume-web01'),
      { cmd: 'logger', args: ['backed up web01'] },
    ]);
    const handle = await new LibvirtDriver({ runner, useGuestAgent: false })
      .quiesce(web01, { pre: ['ssh', '{name}', 'sync'], post: ['logger', 'backed up {name}'] });
    await handle.release();
    expect(lines(runner)).toEqual(['domstate web01', 'ssh web01 sync', 'suspend web01', 'resume web01', "logger 'backed up web01'"]);
  });
});

describe('libvirt XML reading', () => {
  it('reads every disk kind libvirt prints, and refuses a hard disk whose storage it cannot name', () => {
    const d = parseDomainXml(`<domain type='kvm'><name>a&amp;b</name><memory unit='GiB'>2</memory><vcpu>4</vcpu><devices>
      <disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='/dev/vg0/a'/><target dev='vda'/></disk>
      <disk type='network' device='disk'><driver type='raw'/><source protocol='rbd' name='pool/img'><host name='mon1' port='6789'/></source><target dev='vdb'/></disk>
      <disk type='volume' device='disk'><source pool='default' volume='a.qcow2'/><driver type='qcow2'/><target dev='vdc'/></disk>
      <disk type='file' device='cdrom'><source file='/iso/x.iso'/><target dev='sda'/><readonly/></disk>
      <interface type='bridge'><mac address='52:54:00:00:00:01'/><source bridge='br0'/><model type='e1000'/></interface>
      <interface type='network'><mac address='52:54:00:00:00:02'/><source network='default'/></interface>
    </devices></domain>`, 'test');
    expect(d.name).toBe('a&b');
    expect(d).toMatchObject({ vcpus: 4, memoryMiB: 2048, maxMemoryMiB: 2048 });
    expect(d.disks.map((x) => [x.device, x.path, x.format, x.readOnly, x.cdrom ?? false])).toEqual([
      ['vda', '/dev/vg0/a', 'raw', false, false],
      ['vdb', 'rbd://mon1/pool/img', 'raw', false, false],
      ['vdc', 'volume:default/a.qcow2', 'qcow2', false, false],
      ['sda', '/iso/x.iso', 'raw', true, true],
    ]);
    expect(d.nics).toEqual([{ mac: '52:54:00:00:00:01', bridge: 'br0', model: 'e1000' }, { mac: '52:54:00:00:00:02', network: 'default' }]);
    expect(() => parseDomainXml(`<domain><name>x</name><devices><disk type='file' device='disk'><target dev='vda'/></disk></devices></domain>`, 'test'))
      .toThrow('test: cannot tell where disk vda (type \'file\') is stored');
  });

  it('decodes entities and CDATA, and rejects what is not well-formed', () => {
    expect(parseXml(`<?xml version="1.0"?><!-- c --><a x="&lt;&#65;&#x42;&apos;"><![CDATA[<raw>]]>t&amp;</a>`, 't')).toEqual({
      name: 'a', attrs: { x: "<AB'" }, children: [], text: '<raw>t&',
    });
    expect(() => parseXml('<a><b></a>', 't')).toThrow('<b> closed by </a>');
    expect(() => parseXml("<a x='1' x='2'/>", 't')).toThrow('attribute x repeated');
    expect(() => parseXml('<a>&nbsp;</a>', 't')).toThrow('unknown entity &nbsp;');
    expect(() => parseXml('<a/><b/>', 't')).toThrow('content after the root element');
    expect(() => parseXml('', 't')).toThrow('no root element');
  });
});
