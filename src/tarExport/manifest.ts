// The manifest of a portable tar export (`ferry-export.json`). Readable by
// people and scripts that do not run ferry: it says which guest, from when,
// which files are its disks and config, and their SHA-256 sums (the same sums
// are in SHA256SUMS, in `sha256sum -c` format).
//
// Layout of the tar, in this order: the config file (if the restore point has
// one), each disk as a plain raw image, then ferry-export.json, then
// SHA256SUMS. The sums come last because they are computed while the disks
// stream out: the export keeps no temporary file and no disk in memory.

export const MANIFEST_NAME = 'ferry-export.json';
export const SUMS_NAME = 'SHA256SUMS';
export const EXPORT_FORMAT = 'ferry-export';
export const EXPORT_VERSION = 1;

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

/** Parse and validate a manifest; undefined with a reason when it is not one we can use. */
export function parseManifest(bytes: Buffer): { manifest?: ExportManifest; problem?: string } {
  let m: Partial<ExportManifest>;
  try {
    m = JSON.parse(bytes.toString('utf8')) as Partial<ExportManifest>;
  } catch (err) {
    return { problem: `not JSON (${(err as Error).message})` };
  }
  if (m.format !== EXPORT_FORMAT) return { problem: `format is '${String(m.format)}', not '${EXPORT_FORMAT}'` };
  if (m.version !== EXPORT_VERSION) return { problem: `version ${String(m.version)} is not supported (this ferry reads version ${EXPORT_VERSION})` };
  if (typeof m.guest !== 'string' || typeof m.time !== 'string' || !Array.isArray(m.disks) || m.disks.length === 0) {
    return { problem: 'guest, time or disks missing' };
  }
  for (const d of m.disks) {
    if (typeof d.file !== 'string' || typeof d.name !== 'string' || !Number.isSafeInteger(d.size) || d.size < 0 || !/^[0-9a-f]{64}$/.test(String(d.sha256))) {
      return { problem: `disk entry ${JSON.stringify(d).slice(0, 80)} is incomplete` };
    }
  }
  if (m.config && (typeof m.config.file !== 'string' || !/^[0-9a-f]{64}$/.test(String(m.config.sha256)))) {
    return { problem: 'config entry is incomplete' };
  }
  return { manifest: { tags: [], hostname: '', restorePoint: '', exported: '', ...m } as ExportManifest };
}
