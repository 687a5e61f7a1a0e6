// An xl cfg rewritten for its new host (issue 7 §3): disk targets point at the
// restored storage, vif bridges are mapped, MACs kept or made anew, and every
// other byte stays. Checked on the real fixture cfgs with ferry's xl parser
// (whose disk spec reading matches real xl 4.17's verdicts, tests/hypervisor/xen.test.ts).
import * as fs from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { imageGuestSpec } from '../../src/backup/guestSpec';
import { InputError } from '../../src/errors';
import { parseDiskSpec } from '../../src/hypervisor/xen/diskSpec';
import { guestFromConfig } from '../../src/hypervisor/xen/guestConfig';
import { parseXlConfig } from '../../src/hypervisor/xen/xlConfig';
import type { GuestSpec } from '../../src/repo/restorePoint';
import type { DiskTarget } from '../../src/site/guestRewrite';
import { generateXlConfig, rewriteXlConfig } from '../../src/site/xlConfigRewrite';

const XEN = join(__dirname, '..', 'fixtures', 'xen');
const fleetCfg = (name: string) => fs.readFileSync(join(XEN, 'fleet', `${name}.cfg`), 'utf8');
const readBack = (text: string, file = 'rewritten.cfg') => guestFromConfig(parseXlConfig(text, file));

/** The spec a backup of this cfg records: every disk but CD-ROMs, named `<device>.img`. */
function specOf(text: string, file: string, cdroms: 'left out' | 'backed up' = 'left out'): GuestSpec {
  const guest = readBack(text, file);
  return imageGuestSpec(guest.disks.filter((d) => cdroms === 'backed up' || !d.cdrom).map((d) => ({ name: `${d.device}.img`, path: d.path })), { fileName: file, text });
}

const lv = (path: string): DiskTarget => ({ path, format: 'raw', storage: 'block' });
const file = (path: string): DiskTarget => ({ path, format: 'raw', storage: 'file' });
const qcow2 = (path: string): DiskTarget => ({ path, format: 'qcow2', storage: 'file' });

/** Lines of `after` that differ from `before` (same line count expected). */
function changedLines(before: string, after: string): string[] {
  const a = before.split('\n');
  const b = after.split('\n');
  expect(b.length).toBe(a.length);
  return b.filter((line, i) => line !== a[i]);
}

describe('rewriting an xl cfg for a new host', () => {
  it('points a phy: LV disk at the new LV and maps the bridge, changing only those two lines (web01)', () => {
    const text = fleetCfg('web01');
    const out = rewriteXlConfig(text, 'web01.cfg', specOf(text, 'web01.cfg'), {
      disks: new Map([['xvda.img', lv('/dev/vg1/web01-disk')]]),
      bridges: { xenbr0: 'br-prod' },
    });
    expect(changedLines(text, out.text)).toEqual([
      "vif = [ 'mac=00:16:3e:1a:2b:01,bridge=br-prod' ]",
      "disk = [ 'phy:/dev/vg1/web01-disk,xvda,w' ]",
    ]);
    const guest = readBack(out.text);
    expect(guest.disks).toEqual([{ device: 'xvda', path: '/dev/vg1/web01-disk', format: 'raw', readOnly: false }]);
    expect(guest.nics).toEqual([{ mac: '00:16:3e:1a:2b:01', bridge: 'br-prod' }]);
    expect(out.notes).toEqual([]);
  });

  it('rewrites multi-line lists in place: a positional raw LV, a tap:aio: file restored as qcow2, one bridge mapped and one kept, comments intact (db01)', () => {
    const text = fleetCfg('db01');
    const out = rewriteXlConfig(text, 'db01.cfg', specOf(text, 'db01.cfg'), {
      disks: new Map([['xvda.img', lv('/dev/vg1/db01-disk')], ['xvdb.img', qcow2('/srv/pool/db01/xvdb.qcow2')]]),
      bridges: { xenbr0: 'br-prod', xenbr9: 'unused' },
    });
    expect(changedLines(text, out.text)).toEqual([
      "    'mac=00:16:3e:1a:2b:02, bridge=br-prod',",
      "    '/dev/vg1/db01-disk,raw,xvda,rw',",
      "    'tap:qcow2:/srv/pool/db01/xvdb.qcow2,xvdb,w',",
    ]);
    expect(out.text).toContain("'mac=00:16:3e:1a:2b:12,bridge=xenbr1'   # replication network");
    const guest = readBack(out.text);
    expect(guest.disks.map((d) => [d.device, d.path, d.format])).toEqual([['xvda', '/dev/vg1/db01-disk', 'raw'], ['xvdb', '/srv/pool/db01/xvdb.qcow2', 'qcow2']]);
    expect(guest.nics.map((n) => n.bridge)).toEqual(['br-prod', 'xenbr1']);
  });

  it('keeps the key=value form with target= last, and a line holding two settings (mail01)', () => {
    const text = fleetCfg('mail01');
    const out = rewriteXlConfig(text, 'mail01.cfg', specOf(text, 'mail01.cfg'), { disks: new Map([['xvda.img', file('/srv/pool/mail01/xvda.img')]]) });
    expect(changedLines(text, out.text)).toEqual(['disk = [ "vdev=xvda, access=rw, target=/srv/pool/mail01/xvda.img" ]']);
    expect(readBack(out.text).disks[0]).toMatchObject({ path: '/srv/pool/mail01/xvda.img', format: 'raw' });
  });

  it('keeps an empty format slot empty for a raw target, and adds format=qcow2 where the spec names no format (app01)', () => {
    const text = fleetCfg('app01');
    const spec = specOf(text, 'app01.cfg');
    const raw = rewriteXlConfig(text, 'app01.cfg', spec, { disks: new Map([['xvda.img', lv('/dev/vg1/app01')]]) });
    expect(changedLines(text, raw.text)).toEqual(["disk = [ '/dev/vg1/app01,,xvda' ]"]);
    const q = rewriteXlConfig(text, 'app01.cfg', spec, { disks: new Map([['xvda.img', qcow2('/srv/p/app01.qcow2')]]) });
    expect(changedLines(text, q.text)).toEqual(["disk = [ '/srv/p/app01.qcow2,qcow2,xvda' ]"]);
    expect(readBack(q.text).disks[0]).toMatchObject({ path: '/srv/p/app01.qcow2', format: 'qcow2' });
  });

  it('turns a tap:qcow2: file into a phy: LV, leaves a CD drive whose ISO was not backed up empty and says so, and keeps the empty drive (win01)', () => {
    const text = fleetCfg('win01');
    const out = rewriteXlConfig(text, 'win01.cfg', specOf(text, 'win01.cfg'), { disks: new Map([['hda.img', lv('/dev/vg1/win01')]]) });
    expect(changedLines(text, out.text)).toEqual(["disk = [ 'phy:/dev/vg1/win01,hda,w',", "         ',hdc:cdrom,r',"]);
    expect(out.notes).toEqual(['win01.cfg:12: CD-ROM hdc held /srv/iso/virtio-win.iso, which was not backed up: the drive is left empty']);
    expect(readBack(out.text).disks).toEqual([{ device: 'hda', path: '/dev/vg1/win01', format: 'raw', readOnly: false }]);
    expect(parseXlConfig(out.text, 'w').settings.get('viridian')).toEqual(parseXlConfig(text, 'w').settings.get('viridian'));
  });

  it('gives a vif on xl\'s default bridge the mapped bridge explicitly, and says so (xlexample.hvm)', () => {
    const text = fs.readFileSync(join(XEN, 'xlexample', 'xlexample.hvm'), 'utf8');
    const spec = specOf(text, 'xlexample.hvm');
    const out = rewriteXlConfig(text, 'xlexample.hvm', spec, { disks: new Map([['xvda.img', lv('/dev/vg1/hvm')]]), bridges: { xenbr0: 'br0' } });
    expect(changedLines(text, out.text)).toEqual(["vif = [ 'bridge=br0' ]", "disk = [ '/dev/vg1/hvm,raw,xvda,rw' ]"]);
    expect(out.notes).toEqual(["xlexample.hvm:38: vif 0 used xl's default bridge xenbr0; it now names bridge=br0"]);
    const unmapped = rewriteXlConfig(text, 'xlexample.hvm', spec, { disks: new Map([['xvda.img', lv('/dev/vg1/hvm')]]) });
    expect(changedLines(text, unmapped.text)).toEqual(["disk = [ '/dev/vg1/hvm,raw,xvda,rw' ]"]);
  });

  it('rewrites the PV and PVH examples of Xen itself, touching only their disk line', () => {
    for (const name of ['xlexample.pvlinux', 'xlexample.pvhlinux']) {
      const text = fs.readFileSync(join(XEN, 'xlexample', name), 'utf8');
      const out = rewriteXlConfig(text, name, specOf(text, name), { disks: new Map([['xvda.img', file(`/srv/pool/${name}.img`)]]) });
      expect(changedLines(text, out.text)).toEqual([`disk = [ '/srv/pool/${name}.img,raw,xvda,rw' ]`]);
    }
  });

  it('rewrites every disk spec form real xl accepts to an LV, a raw file and a qcow2 file, each reading back as meant', () => {
    const verdicts = JSON.parse(fs.readFileSync(join(XEN, 'xl-disk-specs.json'), 'utf8')) as { spec: string; exitCode: number }[];
    const forms = verdicts.filter((v) => v.exitCode === 0).map((v) => parseDiskSpec(v.spec)).filter((d) => d.target !== '' && d.script === undefined);
    expect(forms.length).toBeGreaterThanOrEqual(18);
    for (const [i, original] of verdicts.filter((v) => v.exitCode === 0 && parseDiskSpec(v.spec).target !== '' && parseDiskSpec(v.spec).script === undefined).entries()) {
      const text = `name = "g${i}"\ndisk = [ '${original.spec}' ]\n`;
      const parsed = parseDiskSpec(original.spec);
      // backendtype=phy cannot serve qcow2: refused, see below.
      const targets = [lv('/dev/vg1/g'), file('/srv/pool/g.img'), ...(parsed.backendType === 'phy' ? [] : [qcow2('/srv/pool/g.qcow2')])];
      for (const target of targets) {
        const out = rewriteXlConfig(text, 'g.cfg', specOf(text, 'g.cfg', 'backed up'), { disks: new Map([[`${parsed.vdev}.img`, target]]) });
        const item = parseXlConfig(out.text, 'g.cfg').settings.get('disk')!.value;
        const spec = item.kind === 'list' && item.items[0]!.kind === 'string' ? parseDiskSpec(item.items[0]!.value) : undefined;
        expect({ spec: original.spec, ...spec }).toEqual({ spec: original.spec, ...parsed, target: target.path, format: target.format });
      }
    }
  });

  it('makes new MACs in Xen\'s OUI when asked: the same seed gives the same MACs, another seed others, distinct NICs distinct MACs', () => {
    const text = fleetCfg('db01');
    const spec = specOf(text, 'db01.cfg');
    const disks = new Map([['xvda.img', lv('/dev/vg1/a')], ['xvdb.img', file('/srv/b.img')]]);
    const macs = (seed: string) => readBack(rewriteXlConfig(text, 'db01.cfg', spec, { disks, macs: { kind: 'new', seed } }).text).nics.map((n) => n.mac!);
    const first = macs('site-2026');
    expect(first).toHaveLength(2);
    for (const mac of first) expect(mac).toMatch(/^00:16:3e(:[0-9a-f]{2}){3}$/);
    expect(new Set(first).size).toBe(2);
    expect(first).not.toContain('00:16:3e:1a:2b:02');
    expect(macs('site-2026')).toEqual(first);
    expect(macs('another')).not.toEqual(first);
    expect(readBack(rewriteXlConfig(text, 'db01.cfg', spec, { disks }).text).nics.map((n) => n.mac)).toEqual(['00:16:3e:1a:2b:02', '00:16:3e:1a:2b:12']);
  });

  it('adds a MAC to a vif that had none when new MACs are asked for', () => {
    const text = fs.readFileSync(join(XEN, 'xlexample', 'xlexample.pvlinux'), 'utf8');
    const out = rewriteXlConfig(text, 'x', specOf(text, 'x'), { disks: new Map([['xvda.img', lv('/dev/vg1/x')]]), macs: { kind: 'new', seed: 's' } });
    expect(readBack(out.text).nics[0]!.mac).toMatch(/^00:16:3e:/);
  });

  it('renames the guest and drops its uuid when asked, leaving the rest', () => {
    const text = fleetCfg('web01');
    const out = rewriteXlConfig(text, 'web01.cfg', specOf(text, 'web01.cfg'), { disks: new Map([['xvda.img', lv('/dev/vg1/w')]]), name: 'web01-copy', uuid: 'drop' });
    expect(readBack(out.text).name).toBe('web01-copy');
    expect(out.text).not.toMatch(/uuid/);
    expect(out.text.split('\n')).toHaveLength(text.split('\n').length - 1);
    expect(out.text).toContain('name = "web01-copy"\ntype = "pvh"\n');
  });

  it('notes a restored disk the config does not attach', () => {
    const text = fleetCfg('web01');
    const spec = { ...specOf(text, 'web01.cfg') };
    spec.disks = [...spec.disks, { name: 'extra.img', origin: '/srv/extra.img', format: 'raw', storage: 'file', readOnly: false }];
    const out = rewriteXlConfig(text, 'web01.cfg', spec, { disks: new Map([['xvda.img', lv('/dev/vg1/w')], ['extra.img', file('/srv/p/extra.img')]]) });
    expect(out.notes).toEqual(['web01.cfg: disk extra.img (/srv/extra.img) is restored, but the config attaches no disk at that path']);
  });
});

describe('refusing what cannot be rewritten, with one line naming file and line', () => {
  const refusal = (fn: () => unknown): string => {
    try {
      fn();
    } catch (err) {
      expect(err).toBeInstanceOf(InputError);
      expect((err as Error).message).not.toContain('\n');
      return (err as Error).message;
    }
    throw new Error('expected a refusal');
  };

  it('a disk reached through a block script', () => {
    const text = 'name = "s"\ndisk = [ \'iscsi:iqn.2001-05.com.example:disk1,xvdk,w\' ]\n';
    const spec: GuestSpec = { nics: [], disks: [{ name: 'xvdk.img', device: 'xvdk', origin: 'x', format: 'raw', storage: 'block', readOnly: false }], bootGroup: 0, bootPriority: 0 };
    expect(refusal(() => rewriteXlConfig(text, 's.cfg', spec, { disks: new Map([['xvdk.img', lv('/dev/vg1/s')]]) }))).toBe(
      "s.cfg:2: disk xvdk is reached through block script block-iscsi ('iscsi:iqn.2001-05.com.example:disk1,xvdk,w'), not a path ferry can restore to; replace it with a plain disk in the config before the restore",
    );
  });

  it('a disk of the config that no disk of the restore point is', () => {
    const text = fleetCfg('db01');
    const spec = specOf(text, 'db01.cfg');
    spec.disks = spec.disks.slice(0, 1);
    expect(refusal(() => rewriteXlConfig(text, 'db01.cfg', spec, { disks: new Map([['xvda.img', lv('/dev/vg1/a')]]) }))).toBe(
      'db01.cfg:13: disk xvdb (/var/lib/xen/images/db01-swap.img) is in the config but in no disk of the restore point; restore from a restore point that holds it, or remove it from the config',
    );
  });

  it('a disk of the restore point given no new storage, or a relative path', () => {
    const text = fleetCfg('web01');
    const spec = specOf(text, 'web01.cfg');
    expect(refusal(() => rewriteXlConfig(text, 'web01.cfg', spec, { disks: new Map() }))).toBe(
      'web01.cfg:12: no new storage was given for disk xvda.img (xvda); place every disk of the restore point before rewriting its config',
    );
    expect(refusal(() => rewriteXlConfig(text, 'web01.cfg', spec, { disks: new Map([['xvda.img', lv('vg1/web01')]]) }))).toMatch(/^web01\.cfg:12: new path "vg1\/web01" of disk xvda\.img must be absolute/);
  });

  it('a new path the cfg\'s quotes cannot hold', () => {
    const text = fleetCfg('web01');
    expect(refusal(() => rewriteXlConfig(text, 'web01.cfg', specOf(text, 'web01.cfg'), { disks: new Map([['xvda.img', file("/srv/it's.img")]]) }))).toBe(
      'web01.cfg:12: cannot write "file:/srv/it\'s.img,xvda,w" into an xl string quoted with \'; choose a path or name without quotes or backslashes',
    );
  });

  it('qcow2 storage for a disk that insists on backendtype=phy', () => {
    const text = "name = \"p\"\ndisk = [ '/dev/vg0/x,raw,xvdi,rw,backendtype=phy,discard' ]\n";
    expect(refusal(() => rewriteXlConfig(text, 'p.cfg', specOf(text, 'p.cfg'), { disks: new Map([['xvdi.img', qcow2('/srv/p.qcow2')]]) }))).toMatch(
      /^p\.cfg:2: disk xvdi asks for backendtype=phy, which cannot serve the qcow2 image/,
    );
  });
});

describe('an xl cfg for a guest backed up without one', () => {
  const spec: GuestSpec = {
    vcpus: 2, memoryMiB: 1024, maxMemoryMiB: 2048,
    nics: [{ mac: '00:16:3e:1a:2b:01', bridge: 'xenbr0', model: 'e1000' }, {}],
    disks: [
      { name: 'disk0.img', device: 'xvda', origin: '/dev/vg0/web01', format: 'raw', storage: 'lv', readOnly: false },
      { name: 'disk1.img', origin: '/srv/data.qcow2', format: 'qcow2', storage: 'file', readOnly: true },
    ],
    bootGroup: 0, bootPriority: 0,
  };

  it('names the machine, its NICs on the mapped bridges and its disks at their new places, and reads back with the xl parser', () => {
    const out = generateXlConfig('web01', spec, { disks: new Map([['disk0.img', lv('/dev/vg1/web01')], ['disk1.img', qcow2('/srv/p/data.qcow2')]]), bridges: { xenbr0: 'br-prod' } });
    const guest = readBack(out.text);
    expect(guest).toMatchObject({ name: 'web01', vcpus: 2, memoryMiB: 1024, maxMemoryMiB: 2048 });
    expect(guest.nics).toEqual([{ mac: '00:16:3e:1a:2b:01', bridge: 'br-prod', model: 'e1000' }, { bridge: 'br-prod' }]);
    expect(guest.disks).toEqual([
      { device: 'xvda', path: '/dev/vg1/web01', format: 'raw', readOnly: false },
      { device: 'xvdb', path: '/srv/p/data.qcow2', format: 'qcow2', readOnly: true },
    ]);
    expect(out.text).not.toMatch(/^(type|kernel|bootloader|builder)\s*=/m);
    expect(out.notes).toEqual([]);
  });

  it('assumes 512 MiB and one vCPU for an image-mode backup that recorded neither, and says so', () => {
    const bare: GuestSpec = { nics: [], disks: [spec.disks[0]!], bootGroup: 0, bootPriority: 0 };
    const out = generateXlConfig('img01', bare, { disks: new Map([['disk0.img', lv('/dev/vg1/img01')]]) });
    expect(readBack(out.text)).toMatchObject({ name: 'img01', memoryMiB: 512, vcpus: 1, nics: [] });
    expect(out.notes).toEqual(['img01: the restore point records no memory size: 512 MiB assumed', 'img01: the restore point records no vCPU count: 1 assumed']);
  });
});
