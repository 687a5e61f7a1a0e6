// The files a restored guest's config becomes on its new host (issue 7 §3):
// the new config (rewritten, or made from the spec) and the original kept
// beside it byte for byte, as {path, content, mode} for the caller to write.
import * as fs from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { imageGuestSpec } from '../../src/backup/guestSpec';
import { InputError } from '../../src/errors';
import { parseDomainXml } from '../../src/hypervisor/libvirt/domainXml';
import { guestFromConfig } from '../../src/hypervisor/xen/guestConfig';
import { parseXlConfig } from '../../src/hypervisor/xen/xlConfig';
import type { AttachedConfig } from '../../src/repo/restorePoint';
import { guestConfigFiles } from '../../src/site/guestConfigFiles';
import type { DiskTarget } from '../../src/site/guestRewrite';

const FIXTURES = join(__dirname, '..', 'fixtures');
const web01Cfg = fs.readFileSync(join(FIXTURES, 'xen', 'fleet', 'web01.cfg'));
const web01Xml = fs.readFileSync(join(FIXTURES, 'libvirt', 'dumpxml-inactive-web01.stdout'));
const attached = (fileName: string, bytes: Buffer): AttachedConfig => ({ fileName, content: bytes.toString('base64') });
const xenSpec = imageGuestSpec([{ name: 'xvda.img', path: '/dev/vg0/web01-disk' }], { fileName: 'web01.cfg', text: web01Cfg.toString('utf8') });
const xenDisks = new Map<string, DiskTarget>([['xvda.img', { path: '/dev/vg1/web01', format: 'raw', storage: 'block' }]]);
const summary = (files: { path: string; mode: number }[]) => files.map((f) => [f.path, f.mode.toString(8)]);

describe('the config files of a restored guest', () => {
  it('xen: the rewritten <name>.cfg, and the original beside it as <its name>.ferry-orig, byte for byte', () => {
    const out = guestConfigFiles({ guest: 'web01', hypervisor: 'xen', spec: xenSpec, original: attached('web01.cfg', web01Cfg), dir: '/etc/xen/', disks: xenDisks, bridges: { xenbr0: 'br0' } });
    expect(summary(out.files)).toEqual([['/etc/xen/web01.cfg', '644'], ['/etc/xen/web01.cfg.ferry-orig', '644']]);
    expect(guestFromConfig(parseXlConfig(out.files[0]!.content.toString('utf8'), 'web01.cfg')).disks[0]!.path).toBe('/dev/vg1/web01');
    expect(out.files[1]!.content.equals(web01Cfg)).toBe(true);
    expect(out.notes).toEqual([]);
  });

  it('libvirt: the rewritten <name>.xml and the recorded original beside it', () => {
    const xml = web01Xml.toString('utf8');
    const spec = imageGuestSpec(['vda', 'vdb', 'vdc'].map((d, i) => ({ name: `${d}.img`, path: parseDomainXml(xml, 'x').disks[i]!.path })), { fileName: 'web01.xml', text: xml });
    const disks = new Map(spec.disks.map((d): [string, DiskTarget] => [d.name, { path: `/srv/pool/web01/${d.name}`, format: 'raw', storage: 'file' }]));
    const out = guestConfigFiles({ guest: 'web01', hypervisor: 'libvirt', spec, original: attached('web01.xml', web01Xml), dir: '/etc/ferry/domains', disks });
    expect(summary(out.files)).toEqual([['/etc/ferry/domains/web01.xml', '644'], ['/etc/ferry/domains/web01.xml.ferry-orig', '644']]);
    expect(parseDomainXml(out.files[0]!.content.toString('utf8'), 'x').disks.map((d) => d.path)).toEqual(['/srv/pool/web01/vda.img', '/srv/pool/web01/vdb.img', '/srv/pool/web01/vdc.img']);
    expect(out.files[1]!.content.equals(web01Xml)).toBe(true);
  });

  it('qemu: an executable launch script, a systemd unit, and the original config', () => {
    const out = guestConfigFiles({ guest: 'web01', hypervisor: 'qemu', spec: xenSpec, original: attached('web01.cfg', web01Cfg), dir: '/etc/ferry/guests', disks: xenDisks, qemu: { runDir: '/run/ferry', accel: 'tcg' } });
    expect(summary(out.files)).toEqual([
      ['/etc/ferry/guests/web01.sh', '755'],
      ['/etc/ferry/guests/ferry-guest-web01.service', '644'],
      ['/etc/ferry/guests/web01.cfg.ferry-orig', '644'],
    ]);
    expect(out.files[0]!.content.toString('utf8')).toContain("'-drive' 'file=/dev/vg1/web01,format=raw,if=virtio'");
  });

  it('makes the config from the spec when none was backed up, and says so; nothing is kept beside it', () => {
    const out = guestConfigFiles({ guest: 'web01', hypervisor: 'xen', spec: xenSpec, dir: '/etc/xen', disks: xenDisks });
    expect(summary(out.files)).toEqual([['/etc/xen/web01.cfg', '644']]);
    expect(out.notes).toEqual(['web01: no config was backed up: an xl cfg was made from the guest spec']);
  });

  it('makes a domain XML from the spec for a Xen guest restored onto a libvirt host, keeping its xl cfg beside it', () => {
    const out = guestConfigFiles({ guest: 'web01', hypervisor: 'libvirt', spec: xenSpec, original: attached('web01.cfg', web01Cfg), dir: '/etc/ferry/domains', disks: xenDisks, domainType: 'qemu' });
    expect(summary(out.files)).toEqual([['/etc/ferry/domains/web01.xml', '644'], ['/etc/ferry/domains/web01.cfg.ferry-orig', '644']]);
    expect(parseDomainXml(out.files[0]!.content.toString('utf8'), 'x')).toMatchObject({ name: 'web01', memoryMiB: 1024, disks: [{ device: 'vda', path: '/dev/vg1/web01' }] });
    expect(out.notes).toEqual(['web01: its config web01.cfg is not a libvirt domain XML: a libvirt domain XML was made from the guest spec']);
  });

  it('names the files after a new name when the guest is renamed, keeping the original under its own', () => {
    const out = guestConfigFiles({ guest: 'web01', name: 'web01-drill', hypervisor: 'xen', spec: xenSpec, original: attached('web01.cfg', web01Cfg), dir: '/etc/xen', disks: xenDisks });
    expect(out.files.map((f) => f.path)).toEqual(['/etc/xen/web01-drill.cfg', '/etc/xen/web01.cfg.ferry-orig']);
    expect(guestFromConfig(parseXlConfig(out.files[0]!.content.toString('utf8'), 'x')).name).toBe('web01-drill');
  });

  it('refuses a relative directory or a name that cannot be a file name, in one line', () => {
    expect(() => guestConfigFiles({ guest: 'web01', hypervisor: 'xen', spec: xenSpec, dir: 'etc/xen', disks: xenDisks })).toThrow(new InputError('config directory "etc/xen" for guest web01: must be an absolute path'));
    expect(() => guestConfigFiles({ guest: '../web01', hypervisor: 'xen', spec: xenSpec, dir: '/etc/xen', disks: xenDisks })).toThrow(InputError);
  });
});
