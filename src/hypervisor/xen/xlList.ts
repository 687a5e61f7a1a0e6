// Parsers for `xl list` (one line per domain, with its state letters) and
// `xl list -l` (JSON array of {domid, config: libxl_domain_config}). Field
// names follow libxl's IDL (tools/libs/light/libxl_types.idl); libxl leaves
// out integer fields that are 0, so an absent `readwrite` means read-only.
import { HypervisorError } from '../../errors';
import type { GuestDisk, GuestNic } from '../driver';

export interface XlListEntry {
  name: string;
  domid: number;
  memoryMiB: number;
  vcpus: number;
  /** The six state letters, e.g. `-b----`, `--p---`. */
  stateLetters: string;
  paused: boolean;
}

// Same layout as xl_info.c list_domains(): "%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f"
const LIST_LINE = /^(.+?)\s+(\d+)\s+(\d+)\s+(\d+)\s+([r-][b-][p-][s-][-rscwS?][d-])\s+[\d.]+/;

export function parseXlList(stdout: string): XlListEntry[] {
  const lines = stdout.split('\n').filter((l) => l.trim() !== '');
  if (lines.length === 0 || !lines[0]!.startsWith('Name')) {
    throw new HypervisorError(`xl list printed no domain table (first line: ${JSON.stringify(lines[0] ?? '')})`);
  }
  return lines.slice(1).map((line) => {
    const m = LIST_LINE.exec(line);
    if (!m) throw new HypervisorError(`cannot read xl list line: ${JSON.stringify(line)}`);
    return {
      name: m[1]!,
      domid: Number(m[2]),
      memoryMiB: Number(m[3]),
      vcpus: Number(m[4]),
      stateLetters: m[5]!,
      paused: m[5]![2] === 'p',
    };
  });
}

/** What ferry takes from one `xl list -l` entry. */
export interface XlDomainDetails {
  domid: number | null;
  name: string;
  vcpus?: number;
  memoryMiB?: number;
  maxMemoryMiB?: number;
  disks: GuestDisk[];
  nics: GuestNic[];
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const isObject = (v: Json | undefined): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: Json | undefined): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: Json | undefined): number | undefined => (typeof v === 'number' ? v : undefined);

export function parseXlListLong(stdout: string): XlDomainDetails[] {
  const text = stdout.trim();
  if (text.startsWith('(')) {
    throw new HypervisorError(
      'xl list -l printed SXP, not JSON: set output_format="json" in /etc/xen/xl.conf (the default)',
    );
  }
  let parsed: Json;
  try {
    parsed = JSON.parse(text === '' ? '[]' : text) as Json;
  } catch (err) {
    throw new HypervisorError(`xl list -l printed invalid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!Array.isArray(parsed)) throw new HypervisorError('xl list -l did not print a JSON array');
  return parsed.map((entry, index) => {
    if (!isObject(entry) || !isObject(entry.config)) {
      throw new HypervisorError(`xl list -l entry ${index} has no "config" object`);
    }
    const config = entry.config;
    const cInfo = isObject(config.c_info) ? config.c_info : {};
    const bInfo = isObject(config.b_info) ? config.b_info : {};
    const name = str(cInfo.name);
    if (!name) throw new HypervisorError(`xl list -l entry ${index} (domid ${String(entry.domid)}) has no c_info.name`);
    const maxMemKb = num(bInfo.max_memkb);
    const targetMemKb = num(bInfo.target_memkb);
    const vcpus = num(bInfo.max_vcpus);
    return {
      domid: num(entry.domid) ?? null,
      name,
      ...(vcpus !== undefined ? { vcpus } : {}),
      ...(targetMemKb !== undefined ? { memoryMiB: Math.round(targetMemKb / 1024) } : {}),
      ...(maxMemKb !== undefined ? { maxMemoryMiB: Math.round(maxMemKb / 1024) } : {}),
      disks: (Array.isArray(config.disks) ? config.disks : []).filter(isObject).flatMap(diskFromLibxl),
      nics: (Array.isArray(config.nics) ? config.nics : []).filter(isObject).map(nicFromLibxl),
    };
  });
}

function diskFromLibxl(disk: JsonObject): GuestDisk[] {
  const target = str(disk.pdev_path) ?? '';
  const cdrom = num(disk.is_cdrom) === 1;
  if (target === '') return []; // an empty CD drive holds no data
  const hasScript = str(disk.script) !== undefined;
  return [{
    device: str(disk.vdev) ?? '',
    path: hostPath(target, hasScript),
    format: str(disk.format) ?? 'raw',
    readOnly: num(disk.readwrite) !== 1,
    ...(cdrom ? { cdrom } : {}),
  }];
}

function nicFromLibxl(nic: JsonObject): GuestNic {
  const mac = str(nic.mac);
  const bridge = str(nic.bridge);
  const model = str(nic.model);
  return { ...(mac ? { mac: mac.toLowerCase() } : {}), ...(bridge ? { bridge } : {}), ...(model ? { model } : {}) };
}

/**
 * As libxl does for a target used as a path: a relative one is under /dev.
 * A target handed to a block script (iSCSI IQN, DRBD resource) is left alone.
 */
export function hostPath(target: string, hasScript: boolean): string {
  if (hasScript || target === '' || target.startsWith('/')) return target;
  return `/dev/${target}`;
}
