// Reading lvm2's JSON reports (`lvs`/`vgs --reportformat json --units b`)
// and finding the logical volume behind a device path.
import { HypervisorError } from '../errors';

export interface LogicalVolume {
  name: string;
  vg: string;
  sizeBytes: number;
  /** lv_attr, e.g. `-wi-ao----`; first letter: `V` thin, `s` snapshot, `t` thin pool, `o` origin. */
  attr: string;
  /** Thin pool for thin volumes, else ''. */
  pool: string;
  /** Origin for snapshots (thick or thin), else ''. */
  origin: string;
}

export interface VolumeGroup {
  name: string;
  freeBytes: number;
  extentBytes: number;
}

export const LVS_ARGS = ['--reportformat', 'json', '-o', 'lv_name,vg_name,lv_size,lv_attr,pool_lv,origin', '--units', 'b'] as const;
export const VGS_ARGS = ['--reportformat', 'json', '-o', 'vg_name,vg_free,vg_extent_size', '--units', 'b'] as const;

type Row = Record<string, string>;

function reportRows(stdout: string, command: string, section: 'lv' | 'vg'): Row[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch (err) {
    throw new HypervisorError(`${command} printed invalid JSON: ${(err as Error).message}`, { cause: err });
  }
  const report = (parsed as { report?: unknown }).report;
  if (!Array.isArray(report)) throw new HypervisorError(`${command} printed JSON without a "report" array`);
  const rows: Row[] = [];
  for (const part of report as unknown[]) {
    const list = (part as Record<string, unknown> | null)?.[section];
    if (!Array.isArray(list)) continue;
    for (const row of list as unknown[]) {
      if (typeof row !== 'object' || row === null) continue;
      rows.push(Object.fromEntries(Object.entries(row).map(([k, v]) => [k, String(v)])));
    }
  }
  return rows;
}

/** "1073741824B" → 1073741824 (the report was asked for in bytes). */
function bytes(value: string | undefined, field: string, command: string): number {
  const m = /^(\d+)B?$/.exec(value ?? '');
  if (!m) throw new HypervisorError(`${command} reported ${field}=${JSON.stringify(value)}, expected bytes like 1073741824B`);
  return Number(m[1]);
}

export function parseLvsReport(stdout: string): LogicalVolume[] {
  return reportRows(stdout, 'lvs', 'lv').map((r) => ({
    name: r.lv_name ?? '',
    vg: r.vg_name ?? '',
    sizeBytes: bytes(r.lv_size, 'lv_size', 'lvs'),
    attr: r.lv_attr ?? '',
    pool: r.pool_lv ?? '',
    origin: r.origin ?? '',
  }));
}

export function parseVgsReport(stdout: string): VolumeGroup[] {
  return reportRows(stdout, 'vgs', 'vg').map((r) => ({
    name: r.vg_name ?? '',
    freeBytes: bytes(r.vg_free, 'vg_free', 'vgs'),
    extentBytes: bytes(r.vg_extent_size, 'vg_extent_size', 'vgs'),
  }));
}

export const isThin = (lv: LogicalVolume): boolean => lv.pool !== '';
export const isSnapshot = (lv: LogicalVolume): boolean => lv.origin !== '' || lv.attr.startsWith('s') || lv.attr.startsWith('S');

/** device-mapper's name for VG/LV: dashes inside each part are doubled. */
export function mapperName(vg: string, lv: string): string {
  return `${vg.replace(/-/g, '--')}-${lv.replace(/-/g, '--')}`;
}

/** The LV behind `/dev/VG/LV` or `/dev/mapper/VG-LV`, if any. */
export function findVolumeByPath(volumes: readonly LogicalVolume[], path: string): LogicalVolume | undefined {
  const normal = path.replace(/\/+/g, '/').replace(/\/$/, '');
  const mapper = /^\/dev\/mapper\/(.+)$/.exec(normal);
  if (mapper) return volumes.find((lv) => mapperName(lv.vg, lv.name) === mapper[1]);
  const direct = /^\/dev\/([^/]+)\/([^/]+)$/.exec(normal);
  if (direct) return volumes.find((lv) => lv.vg === direct[1] && lv.name === direct[2]);
  return undefined;
}
