// A guest whose disk was a qcow2 file comes back as a qcow2 file: a qcow2
// backed up as its image file (image mode) is restored as that image; one
// whose guest-visible bytes were backed up (what a backup through the
// hypervisor stores, with the domain's format, qcow2, in the spec) is
// restored raw and sparse, then converted with qemu-img on its host. Either
// way the rewritten domain XML says qcow2 (not raw, which would hand the
// guest the qcow2 container as its disk, or the reverse).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { useLibvirtd } from '../support/libvirtGuest';
import { TestRepo, allocatedBytes, parseJson, sha256File, useScratch, writeRandomishImage } from '../support';
import { mustRun } from '../support/system';

const scratch = useScratch('site-restore-qcow2');
const MiB = 1024 * 1024;
let repo: TestRepo;
let hostsToml: string;
const pool = scratch.mkdir('pool');
const etc = scratch.path('etc');
let raw: string;
let qcow2: string;
let visible: string;

function domainXml(image: string, format: string, name = 'qc01'): string {
  return `<domain type='kvm'>\n  <name>${name}</name>\n  <memory unit='MiB'>256</memory>\n  <vcpu>1</vcpu>\n  <os><type arch='x86_64'>hvm</type></os>\n  <devices>\n    <disk type='file' device='disk'>\n      <driver name='qemu' type='${format}'/>\n      <source file='${image}'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n  </devices>\n</domain>\n`;
}

beforeAll(async () => {
  // The restore asks the host's libvirtd whether qc01 runs before it writes anything: a real one must answer.
  await useLibvirtd(scratch);
  repo = await TestRepo.init(scratch, 'repo');
  raw = scratch.path('qc01-data.raw');
  writeRandomishImage(raw, 16 * MiB, 91);
  qcow2 = scratch.path('qc01.qcow2');
  await mustRun('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
  const conf = scratch.path('qc01.xml');
  fs.writeFileSync(conf, domainXml(qcow2, 'qcow2'));
  await repo.backup('qc01', [qcow2], ['--config', conf]);
  // qc02: the guest-visible bytes of a real qcow2 disk, as a backup through the hypervisor reads them.
  const qc02 = scratch.path('qc02.qcow2');
  await mustRun('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, qc02]);
  visible = scratch.path('qc02-visible');
  await mustRun('qemu-img', ['convert', '-q', '-f', 'qcow2', '-O', 'raw', qc02, visible]);
  fs.writeFileSync(scratch.path('qc02.xml'), domainXml(visible, 'qcow2', 'qc02'));
  await repo.backup('qc02', [visible], ['--config', scratch.path('qc02.xml')]);
  hostsToml = scratch.path('hosts.toml');
  fs.writeFileSync(hostsToml, `[[host]]\nname = "here"\naddress = "local"\nhypervisor = "libvirt"\nmemory = "2G"\ncpus = 2\nconfig_dir = "${etc}"\n[[host.pool]]\nname = "images"\ntype = "dir"\npath = "${pool}"\n`);
});

describe('site restore of a qcow2 disk', () => {
  it('restores the qcow2 image as qcow2, and the domain XML names it with driver type qcow2', async () => {
    const report = parseJson<Array<{ guest: string; ok: boolean; error?: string; disks: Array<{ target: string }> }>>(await repo.run(['site', 'restore', '--no-start', '--hosts', hostsToml, '--guest', 'qc01', '--json']));
    expect(report[0]!.ok, report[0]!.error).toBe(true);
    const target = report[0]!.disks[0]!.target;
    expect(path.dirname(path.dirname(target))).toBe(pool);
    expect(await sha256File(target)).toBe(await sha256File(qcow2));
    const info = JSON.parse(await mustRun('qemu-img', ['info', '--output=json', target])) as { format: string };
    expect(info.format).toBe('qcow2');
    // What the guest sees is what it saw.
    await mustRun('qemu-img', ['compare', '-q', '-f', 'qcow2', '-F', 'raw', target, raw]);
    const xml = fs.readFileSync(path.join(etc, 'qc01.xml'), 'utf8');
    expect(xml).toContain(`<driver name='qemu' type='qcow2'/>\n      <source file='${target}'/>`);
  });

  it('converts guest-visible bytes of a qcow2 disk to qcow2 on the host, sparse, before the final name', async () => {
    const dry = await repo.run(['site', 'restore', '--no-start', '--hosts', hostsToml, '--guest', 'qc02', '--dry-run']);
    expect(dry.stdout).toMatch(/here: before that mv, unless the restored bytes are a qcow2 image already: qemu-img convert -q -f raw -O qcow2 \S+\.ferry-partial \S+\.ferry-partial\.qcow2/);
    const report = parseJson<Array<{ guest: string; ok: boolean; error?: string; disks: Array<{ target: string }> }>>(await repo.run(['site', 'restore', '--no-start', '--hosts', hostsToml, '--guest', 'qc02', '--json']));
    expect(report[0]!.ok, report[0]!.error).toBe(true);
    const target = report[0]!.disks[0]!.target;
    const info = JSON.parse(await mustRun('qemu-img', ['info', '--output=json', target])) as { format: string; 'virtual-size': number };
    expect(info.format).toBe('qcow2');
    expect(info['virtual-size']).toBe(16 * MiB);
    expect(allocatedBytes(target)).toBeLessThanOrEqual(allocatedBytes(raw) + MiB); // the holes stayed holes
    await mustRun('qemu-img', ['compare', '-q', '-f', 'qcow2', '-F', 'raw', target, raw]);
    expect(fs.readdirSync(path.dirname(target))).toEqual([path.basename(target)]);
    expect(fs.readFileSync(path.join(etc, 'qc02.xml'), 'utf8')).toContain(`<driver name='qemu' type='qcow2'/>\n      <source file='${target}'/>`);
  });
});
