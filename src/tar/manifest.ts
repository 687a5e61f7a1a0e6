// The manifest of a portable tar export (`ferry-export.json`). Readable by
// people and scripts that do not run ferry: it says which guest, from when,
// which files are its disks and config, and their SHA-256 sums (the same sums
// are in SHA256SUMS, in `sha256sum -c` format).
//
// Layout of the tar, in this order: the config file (if the restore point has
// one), each disk as a plain raw image, then ferry-export.json, then
// SHA256SUMS. The sums come last because they are computed while the disks
// stream out: the export keeps no temporary file and no disk in memory.

import { showName, unsafeFileName } from '../repo/fileName';

export const MANIFEST_NAME = 'ferry-export.json';
export const SUMS_NAME = 'SHA256SUMS';
export const EXPORT_FORMAT = 'ferry-export';
export const EXPORT_VERSION = 1;

/**
 * How far a manifest's time may be ahead of this host's clock. Clocks of two
 * hosts disagree by seconds, not hours; a time far ahead would make the
 * imported point `latest` for years and keep retention from ever dropping it.
 */
export const MAX_CLOCK_SKEW_MS = 10 * 60 * 1000;

export interface ExportedDisk {
  /** File name in the tar. */
  file: string;
  /** The disk's name in the restore point (the file name it restores as). */
  name: string;
  size: number;
  /** Non-zero bytes (the rest are zeros, stored in the tar as zeros). */
  dataBytes: number;
  sourcePath: string;
  sha256: string;
}

export interface ExportManifest {
  format: typeof EXPORT_FORMAT;
  version: typeof EXPORT_VERSION;
  guest: string;
  /** Time of the restore point (when the disks were read). */
  time: string;
  hostname: string;
  tags: string[];
  /** The restore point this was exported from (id in its repository). */
  restorePoint: string;
  exported: string;
  config?: { file: string; size: number; sha256: string };
  disks: ExportedDisk[];
}

/** `sha256sum -c` input: two spaces between sum and name (text mode). */
export function sumsFile(manifest: ExportManifest, manifestSha256: string): string {
  const lines: string[] = [];
  if (manifest.config) lines.push(`${manifest.config.sha256}  ${manifest.config.file}`);
  for (const d of manifest.disks) lines.push(`${d.sha256}  ${d.file}`);
  lines.push(`${manifestSha256}  ${MANIFEST_NAME}`);
  return `${lines.join('\n')}\n`;
}

/**
 * Parse and validate a manifest; undefined with a reason when it is not one we
 * can use. The time comes back as ISO 8601 UTC (restore points sort by it) and
 * may not be more than MAX_CLOCK_SKEW_MS after `now`.
 */
/** A JSON value as a message shows it; String() would run an object's own toString (or throw on one that is not a function). */
function shownValue(v: unknown): string {
  return typeof v === 'string' ? v : (JSON.stringify(v) ?? 'undefined').slice(0, 80);
}

function isSha256(v: unknown): boolean {
  return typeof v === 'string' && /^[0-9a-f]{64}$/.test(v);
}

export function parseManifest(bytes: Buffer, now = Date.now()): { manifest?: ExportManifest; problem?: string } {
  let m: Partial<ExportManifest>;
  try {
    m = JSON.parse(bytes.toString('utf8')) as Partial<ExportManifest>;
  } catch (err) {
    return { problem: `not JSON (${(err as Error).message})` };
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return { problem: 'not a JSON object' };
  if (m.format !== EXPORT_FORMAT) return { problem: `format is '${shownValue(m.format)}', not '${EXPORT_FORMAT}'` };
  if (m.version !== EXPORT_VERSION) return { problem: `version ${shownValue(m.version)} is not supported (this ferry reads version ${EXPORT_VERSION})` };
  if (typeof m.guest !== 'string' || typeof m.time !== 'string' || !Array.isArray(m.disks) || m.disks.length === 0) {
    return { problem: 'guest, time or disks missing' };
  }
  const time = Date.parse(m.time);
  if (!/^\d{4}-\d\d-\d\dT/.test(m.time) || !Number.isFinite(time)) return { problem: `time ${showName(m.time)} is not an ISO 8601 time` };
  if (time > now + MAX_CLOCK_SKEW_MS) {
    return { problem: `time ${m.time} is in the future (more than ${MAX_CLOCK_SKEW_MS / 60000} minutes ahead of this host's clock); check the clocks, or the tar is not genuine` };
  }
  for (const d of m.disks) {
    if (typeof d !== 'object' || d === null || typeof d.file !== 'string' || typeof d.name !== 'string' || !Number.isSafeInteger(d.size) || d.size < 0 || !isSha256(d.sha256)) {
      return { problem: `disk entry ${JSON.stringify(d).slice(0, 80)} is incomplete` };
    }
  }
  if (m.tags !== undefined && (!Array.isArray(m.tags) || !m.tags.every((t) => typeof t === 'string'))) return { problem: 'tags is not a list of strings' };
  if (m.disks.some((d) => d.sourcePath !== undefined && typeof d.sourcePath !== 'string')) return { problem: 'a disk sourcePath is not a string' };
  if (m.config && (typeof m.config !== 'object' || typeof m.config.file !== 'string' || !isSha256(m.config.sha256))) {
    return { problem: 'config entry is incomplete' };
  }
  const unsafe = unsafeFileName({ disks: m.disks, config: m.config ? { fileName: m.config.file } : undefined });
  if (unsafe) return { problem: `${unsafe}; ferry restores it as a file in the target directory` };
  return { manifest: { tags: [], hostname: '', restorePoint: '', exported: '', ...m, time: new Date(time).toISOString() } as ExportManifest };
}
