// A libvirt domain XML rewritten for its new host (issue 7 §3), on the real
// `virsh dumpxml` outputs of tests/fixtures/libvirt: disk sources, types and
// driver formats follow the restored storage, bridges and networks are
// mapped, MACs kept or made anew, and every other line stays. The results
// read back with ferry's parser and are accepted by the real libvirtd, which
// also boots a guest from a generated XML.
import * as fs from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageGuestSpec } from '../../src/backup/guestSpec';
import { InputError } from '../../src/errors';
import { parseDomainXml } from '../../src/hypervisor/libvirt/domainXml';
import type { GuestSpec } from '../../src/repo/restorePoint';
import { generateDomainXml, rewriteDomainXml } from '../../src/site/domainXmlRewrite';
import type { DiskTarget } from '../../src/site/guestRewrite';
import { buildBootableGuest, waitForGuestIdentity } from '../support/bootableGuest';
import { removeDomain, useLibvirtd, virsh } from '../support/libvirtGuest';
import { useScratch } from '../support/scratch';

const LIBVIRT = join(__dirname, '..', 'fixtures', 'libvirt');
const recorded = (name: string) => fs.readFileSync(join(LIBVIRT, `${name}.stdout`), 'utf8');
const scratch = useScratch('domain-xml-rewrite');

/** The spec a backup of this domain records: its disks (not the empty CD-ROM), named `<device>.img`. */
function specOf(xml: string): GuestSpec {
  const d = parseDomainXml(xml, 'recorded');
  return imageGuestSpec(d.disks.filter((x) => !x.cdrom).map((x) => ({ name: `${x.device}.img`, path: x.path })), { fileName: `${d.name}.xml`, text: xml });
}

const lv = (path: string): DiskTarget => ({ path, format: 'raw', storage: 'block' });
const file = (path: string): DiskTarget => ({ path, format: 'raw', storage: 'file' });
const qcow2 = (path: string): DiskTarget => ({ path, format: 'qcow2', storage: 'file' });
const web01Targets = new Map([['vda.img', lv('/dev/vg1/web01-vda')], ['vdb.img', qcow2('/srv/pool/web01/vdb.qcow2')], ['vdc.img', file('/srv/pool/web01/vdc.img')]]);

/** The lines of `after` that are not in `before`, and those of `before` gone from `after` (line diff by position-free multiset). */
function lineChanges(before: string, after: string): { added: string[]; removed: string[] } {
  const count = (text: string) => text.split('\n').reduce((m, l) => m.set(l, (m.get(l) ?? 0) + 1), new Map<string, number>());
  const a = count(before);
  const b = count(after);
  const diff = (x: Map<string, number>, y: Map<string, number>) => [...x].flatMap(([l, n]) => Array<string>(Math.max(0, n - (y.get(l) ?? 0))).fill(l));
  return { added: diff(b, a), removed: diff(a, b) };
}

/** `xml` with its interface replaced by `iface` (the recorded domains have a user-mode NIC only). */
const withInterface = (xml: string, iface: string) => xml.replace(/    <interface type='user'>[\s\S]*?<\/interface>\n/, iface);

describe('rewriting a recorded libvirt domain XML for a new host', () => {
  it('points each disk of the running web01 at its new LV, qcow2 or raw file, with the disk type and driver format to match', () => {
    const xml = recorded('dumpxml-web01');
    const out = rewriteDomainXml(xml, 'web01.xml', specOf(xml), { disks: web01Targets });
    const domain = parseDomainXml(out.text, 'rewritten');
    expect(domain.disks.map((d) => [d.device, d.sourceType, d.path, d.format])).toEqual([
      ['vda', 'block', '/dev/vg1/web01-vda', 'raw'],
      ['vdb', 'file', '/srv/pool/web01/vdb.qcow2', 'qcow2'],
      ['vdc', 'file', '/srv/pool/web01/vdc.img', 'raw'],
    ]);
    expect(domain.emptyDrives).toEqual(['hdc']);
    expect(lineChanges(xml, out.text)).toEqual({
      added: [
        "    <disk type='block' device='disk'>",
        "      <source dev='/dev/vg1/web01-vda'/>",
        "      <source file='/srv/pool/web01/vdb.qcow2'/>",
        "      <source file='/srv/pool/web01/vdc.img'/>",
      ],
      removed: [
        "    <disk type='file' device='disk'>",
        "      <source file='/var/tmp/ferry-libvirt-fixtures/web01-vda.qcow2' index='4'/>",
        "      <source file='/var/tmp/ferry-libvirt-fixtures/web01-vdb.img' index='3'/>",
        "      <source file='/var/tmp/ferry-libvirt-fixtures/web01-vdc.img' index='2'/>",
      ],
    });
    // vda's driver went qcow2 → raw and vdb's raw → qcow2: the same lines, swapped.
    expect(out.text.match(/<driver name='qemu' type='\w+'\/>/g)).toEqual(["<driver name='qemu' type='raw'/>", "<driver name='qemu' type='qcow2'/>", "<driver name='qemu' type='raw'/>"]);
    expect(out.notes).toEqual([]);
  });

  it('keeps the uuid, the MAC and a user-mode NIC by default, and reads the inactive XML and shut-off db01 the same way', () => {
    for (const name of ['dumpxml-inactive-web01', 'dumpxml-db01']) {
      const xml = recorded(name);
      const spec = specOf(xml);
      const targets = new Map(spec.disks.map((d) => [d.name, web01Targets.get(d.name)!]));
      const out = rewriteDomainXml(xml, `${name}.xml`, spec, { disks: targets, bridges: { virbr0: 'br-prod' } });
      const before = parseDomainXml(xml, name);
      const after = parseDomainXml(out.text, 'rewritten');
      expect(after.uuid).toBe(before.uuid);
      expect(after.nics).toEqual(before.nics);
      expect(after.disks.map((d) => d.path)).toEqual(spec.disks.map((d) => web01Targets.get(d.name)!.path));
    }
  });

  it('maps a bridge interface and keeps one whose bridge the map does not name', () => {
    const xml = withInterface(recorded('dumpxml-db01'), [
      "    <interface type='bridge'>", "      <mac address='52:54:00:fe:01:02'/>", "      <source bridge='br-old'/>", "      <model type='virtio'/>", '    </interface>',
      "    <interface type='bridge'>", "      <mac address='52:54:00:fe:01:03'/>", "      <source bridge='br-backup'/>", "      <model type='e1000'/>", '    </interface>', '',
    ].join('\n'));
    const out = rewriteDomainXml(xml, 'db01.xml', specOf(xml), { disks: new Map([['vda.img', lv('/dev/vg1/db01')]]), bridges: { 'br-old': 'br-prod' } });
    expect(parseDomainXml(out.text, 'rewritten').nics).toEqual([
      { mac: '52:54:00:fe:01:02', bridge: 'br-prod', model: 'virtio' },
      { mac: '52:54:00:fe:01:03', bridge: 'br-backup', model: 'e1000' },
    ]);
    expect(lineChanges(xml, out.text).removed).toEqual(["    <disk type='file' device='disk'>", "      <source file='/var/tmp/ferry-libvirt-fixtures/db01-vda.img'/>", "      <source bridge='br-old'/>"]);
  });

  it('keeps a libvirt network unless the map names network:NAME, which gives another network or a bridge', () => {
    const xml = withInterface(recorded('dumpxml-db01'), "    <interface type='network'>\n      <mac address='52:54:00:fe:01:02'/>\n      <source network='default'/>\n      <model type='virtio'/>\n    </interface>\n");
    const spec = specOf(xml);
    const disks = new Map([['vda.img', file('/srv/db01.img')]]);
    const nic = (bridges: Record<string, string>) => parseDomainXml(rewriteDomainXml(xml, 'db01.xml', spec, { disks, bridges }).text, 'r').nics;
    expect(nic({ default: 'br0' })).toEqual([{ mac: '52:54:00:fe:01:02', network: 'default', model: 'virtio' }]);
    expect(nic({ 'network:default': 'network:prod' })).toEqual([{ mac: '52:54:00:fe:01:02', network: 'prod', model: 'virtio' }]);
    expect(nic({ 'network:default': 'br-prod' })).toEqual([{ mac: '52:54:00:fe:01:02', bridge: 'br-prod', model: 'virtio' }]);
  });

  it('turns a storage-pool volume disk into a file or block disk at the new place', () => {
    const xml = recorded('dumpxml-db01').replace("<disk type='file' device='disk'>", "<disk type='volume' device='disk'>").replace("<source file='/var/tmp/ferry-libvirt-fixtures/db01-vda.img'/>", "<source pool='default' volume='db01-vda.img' mode='host'/>");
    const spec = { ...specOf(recorded('dumpxml-db01')) };
    spec.disks = [{ ...spec.disks[0]!, origin: 'volume:default/db01-vda.img' }];
    const out = rewriteDomainXml(xml, 'db01.xml', spec, { disks: new Map([['vda.img', lv('/dev/vg1/db01')]]) });
    expect(out.text).toContain("    <disk type='block' device='disk'>\n      <driver name='qemu' type='raw'/>\n      <source dev='/dev/vg1/db01'/>\n");
  });

  it('drops a port group when a network becomes a bridge', () => {
    const xml = withInterface(recorded('dumpxml-db01'), "    <interface type='network'>\n      <source network='default' portgroup='web'/>\n    </interface>\n");
    const out = rewriteDomainXml(xml, 'db01.xml', specOf(xml), { disks: new Map([['vda.img', file('/srv/db01.img')]]), bridges: { 'network:default': 'br-web' } });
    expect(out.text).toContain("    <interface type='bridge'>\n      <source bridge='br-web'/>\n    </interface>\n");
  });

  it('makes new MACs in QEMU\'s 52:54:00 range when asked, the same for the same seed', () => {
    const xml = recorded('dumpxml-web01');
    const mac = (seed: string) => parseDomainXml(rewriteDomainXml(xml, 'w', specOf(xml), { disks: web01Targets, macs: { kind: 'new', seed } }).text, 'r').nics[0]!.mac;
    expect(mac('a')).toMatch(/^52:54:00(:[0-9a-f]{2}){3}$/);
    expect(mac('a')).not.toBe('52:54:00:fe:01:01');
    expect(mac('a')).toBe(mac('a'));
    expect(mac('b')).not.toBe(mac('a'));
  });

  it('drops the uuid and renames the domain only when asked', () => {
    const xml = recorded('dumpxml-db01');
    const out = rewriteDomainXml(xml, 'db01.xml', specOf(xml), { disks: new Map([['vda.img', file('/srv/db01.img')]]), uuid: 'drop', name: 'db01-drill' });
    const domain = parseDomainXml(out.text, 'r');
    expect(domain.uuid).toBeUndefined();
    expect(domain.name).toBe('db01-drill');
    expect(lineChanges(xml, out.text).removed).toContain('  <uuid>a4e85ff1-ea56-47c2-8835-2471f838c75e</uuid>');
  });

  it('adds a driver element where a disk had none, so a qcow2 target is read as qcow2', () => {
    const xml = recorded('dumpxml-db01').replace("      <driver name='qemu' type='raw'/>\n", '');
    const out = rewriteDomainXml(xml, 'db01.xml', specOf(xml), { disks: new Map([['vda.img', qcow2('/srv/db01.qcow2')]]) });
    expect(out.text).toContain("    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      <source file='/srv/db01.qcow2'/>\n");
  });

  it('leaves a CD-ROM whose medium was not backed up empty, and says so', () => {
    const xml = recorded('dumpxml-inactive-web01').replace("      <target dev='hdc' bus='ide'/>", "      <source file='/srv/iso/install.iso'/>\n      <target dev='hdc' bus='ide'/>");
    const out = rewriteDomainXml(xml, 'web01.xml', specOf(xml), { disks: web01Targets });
    expect(parseDomainXml(out.text, 'r').emptyDrives).toEqual(['hdc']);
    expect(out.notes).toEqual(['web01.xml: disk hdc: cdrom held /srv/iso/install.iso, which was not backed up: the drive is left empty']);
  });

  it('refuses, in one line, a disk no restore point disk is, a network disk, and a disk given no new storage', () => {
    const xml = recorded('dumpxml-web01');
    const spec = specOf(xml);
    const refusal = (fn: () => unknown) => {
      try { fn(); } catch (err) { expect(err).toBeInstanceOf(InputError); return (err as Error).message; }
      throw new Error('expected a refusal');
    };
    expect(refusal(() => rewriteDomainXml(xml, 'web01.xml', { ...spec, disks: spec.disks.slice(0, 2) }, { disks: web01Targets }))).toBe(
      'web01.xml: disk vdc (/var/tmp/ferry-libvirt-fixtures/web01-vdc.img) is in the domain XML but in no disk of the restore point; restore from a restore point that holds it, or remove it from the XML',
    );
    const rbd = xml.replace("<disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n      <source file='/var/tmp/ferry-libvirt-fixtures/web01-vdc.img' index='2'/>",
      "<disk type='network' device='disk'>\n      <driver name='qemu' type='raw'/>\n      <source protocol='rbd' name='pool/vdc'><host name='ceph1'/></source>");
    expect(refusal(() => rewriteDomainXml(rbd, 'web01.xml', { ...spec, disks: [...spec.disks.slice(0, 2), { ...spec.disks[2]!, origin: 'rbd://ceph1/pool/vdc' }] }, { disks: web01Targets }))).toBe(
      "web01.xml: disk vdc is a 'network' disk (rbd://ceph1/pool/vdc), which ferry cannot point at local storage; change it to a file or block disk before the restore",
    );
    expect(refusal(() => rewriteDomainXml(xml, 'web01.xml', spec, { disks: new Map([...web01Targets].slice(0, 2)) }))).toMatch(/^web01\.xml: disk vdc: no new storage was given for disk vdc\.img/);
  });
});

describe('a domain XML for a guest backed up without one', () => {
  const spec: GuestSpec = {
    hypervisor: 'xen', vcpus: 2, memoryMiB: 256, maxMemoryMiB: 512,
    nics: [{ mac: '00:16:3e:1a:2b:01', bridge: 'xenbr0' }, { network: 'default', model: 'e1000' }],
    disks: [
      { name: 'disk0.img', device: 'xvda', origin: '/dev/vg0/web01', format: 'raw', storage: 'lv', readOnly: false },
      { name: 'disk1.img', device: 'hdc', origin: '/srv/a.qcow2', format: 'qcow2', storage: 'file', readOnly: true },
    ],
    bootGroup: 0, bootPriority: 0,
  };

  it('describes the machine, its disks at their new places (a Xen xvd* as virtio vd*) and its NICs on the mapped bridges', () => {
    const out = generateDomainXml('web01', spec, { disks: new Map([['disk0.img', lv('/dev/vg1/web01')], ['disk1.img', qcow2('/srv/p/a.qcow2')]]), bridges: { xenbr0: 'br-prod' } });
    const d = parseDomainXml(out.text, 'generated');
    expect(d).toMatchObject({ name: 'web01', vcpus: 2, memoryMiB: 256, maxMemoryMiB: 512 });
    expect(d.disks.map((x) => [x.device, x.sourceType, x.path, x.format, x.readOnly])).toEqual([['vda', 'block', '/dev/vg1/web01', 'raw', false], ['hdc', 'file', '/srv/p/a.qcow2', 'qcow2', true]]);
    expect(d.nics).toEqual([{ mac: '00:16:3e:1a:2b:01', bridge: 'br-prod', model: 'virtio' }, { network: 'default', model: 'e1000' }]);
  });
});

describe('with the real libvirtd', () => {
  beforeAll(async () => {
    await useLibvirtd(scratch);
  }, 300_000);
  afterAll(async () => {
    for (const name of ['ferry-rw-web01', 'ferry-gen-boot']) await removeDomain(name);
  });

  it('defines the rewritten recorded web01, and libvirt reads the new disk paths, types and formats back', async () => {
    const xml = recorded('dumpxml-web01');
    const out = rewriteDomainXml(xml, 'web01.xml', specOf(xml), { disks: web01Targets, name: 'ferry-rw-web01', uuid: 'drop' });
    const xmlFile = scratch.path('ferry-rw-web01.xml');
    fs.writeFileSync(xmlFile, out.text);
    await virsh('define', xmlFile);
    const defined = parseDomainXml(await virsh('dumpxml', '--inactive', 'ferry-rw-web01'), 'virsh dumpxml ferry-rw-web01');
    expect(defined.disks.map((d) => [d.device, d.sourceType, d.path, d.format])).toEqual([
      ['vda', 'block', '/dev/vg1/web01-vda', 'raw'],
      ['vdb', 'file', '/srv/pool/web01/vdb.qcow2', 'qcow2'],
      ['vdc', 'file', '/srv/pool/web01/vdc.img', 'raw'],
    ]);
    expect(defined.uuid).not.toBe(parseDomainXml(xml, 'r').uuid);
  });

  // Kept as a boot, not just `virsh define` + dumpxml: define checks only that libvirt parses the XML. Whether
  // QEMU starts with those devices and the firmware boots from the disk as generateDomainXml attaches it (bus,
  // target, driver format, boot order) shows only in a boot; qemu-launch.test.ts and site-restore-boot.test.ts
  // boot the plain-QEMU launcher (src/site/qemuLaunch.ts), never a generated domain XML. It costs one TCG boot
  // (~10 s); the minute it took before was libvirtd re-probing QEMU on every call (scripts/testbed/libvirtd.sh).
  it('boots a real guest from a generated domain XML: it prints its identity on the serial log', async () => {
    const disk = await buildBootableGuest(scratch.path('gen-boot.raw'), 'gen-boot');
    const serialLog = scratch.path('gen-boot.serial');
    const bootSpec: GuestSpec = { vcpus: 1, memoryMiB: 256, nics: [], disks: [{ name: 'disk0.img', origin: '/old/gen-boot.raw', format: 'raw', storage: 'file', readOnly: false }], bootGroup: 0, bootPriority: 0 };
    const out = generateDomainXml('gen-boot', bootSpec, { disks: new Map([['disk0.img', file(disk.path)]]), name: 'ferry-gen-boot', domainType: 'qemu', serialLog });
    const xmlFile = scratch.path('ferry-gen-boot.xml');
    // The test bed's libvirtd runs QEMU as root without relabelling (as tests/support/libvirtGuest.ts), so it may read the scratch directory.
    fs.writeFileSync(xmlFile, out.text.replace('</domain>', "  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>\n</domain>"));
    await virsh('define', xmlFile);
    await virsh('start', 'ferry-gen-boot');
    expect(await waitForGuestIdentity(serialLog)).toEqual({ name: 'gen-boot', sum: disk.sum });
  }, 600_000);
});
