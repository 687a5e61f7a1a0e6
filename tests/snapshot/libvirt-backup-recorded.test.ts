// The libvirt backup provider at the command boundary, against virsh and
// qemu-img output recorded from real libvirt 9.0 / QEMU 7.2
// (tests/fixtures/libvirt/README.md). web01 runs with vda qcow2, vdb and vdc
// raw and an empty CD-ROM hdc; its UUID is in dumpxml-web01.stdout.
import { mkdtempSync, readFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LibvirtBackupProvider } from '../../src/snapshot/libvirtBackup';
import { newRunId } from '../../src/snapshot/provider';
import { decodeTracking, encodeTracking } from '../../src/snapshot/libvirtBackupXml';
import { qemuImgConvertArgs, qemuImgMapArgs } from '../../src/snapshot/libvirtQemuImg';
import { presentRanges } from '../../src/snapshot/qemuImageMap';
import { RecordedCommandRunner, type RecordedReply } from '../support/recordedRunner';
import type { CommandResult, RunOptions } from '../../src/hypervisor/commandRunner';
import type { GuestDisk } from '../../src/hypervisor/driver';
import { HypervisorError, UsageError } from '../../src/errors';
import { recordedVirsh } from '../support/libvirtGuest';
import { useScratch } from '../support/scratch';

const FIXTURES = join(__dirname, '..', 'fixtures', 'libvirt');
const DIR = '/var/tmp/ferry-libvirt-fixtures';
const UUID = '1d4e7ed6-eaba-4867-8289-43678b6d98f6';
const work = useScratch('libvirt-recorded').dir;

const vda: GuestDisk = { device: 'vda', path: `${DIR}/web01-vda.qcow2`, format: 'qcow2', readOnly: false };
const vdb: GuestDisk = { device: 'vdb', path: `${DIR}/web01-vdb.img`, format: 'raw', readOnly: false };
const fixture = (name: string) => readFileSync(join(FIXTURES, name), 'utf8');

/** Keeps the XML documents handed to backup-begin (the provider deletes them afterwards). */
class CapturingRunner extends RecordedCommandRunner {
  readonly documents: string[] = [];
  /** Called before each command, e.g. to make the file a started job would write. */
  before?: (args: readonly string[]) => void;
  override async run(cmd: string, args: readonly string[], opts?: RunOptions): Promise<CommandResult> {
    for (const a of args) if (a.endsWith('.xml') && existsSync(a)) this.documents.push(readFileSync(a, 'utf8'));
    this.before?.(args);
    return super.run(cmd, args, opts);
  }
}

const lines = (runner: RecordedCommandRunner) =>
  runner.commandLines().map((l) => l.replace('virsh -c qemu:///system ', '').split(work).join('W'));
const target = (run: string, dev: string, ext: string) => join(work, `ferry-${run}-web01-${dev}.${ext}`);
const xmlFiles = (run: string, withCheckpoint: boolean) =>
  [join(work, `ferry-${run}-web01.backup.xml`), ...(withCheckpoint ? [join(work, `ferry-${run}-web01.checkpoint.xml`)] : [])];
const domain = (): RecordedReply[] => [
  recordedVirsh(['list', '--name'], 'list-active-name'), // web01 only
  recordedVirsh(['dumpxml', 'web01'], 'dumpxml-web01'),
];
const qemuImg = (args: string[], name?: string): RecordedReply => ({
  cmd: 'qemu-img', args, ...(name ? { stdout: fixture(`${name}.stdout`) } : {}),
});
const r1Token = () => encodeTracking({ domain: 'web01', uuid: UUID, checkpoint: 'ferry-r1', device: 'vda', path: vda.path });
const provider = (runner: RecordedCommandRunner, workDir = work) => new LibvirtBackupProvider({ runner, workDir, pollIntervalMs: 1 });

describe('LibvirtBackupProvider.create (recorded libvirt 9.0)', () => {
  it('first run: a full push backup into a qcow2 target with a new checkpoint, converted to a sparse raw readPath', async () => {
    const runner = new CapturingRunner([
      ...domain(),
      recordedVirsh(['checkpoint-list', 'web01', '--name'], 'checkpoint-list-none'),
      recordedVirsh(['backup-begin', 'web01', ...xmlFiles('r1', true)], 'backup-begin-r1'),
      recordedVirsh(['domjobinfo', 'web01'], 'domjobinfo-none'),
      recordedVirsh(['domjobinfo', 'web01', '--completed'], 'domjobinfo-completed'),
      qemuImg(qemuImgConvertArgs(target('r1', 'vda', 'qcow2'), target('r1', 'vda', 'raw'))),
      recordedVirsh(['checkpoint-list', 'web01', '--name'], 'checkpoint-list-r1'),
    ]);
    const [snap] = await provider(runner).create([vda], 'r1');
    expect(lines(runner)).toEqual([
      'list --name', 'dumpxml web01', 'checkpoint-list web01 --name',
      'backup-begin web01 W/ferry-r1-web01.backup.xml W/ferry-r1-web01.checkpoint.xml',
      'domjobinfo web01', 'domjobinfo web01 --completed',
      `qemu-img convert -q -O raw 'json:{"driver":"qcow2","backing":null,"file":{"driver":"file","filename":"W/ferry-r1-web01-vda.qcow2"}}' W/ferry-r1-web01-vda.raw`,
      'checkpoint-list web01 --name',
    ]);
    // Every drive is named: only vda is copied; only vda gets a bitmap; the empty CD-ROM is left alone.
    expect(runner.documents[0]).toBe(`<domainbackup mode='push'>
  <disks>
    <disk name='vda' backup='yes' type='file' backupmode='full'>
      <target file='${target('r1', 'vda', 'qcow2')}'/>
      <driver type='qcow2'/>
    </disk>
    <disk name='vdb' backup='no'/>
    <disk name='vdc' backup='no'/>
    <disk name='hdc' backup='no'/>
  </disks>
</domainbackup>
`);
    expect(runner.documents[1]).toContain("<name>ferry-r1</name>");
    expect(runner.documents[1]).toContain("<disk name='vda' checkpoint='bitmap'/>\n    <disk name='vdb' checkpoint='no'/>");
    expect(snap).toEqual({
      disk: vda,
      readPath: target('r1', 'vda', 'raw'),
      ownedName: target('r1', 'vda', 'raw'),
      tracking: r1Token(),
    });
    expect(existsSync(xmlFiles('r1', true)[0]!)).toBe(false); // the XML files are gone again
  });

  it('next run: an incremental copy since the last checkpoint; changed = the clusters allocated in the qcow2 target', async () => {
    const runner = new CapturingRunner([
      ...domain(),
      recordedVirsh(['checkpoint-list', 'web01', '--name'], 'checkpoint-list-r1'),
      recordedVirsh(['checkpoint-dumpxml', 'web01', 'ferry-r1', '--no-domain'], 'checkpoint-dumpxml-r1'),
      recordedVirsh(['backup-begin', 'web01', ...xmlFiles('r2', true)], 'backup-begin-r2'),
      recordedVirsh(['domjobinfo', 'web01'], 'domjobinfo-running'),
      recordedVirsh(['domjobinfo', 'web01'], 'domjobinfo-none'),
      recordedVirsh(['domjobinfo', 'web01', '--completed'], 'domjobinfo-completed-r2'),
      qemuImg(qemuImgMapArgs(target('r2', 'vda', 'qcow2')), 'qemu-img-map-r2'),
      qemuImg(qemuImgConvertArgs(target('r2', 'vda', 'qcow2'), target('r2', 'vda', 'raw'))),
      recordedVirsh(['checkpoint-list', 'web01', '--name'], 'checkpoint-list-r1-r2'),
    ]);
    const [snap] = await provider(runner).create([vda], 'r2', [r1Token()]);
    expect(runner.documents[0]).toContain("<disk name='vda' backup='yes' type='file' backupmode='incremental' incremental='ferry-r1'>");
    expect(snap!.fullReadReason).toBeUndefined();
    expect(decodeTracking(snap!.tracking!)).toMatchObject({ checkpoint: 'ferry-r2', uuid: UUID });
    // Recorded map: 17 allocated 64 KiB-aligned runs, adjacent ones merged; 1376256 bytes in all.
    expect(snap!.changed![0]).toEqual({ start: 9437184, end: 9568256 });
    expect(snap!.changed!.reduce((n, r) => n + r.end - r.start, 0)).toBe(1376256);
    // ferry-r1 stays: this run's restore point is not written yet, so the next run may still need it.
    expect(lines(runner).filter((l) => l.startsWith('checkpoint-delete'))).toEqual([]);
  });

  it('copies in full, saying why, when the last checkpoint is gone', async () => {
    const runner = new CapturingRunner([
      ...domain(),
      recordedVirsh(['checkpoint-list', 'web01', '--name'], 'checkpoint-list-none'),
      recordedVirsh(['backup-begin', 'web01', ...xmlFiles('r2', true)], 'backup-begin-r1'),
      recordedVirsh(['domjobinfo', 'web01'], 'domjobinfo-none'),
      recordedVirsh(['domjobinfo', 'web01', '--completed'], 'domjobinfo-completed'),
      qemuImg(qemuImgConvertArgs(target('r2', 'vda', 'qcow2'), target('r2', 'vda', 'raw'))),
      recordedVirsh(['checkpoint-list', 'web01', '--name'], 'checkpoint-list-r1'),
    ]);
    const [snap] = await provider(runner).create([vda], 'r2', [r1Token()]);
    expect(snap!.changed).toBeUndefined();
    expect(snap!.fullReadReason).toBe('checkpoint ferry-r1 of the last backup no longer exists on domain web01');
    expect(runner.documents[0]).toContain("backupmode='full'");
  });

  it('copies in full when the domain was redefined (new UUID) or the disk swapped, without asking libvirt about the old checkpoint', async () => {
    for (const [token, reason] of [
      [encodeTracking({ domain: 'web01', uuid: '00000000-0000-0000-0000-000000000000', checkpoint: 'ferry-r1', device: 'vda', path: vda.path }),
        /domain web01 was redefined since the last backup \(UUID 0{8}-0{4}-0{4}-0{4}-0{12} is now 1d4e7ed6/],
      [encodeTracking({ domain: 'web01', uuid: UUID, checkpoint: 'ferry-r1', device: 'vda', path: '/old/web01.qcow2' }),
        /the last backup tracked vda at \/old\/web01.qcow2, the disk is now vda at/],
      [{ kind: 'btrfs', token: 'x' }, /tracked changes with btrfs, not libvirt checkpoints/],
    ] as const) {
      const runner = new CapturingRunner([
        ...domain(),
        recordedVirsh(['checkpoint-list', 'web01', '--name'], 'checkpoint-list-r1'),
        recordedVirsh(['backup-begin', 'web01', ...xmlFiles('r2', true)], 'backup-begin-r1'),
        recordedVirsh(['domjobinfo', 'web01'], 'domjobinfo-none'),
        recordedVirsh(['domjobinfo', 'web01', '--completed'], 'domjobinfo-completed'),
        qemuImg(qemuImgConvertArgs(target('r2', 'vda', 'qcow2'), target('r2', 'vda', 'raw'))),
        recordedVirsh(['checkpoint-list', 'web01', '--name'], 'checkpoint-list-r1-r2'),
        recordedVirsh(['checkpoint-delete', 'web01', 'ferry-r1'], 'checkpoint-delete-r1'),
      ]);
      const [snap] = await provider(runner).create([vda], 'r2', [token]);
      expect(snap!.changed).toBeUndefined();
      expect(snap!.fullReadReason).toMatch(reason);
      expect(lines(runner).some((l) => l.startsWith('checkpoint-dumpxml'))).toBe(false);
    }
  });

  it('retries in full when libvirt refuses the incremental (bitmap or checkpoint missing), with libvirt\'s reason', async () => {
    const runner = new CapturingRunner([
      ...domain(),
      recordedVirsh(['checkpoint-list', 'web01', '--name'], 'checkpoint-list-r1'),
      recordedVirsh(['checkpoint-dumpxml', 'web01', 'ferry-r1', '--no-domain'], 'checkpoint-dumpxml-r1'),
      recordedVirsh(['backup-begin', 'web01', ...xmlFiles('r3', true)], 'backup-begin-incremental-unknown'),
      recordedVirsh(['backup-begin', 'web01', ...xmlFiles('r3', true)], 'backup-begin-r1'),
      recordedVirsh(['domjobinfo', 'web01'], 'domjobinfo-none'),
      recordedVirsh(['domjobinfo', 'web01', '--completed'], 'domjobinfo-completed'),
      qemuImg(qemuImgConvertArgs(target('r3', 'vda', 'qcow2'), target('r3', 'vda', 'raw'))),
      recordedVirsh(['checkpoint-list', 'web01', '--name'], 'checkpoint-list-r1'),
    ]);
    const [snap] = await provider(runner).create([vda], 'r3', [r1Token()]);
    expect(runner.documents[0]).toContain("backupmode='incremental' incremental='ferry-r1'");
    expect(runner.documents[2]).toContain("backupmode='full'");
    expect(snap!.changed).toBeUndefined();
    expect(snap!.fullReadReason).toBe(
      "libvirt refused the incremental backup of vda since checkpoint ferry-r1: Domain checkpoint not found: Checkpoint 'ferry-gone' for incremental backup of disk 'vda' not found",
    );
  });

  it('copies a raw disk without a checkpoint and says it cannot be tracked', async () => {
    const runner = new CapturingRunner([
      ...domain(),
      recordedVirsh(['checkpoint-list', 'web01', '--name'], 'checkpoint-list-r1'),
      recordedVirsh(['backup-begin', 'web01', ...xmlFiles('r2', false)], 'backup-begin-r1'),
      recordedVirsh(['domjobinfo', 'web01'], 'domjobinfo-none'),
      recordedVirsh(['domjobinfo', 'web01', '--completed'], 'domjobinfo-completed'),
      qemuImg(qemuImgConvertArgs(target('r2', 'vdb', 'qcow2'), target('r2', 'vdb', 'raw'))),
      recordedVirsh(['checkpoint-list', 'web01', '--name'], 'checkpoint-list-r1'),
      recordedVirsh(['checkpoint-delete', 'web01', 'ferry-r1'], 'checkpoint-delete-r1'),
    ]);
    const [snap] = await provider(runner).create([vdb], 'r2', [undefined]);
    expect(snap!.tracking).toBeUndefined();
    expect(snap!.fullReadReason).toBe('disk vdb is raw: libvirt tracks changes only on qcow2 disks (the bitmap lives in the image)');
    expect(runner.documents).toHaveLength(1); // no checkpoint document
  });

  it('fails when the job is cancelled, removing the new checkpoint and its files', async () => {
    const runner = new CapturingRunner([
      ...domain(),
      recordedVirsh(['checkpoint-list', 'web01', '--name'], 'checkpoint-list-none'),
      recordedVirsh(['backup-begin', 'web01', ...xmlFiles('r1', true)], 'backup-begin-r1'),
      recordedVirsh(['domjobinfo', 'web01'], 'domjobinfo-none'),
      recordedVirsh(['domjobinfo', 'web01', '--completed'], 'domjobinfo-cancelled'),
      recordedVirsh(['checkpoint-delete', 'web01', 'ferry-r1'], 'checkpoint-delete-r1'),
    ]);
    runner.before = (args) => {
      if (args.includes('backup-begin')) writeFileSync(target('r1', 'vda', 'qcow2'), 'partial copy'); // what QEMU had written
    };
    await expect(provider(runner).create([vda], 'r1')).rejects.toThrow('backup of domain web01 was cancelled');
    expect(existsSync(target('r1', 'vda', 'qcow2'))).toBe(false);
    expect(runner.unused()).toEqual([]);
  });

  it('refuses disks of two domains, disks of no running domain, and run ids that cannot name a checkpoint', async () => {
    const runner = new RecordedCommandRunner([...domain()]);
    await expect(provider(runner).create([{ ...vda, path: '/elsewhere.qcow2' }], 'r1'))
      .rejects.toThrow('disk vda (/elsewhere.qcow2) belongs to no running libvirt domain on qemu:///system');
    await expect(provider(new RecordedCommandRunner()).create([vda], 'r 1')).rejects.toThrow(UsageError);
    const both = new RecordedCommandRunner([...domain()]);
    await expect(provider(both).create([vda, { ...vdb, path: '/other/disk.img' }], 'r1')).rejects.toThrow(/is not a disk of domain web01/);
  });
});

describe('LibvirtBackupProvider housekeeping (recorded libvirt 9.0)', () => {
  it('takes only disks of running domains, never a CD-ROM', async () => {
    const p = provider(new RecordedCommandRunner([...domain(), ...domain(), ...domain()].map((r) => ({ ...r, repeat: true }))));
    expect(await p.canHandle(vda)).toBe(true);
    expect(await p.canHandle({ ...vda, path: `${DIR}/db01-vda.img` })).toBe(false); // db01 is shut off
    expect(await p.canHandle({ ...vda, cdrom: true })).toBe(false);
  });

  it('commit deletes the ferry checkpoints older than the saved restore point\'s', async () => {
    const runner = new RecordedCommandRunner([
      recordedVirsh(['checkpoint-list', 'web01', '--name'], 'checkpoint-list-r1-r2'),
      recordedVirsh(['checkpoint-delete', 'web01', 'ferry-r1'], 'checkpoint-delete-r1'),
    ]);
    const tracking = encodeTracking({ domain: 'web01', uuid: UUID, checkpoint: 'ferry-r2', device: 'vda', path: vda.path });
    await provider(runner).commit([{ disk: vda, readPath: target('r2', 'vda', 'raw'), ownedName: 'x', tracking }]);
    expect(lines(runner)).toEqual(['checkpoint-list web01 --name', 'checkpoint-delete web01 ferry-r1']);
  });

  it('removeLeftovers aborts a killed run\'s backup job into ferry files, and waits until it is gone', async () => {
    const runner = new RecordedCommandRunner([
      recordedVirsh(['list', '--name'], 'list-active-name'),
      recordedVirsh(['domjobinfo', 'web01'], 'domjobinfo-running'),
      recordedVirsh(['backup-dumpxml', 'web01'], 'backup-dumpxml-running'),
      recordedVirsh(['domjobabort', 'web01'], 'domjobabort'),
      recordedVirsh(['domjobinfo', 'web01'], 'domjobinfo-none'),
    ]);
    // The recorded job writes to DIR/work/ferry-dead-web01-vdc.qcow2.
    const removed = await provider(runner, `${DIR}/work`).removeLeftovers();
    expect(removed).toContain('web01: backup job to ferry-dead-web01-vdc.qcow2');
    expect(runner.unused()).toEqual([]);
  });

  it('removeLeftovers leaves a backup job that writes somewhere else alone, and removes only ferry- files', async () => {
    const runner = new RecordedCommandRunner([
      recordedVirsh(['list', '--name'], 'list-active-name'),
      recordedVirsh(['domjobinfo', 'web01'], 'domjobinfo-running'),
      recordedVirsh(['backup-dumpxml', 'web01'], 'backup-dumpxml-running'),
    ]);
    const dir = mkdtempSync(join(work, 'leftovers-'));
    writeFileSync(join(dir, 'ferry-r9-web01-vda.raw'), '');
    writeFileSync(join(dir, 'web01-golden.qcow2'), '');
    const live = `ferry-${newRunId(new Date(), process.pid)}-web01-vda.raw`; // a run that still runs: it may be reading it
    writeFileSync(join(dir, live), '');
    expect(await provider(runner, dir).removeLeftovers()).toEqual([join(dir, 'ferry-r9-web01-vda.raw')]);
    expect(existsSync(join(dir, 'web01-golden.qcow2'))).toBe(true);
    expect(existsSync(join(dir, live))).toBe(true);
    expect(lines(runner)).not.toContain('domjobabort web01');
  });

  it('removeLeftovers leaves the backup job of a run that still runs on this host into ferry files', async () => {
    const live = `ferry-${newRunId(new Date(), process.pid)}`;
    const dumped = recordedVirsh(['backup-dumpxml', 'web01'], 'backup-dumpxml-running');
    const runner = new RecordedCommandRunner([
      recordedVirsh(['list', '--name'], 'list-active-name'),
      recordedVirsh(['domjobinfo', 'web01'], 'domjobinfo-running'),
      { ...dumped, stdout: dumped.stdout!.replaceAll('ferry-dead', live) },
    ]);
    expect(await provider(runner, `${DIR}/work`).removeLeftovers()).toEqual([]);
    expect(runner.unused()).toEqual([]);
    expect(lines(runner)).not.toContain('domjobabort web01');
  });

  it('remove refuses a path that is not a ferry file in its directory', async () => {
    await expect(provider(new RecordedCommandRunner()).remove({ disk: vda, readPath: vda.path, ownedName: vda.path })).rejects.toThrow(UsageError);
  });
});

describe('qemu-img map reading', () => {
  it('counts zero clusters the backup wrote as changed, and refuses a map without "present"', () => {
    const map = JSON.stringify([
      { start: 0, length: 65536, depth: 0, present: true, zero: true, data: false },
      { start: 65536, length: 65536, depth: 0, present: true, zero: false, data: true, offset: 1 },
      { start: 131072, length: 65536, depth: 0, present: false, zero: true, data: false },
      { start: 196608, length: 65536, depth: 0, present: true, zero: false, data: true, offset: 2 },
    ]);
    expect(presentRanges(map, 't')).toEqual([{ start: 0, end: 131072 }, { start: 196608, end: 262144 }]);
    expect(() => presentRanges('[{"start":0,"length":65536,"zero":true,"data":false}]', 't')).toThrow(HypervisorError);
    expect(() => presentRanges('[{"start":65536,"length":1,"present":true}]', 't')).toThrow(/not contiguous/);
  });
});
