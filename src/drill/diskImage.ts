// Looking inside a restored disk image without booting it: its partitions
// (sfdisk), each attached read-only as a loop device at its offset (no
// partition scan: device nodes for partitions need udev, which a rescue
// system or container may lack), its file system type (blkid), a read-only
// file-system check, and the files of a kernel found as pygrub finds them —
// read with debugfs (ext2/3/4) and mtools (FAT) at the partition's offset in
// the image, without mounting, like pygrub's own libfsimage, so no kernel
// file-system driver is needed; other file systems are mounted read-only.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HypervisorError } from '../errors';
import { type CommandRunner, describeCommand, lastErrorLine } from '../hypervisor/commandRunner';

export interface ImagePartition {
  /** 1-based partition number; 0: the whole disk holds one file system (no partition table). */
  number: number;
  offsetBytes: number;
  sizeBytes: number;
}

/** What a read-only check of one partition found. */
export interface PartitionCheck {
  disk: string;
  partition: number;
  fileSystem?: string;
  /** clean: the checker found nothing; errors: it found damage; not-checked: swap, no file system, or no checker. */
  result: 'clean' | 'errors' | 'not-checked';
  detail: string;
}

/** Partitions of a raw image, or the whole image when it has no partition table. Extended-partition containers are left out. */
export async function imagePartitions(runner: CommandRunner, image: string): Promise<ImagePartition[]> {
  const r = await runner.run('sfdisk', ['--json', image]);
  const size = fs.statSync(image).size;
  if (r.code !== 0) return [{ number: 0, offsetBytes: 0, sizeBytes: size }];
  const table = (JSON.parse(r.stdout) as { partitiontable?: { sectorsize?: number; partitions?: { node: string; start: number; size: number; type: string }[] } }).partitiontable;
  const sector = table?.sectorsize ?? 512;
  const extended = new Set(['5', 'f', '85']);
  return (table?.partitions ?? [])
    .filter((p) => !extended.has(p.type.toLowerCase()))
    .map((p) => ({ number: Number(/(\d+)$/.exec(p.node)?.[1] ?? 0), offsetBytes: p.start * sector, sizeBytes: p.size * sector }));
}

/** Runs `body` with the partition attached read-only as a loop device, detached afterwards whatever happens. */
export async function withLoopPartition<T>(runner: CommandRunner, image: string, part: ImagePartition, body: (device: string) => Promise<T>): Promise<T> {
  const attach = await runner.run('losetup', ['--find', '--show', '--read-only', '--offset', String(part.offsetBytes), '--sizelimit', String(part.sizeBytes), image]);
  if (attach.code !== 0) throw new HypervisorError(`cannot attach ${image} (partition ${part.number}) as a loop device: ${lastErrorLine(attach.stderr)}`);
  const device = attach.stdout.trim();
  try {
    return await body(device);
  } finally {
    const detach = await runner.run('losetup', ['--detach', device]);
    if (detach.code !== 0) throw new HypervisorError(`cannot detach loop device ${device} of ${image}: ${lastErrorLine(detach.stderr)}`);
  }
}

/** The file system type blkid finds on a device; undefined when it finds none. */
export async function fileSystemType(runner: CommandRunner, device: string): Promise<string | undefined> {
  const r = await runner.run('blkid', ['--probe', '--output', 'value', '--match-tag', 'TYPE', device]);
  return r.code === 0 && r.stdout.trim() !== '' ? r.stdout.trim() : undefined;
}

/** The read-only checker of each file system type; its exit code 0 means clean. */
function checkerFor(type: string, device: string): [string, string[]] | undefined {
  if (/^ext[234]$/.test(type)) return ['e2fsck', ['-f', '-n', device]];
  if (type === 'xfs') return ['xfs_repair', ['-n', device]];
  if (type === 'btrfs') return ['btrfs', ['check', '--readonly', device]];
  if (type === 'vfat' || type === 'msdos') return ['fsck.vfat', ['-n', device]];
  return undefined;
}

/** A read-only check of every partition of `image` (`disk` names it in the results). */
export async function checkImageFileSystems(runner: CommandRunner, image: string, disk: string): Promise<PartitionCheck[]> {
  const checks: PartitionCheck[] = [];
  for (const part of await imagePartitions(runner, image)) {
    checks.push(await withLoopPartition(runner, image, part, async (device): Promise<PartitionCheck> => {
      const base = { disk, partition: part.number };
      const type = await fileSystemType(runner, device);
      if (type === undefined) return { ...base, result: 'not-checked', detail: 'no file system found' };
      if (type === 'swap') return { ...base, fileSystem: type, result: 'not-checked', detail: 'swap space' };
      const checker = checkerFor(type, device);
      if (!checker) return { ...base, fileSystem: type, result: 'not-checked', detail: `no read-only checker known for ${type}` };
      const r = await runner.run(checker[0], checker[1], { timeoutMs: 60 * 60_000 });
      const said = lastErrorLine(r.stderr) || r.stdout.trim().split('\n').pop()?.trim() || '';
      return r.code === 0
        ? { ...base, fileSystem: type, result: 'clean', detail: `${describeCommand(checker[0], checker[1])}: clean` }
        : { ...base, fileSystem: type, result: 'errors', detail: `${describeCommand(checker[0], checker[1])} exited with ${r.code}${said ? `: ${said}` : ''}` };
    }));
  }
  return checks;
}

/** A kernel found in an image, copied out, with the command line its boot loader config gives. */
export interface FoundKernel {
  kernel: string;
  initrd?: string;
  /** The kernel arguments of the boot entry; undefined when no boot loader config named the kernel. */
  args?: string;
  /** Where it was found, for the report: `disk0.img partition 1: /boot/grub/grub.cfg`. */
  source: string;
  /** The partition that looks like the root file system (it has /etc and /sbin), by number. */
  rootPartition?: number;
}

const LOADER_CONFIGS = [
  '/boot/grub/grub.cfg', '/grub/grub.cfg', '/boot/grub2/grub.cfg', '/grub2/grub.cfg',
  '/boot/extlinux/extlinux.conf', '/extlinux/extlinux.conf', '/extlinux.conf',
  '/boot/syslinux/syslinux.cfg', '/syslinux/syslinux.cfg', '/syslinux.cfg', '/boot/grub/menu.lst', '/grub/menu.lst',
];

/** Read-only access to the files of one file system (absolute paths inside it). */
interface FileSystemFiles {
  readText(file: string): Promise<string | undefined>;
  /** Names in a directory; undefined when it is not one. */
  list(dir: string): Promise<string[] | undefined>;
  /** Copies a file out; false when it is not there. */
  copyOut(file: string, to: string): Promise<boolean>;
}

/**
 * The kernel of the first boot entry of a boot loader config (grub 2, grub
 * legacy menu.lst, extlinux/syslinux) on any partition, else the newest
 * /boot/vmlinuz-* (or /vmlinuz) with its initrd — what pygrub does for a Xen
 * PV guest. Copied into `outDir`. Undefined when no partition has one.
 */
export async function findKernelInImage(runner: CommandRunner, image: string, disk: string, outDir: string): Promise<FoundKernel | undefined> {
  let found: FoundKernel | undefined;
  let rootPartition: number | undefined;
  for (const part of await imagePartitions(runner, image)) {
    const type = await partitionType(runner, image, part);
    if (type === undefined || type === 'swap') continue;
    await withFiles(runner, image, part, type, outDir, async (files) => {
      if (rootPartition === undefined && (await files.list('/etc')) !== undefined && (await files.list('/sbin')) !== undefined) rootPartition = part.number;
      if (found) return;
      const entry = (await bootEntryFrom(files)) ?? (await newestKernel(files));
      if (!entry) return;
      const kernel = path.join(outDir, 'vmlinuz');
      if (!(await files.copyOut(entry.kernel, kernel))) return;
      const copy: FoundKernel = { kernel, source: `${disk} partition ${part.number}: ${entry.from}` };
      const initrd = path.join(outDir, 'initrd');
      if (entry.initrd !== undefined && (await files.copyOut(entry.initrd, initrd))) copy.initrd = initrd;
      if (entry.args !== undefined) copy.args = entry.args;
      found = copy;
    });
  }
  if (found && rootPartition !== undefined) found.rootPartition = rootPartition;
  return found;
}

/** The file system type blkid finds in a partition of an image, read at its offset. */
async function partitionType(runner: CommandRunner, image: string, part: ImagePartition): Promise<string | undefined> {
  const r = await runner.run('blkid', ['--probe', '--offset', String(part.offsetBytes), '--size', String(part.sizeBytes), '--output', 'value', '--match-tag', 'TYPE', image]);
  return r.code === 0 && r.stdout.trim() !== '' ? r.stdout.trim() : undefined;
}

/**
 * The files of one partition: debugfs (`IMAGE?offset=N`) for ext*, mtools
 * (`IMAGE@@N`) for FAT — both read the image file at the partition's offset,
 * no loop device, no mount —, a read-only mount of a loop device otherwise
 * (skipped when the kernel cannot mount it).
 */
async function withFiles(runner: CommandRunner, image: string, part: ImagePartition, type: string, scratch: string, body: (files: FileSystemFiles) => Promise<void>): Promise<void> {
  if (/^ext[234]$/.test(type)) return body(debugfsFiles(runner, `${image}?offset=${part.offsetBytes}`));
  if (type === 'vfat' || type === 'msdos') return body(mtoolsFiles(runner, `${image}@@${part.offsetBytes}`));
  await withLoopPartition(runner, image, part, async (device) => {
    const mountPoint = fs.mkdtempSync(path.join(scratch, 'mnt-'));
    const options = ['ro', ...(type === 'xfs' ? ['norecovery'] : [])];
    const mount = await runner.run('mount', ['-t', type, '-o', options.join(','), device, mountPoint]);
    if (mount.code !== 0) { fs.rmdirSync(mountPoint); return; }
    try {
      await body(mountedFiles(mountPoint));
    } finally {
      const umount = await runner.run('umount', [mountPoint]);
      if (umount.code !== 0) throw new HypervisorError(`cannot unmount ${mountPoint}: ${lastErrorLine(umount.stderr)}`);
      fs.rmdirSync(mountPoint);
    }
  });
}

/** debugfs opens the device read-only unless told -w; its errors go to stderr with exit 0, so they are looked for there. */
function debugfsFiles(runner: CommandRunner, source: string): FileSystemFiles {
  const request = async (command: string) => {
    const r = await runner.run('debugfs', ['-R', command, source]);
    const failed = r.code !== 0 || /not found|Ext2 inode is not a directory|Is a directory|Bad inode/i.test(r.stderr.split('\n').slice(1).join('\n'));
    return failed ? undefined : r.stdout;
  };
  const safe = (p: string) => /^\/[\w./+-]*$/.test(p);
  return {
    readText: async (file) => (safe(file) ? request(`cat ${file}`) : undefined),
    list: async (dir) => {
      if (!safe(dir)) return undefined;
      const out = await request(`ls -p ${dir}`);
      // `ls -p`: /inode/mode/uid/gid/name/size/ per entry.
      return out?.split('\n').map((l) => l.split('/')[5]).filter((n): n is string => n !== undefined && n !== '' && n !== '.' && n !== '..');
    },
    copyOut: async (file, to) => {
      if (!safe(file)) return false;
      fs.rmSync(to, { force: true });
      await request(`dump ${file} ${to}`);
      return fs.existsSync(to) && fs.statSync(to).size > 0;
    },
  };
}

function mtoolsFiles(runner: CommandRunner, source: string): FileSystemFiles {
  // A partition in an image, not a floppy: skip mtools' geometry sanity check.
  const env = { MTOOLS_SKIP_CHECK: '1' };
  return {
    readText: async (file) => {
      const r = await runner.run('mtype', ['-i', source, `::${file}`], { env });
      return r.code === 0 ? r.stdout : undefined;
    },
    list: async (dir) => {
      const r = await runner.run('mdir', ['-b', '-i', source, `::${dir}`], { env });
      return r.code === 0 ? r.stdout.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => path.posix.basename(l)) : undefined;
    },
    copyOut: async (file, to) => {
      fs.rmSync(to, { force: true });
      const r = await runner.run('mcopy', ['-n', '-i', source, `::${file}`, to], { env });
      return r.code === 0 && fs.existsSync(to);
    },
  };
}

function mountedFiles(root: string): FileSystemFiles {
  const inside = (p: string) => resolveInside(root, p);
  const isFile = (p: string) => fs.existsSync(p) && fs.statSync(p).isFile();
  return {
    readText: async (file) => (isFile(inside(file)) ? fs.readFileSync(inside(file), 'utf8') : undefined),
    list: async (dir) => {
      const d = inside(dir);
      return fs.existsSync(d) && fs.statSync(d).isDirectory() ? fs.readdirSync(d) : undefined;
    },
    copyOut: async (file, to) => {
      if (!isFile(inside(file))) return false;
      fs.copyFileSync(inside(file), to);
      return true;
    },
  };
}

interface BootEntry { kernel: string; initrd?: string; args?: string; from: string }

/** A path inside a mounted file system; absolute symlinks are taken relative to its root, never the host's. */
function resolveInside(root: string, p: string): string {
  let current = root;
  const parts = p.split('/').filter((s) => s !== '' && s !== '.');
  for (let hops = 0; parts.length > 0 && hops < 64; hops++) {
    const next = path.join(current, parts.shift()!);
    if (!next.startsWith(root)) return root;
    let target: string | undefined;
    try {
      if (fs.lstatSync(next).isSymbolicLink()) target = fs.readlinkSync(next);
    } catch {
      return next;
    }
    if (target === undefined) { current = next; continue; }
    parts.unshift(...target.split('/').filter((s) => s !== '' && s !== '.'));
    if (target.startsWith('/')) current = root;
  }
  return current.startsWith(root) ? current : root;
}

async function bootEntryFrom(files: FileSystemFiles): Promise<BootEntry | undefined> {
  for (const config of LOADER_CONFIGS) {
    const text = await files.readText(config);
    if (text === undefined) continue;
    const entry = config.endsWith('grub.cfg') ? grub2Entry(text) : config.endsWith('menu.lst') ? grubLegacyEntry(text) : syslinuxEntry(text);
    if (!entry) continue;
    const absolute = (p: string) => (p.startsWith('/') ? p : path.posix.join(path.posix.dirname(config), p));
    return { kernel: absolute(entry.kernel), ...(entry.initrd !== undefined ? { initrd: absolute(entry.initrd) } : {}), args: entry.args, from: config };
  }
  return undefined;
}

/** The first `linux`/`initrd` pair of grub.cfg (the default entry of a generated config). */
function grub2Entry(text: string): { kernel: string; initrd?: string; args: string } | undefined {
  const linux = /^\s*linux(?:efi|16)?\s+(\S+)\s*(.*)$/m.exec(text);
  if (!linux) return undefined;
  const initrd = /^\s*initrd(?:efi|16)?\s+(\S+)/m.exec(text.slice(linux.index));
  return { kernel: stripGrubDevice(linux[1]!), ...(initrd ? { initrd: stripGrubDevice(initrd[1]!) } : {}), args: linux[2]!.trim() };
}

function grubLegacyEntry(text: string): { kernel: string; initrd?: string; args: string } | undefined {
  const kernel = /^\s*kernel\s+(\S+)\s*(.*)$/m.exec(text);
  if (!kernel) return undefined;
  const initrd = /^\s*initrd\s+(\S+)/m.exec(text.slice(kernel.index));
  return { kernel: stripGrubDevice(kernel[1]!), ...(initrd ? { initrd: stripGrubDevice(initrd[1]!) } : {}), args: kernel[2]!.trim() };
}

/** The DEFAULT label's entry (else the first) of an extlinux/syslinux config. */
function syslinuxEntry(text: string): { kernel: string; initrd?: string; args: string } | undefined {
  const lines = text.split('\n').map((l) => l.trim());
  const wanted = lines.map((l) => /^default\s+(\S+)/i.exec(l)?.[1]).find((d) => d !== undefined);
  let current: { label: string; kernel?: string; initrd?: string; args: string } | undefined;
  const entries: NonNullable<typeof current>[] = [];
  for (const line of lines) {
    const m = /^(\S+)\s*(.*)$/.exec(line);
    if (!m) continue;
    const key = m[1]!.toLowerCase();
    if (key === 'label') { current = { label: m[2]!, args: '' }; entries.push(current); }
    else if (current && (key === 'kernel' || key === 'linux')) current.kernel = m[2]!;
    else if (current && key === 'initrd') current.initrd = m[2]!;
    else if (current && key === 'append') {
      const initrd = /(?:^|\s)initrd=(\S+)/.exec(m[2]!);
      if (initrd && current.initrd === undefined) current.initrd = initrd[1]!.split(',')[0]!;
      current.args = m[2]!.replace(/(?:^|\s)initrd=\S+/, '').trim();
    }
  }
  const entry = entries.find((e) => e.label === wanted && e.kernel) ?? entries.find((e) => e.kernel);
  return entry?.kernel ? { kernel: entry.kernel, ...(entry.initrd ? { initrd: entry.initrd } : {}), args: entry.args } : undefined;
}

/** `(hd0,msdos1)/boot/vmlinuz` → `/boot/vmlinuz`. */
function stripGrubDevice(p: string): string {
  return p.replace(/^\([^)]*\)/, '');
}

/** The newest /boot/vmlinuz-VERSION with its initrd, else /vmlinuz and /initrd.img (Debian's links). */
async function newestKernel(files: FileSystemFiles): Promise<BootEntry | undefined> {
  const boot = await files.list('/boot');
  const versions = (boot ?? []).filter((f) => /^vmlinuz-/.test(f)).map((f) => f.slice('vmlinuz-'.length)).sort(compareVersions);
  const newest = versions.pop();
  if (newest !== undefined) {
    const initrd = [`initrd.img-${newest}`, `initramfs-${newest}.img`, `initrd-${newest}`].find((f) => boot!.includes(f));
    return { kernel: `/boot/vmlinuz-${newest}`, ...(initrd ? { initrd: `/boot/${initrd}` } : {}), from: '/boot' };
  }
  const top = await files.list('/');
  if (!top?.includes('vmlinuz')) return undefined;
  return { kernel: '/vmlinuz', ...(top.includes('initrd.img') ? { initrd: '/initrd.img' } : {}), from: '/vmlinuz' };
}

function compareVersions(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}
