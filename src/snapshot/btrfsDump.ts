// Reads the output of `btrfs receive --dump` for a `btrfs send --no-data -p
// PREV CUR` stream and answers, per image file: which byte ranges may differ
// between PREV and CUR, or why that cannot be told (then the caller reads the
// whole image). The rule is "never miss a change": every record that could
// alter the file's bytes either adds a range or forces a full read; only
// records known to leave the data alone (times, owner, mode, xattrs) are
// ignored.
//
// Format as printed by btrfs-progs 6.2 (cmds/receive-dump.c), one record a line:
//   snapshot        ./ferry-b        uuid=… transid=8 parent_uuid=… parent_transid=7
//   update_extent   ./ferry-b/vm/disk.img     offset=20480 len=4096
//   clone           ./ferry-b/vm/disk.img     offset=1052672 len=2093056 from=./ferry-b/vm/disk.img clone_offset=1052672
//   truncate        ./ferry-b/vm/disk.img     size=268435456
//   rename          ./ferry-b/o261-9-0        dest=./ferry-b/vm/disk.img
// Paths are escaped (`\ ` space, `\\`, `\t`, `\n`, octal `\303` for non-ASCII
// bytes); the `from=` of a clone is printed raw, so it is matched as the rest
// of the line before ` clone_offset=`.

import type { ByteRange } from './provider';

export type ImageChanges =
  | { kind: 'ranges'; ranges: ByteRange[] }
  | { kind: 'full'; reason: string };

export interface DumpHeader {
  /** Path of the received subvolume as the dump names it, e.g. `./ferry-b`. */
  subvolume: string;
  uuid?: string;
  parentUuid?: string;
}

interface DumpRecord {
  op: string;
  path: string;
  /** The rest of the line, `key=value` pairs (values may contain spaces for `from=`). */
  rest: string;
  line: number;
}

// Records that cannot change a file's bytes.
const METADATA_ONLY = new Set(['utimes', 'chmod', 'chown', 'set_xattr', 'remove_xattr']);
// Records whose offset/len name the bytes of `path` that got new contents.
const DATA_RECORDS = new Set(['write', 'update_extent', 'encoded_write', 'fallocate']);

/** Undoes btrfs-progs' path escaping; non-ASCII names come as octal UTF-8 bytes. */
export function unescapeDumpPath(escaped: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < escaped.length; i++) {
    const c = escaped[i]!;
    if (c !== '\\' || i + 1 >= escaped.length) {
      for (const b of Buffer.from(c, 'utf8')) bytes.push(b);
      continue;
    }
    const next = escaped[i + 1]!;
    const octal = /^[0-7]{3}/.exec(escaped.slice(i + 1));
    if (octal) {
      bytes.push(parseInt(octal[0], 8));
      i += 3;
      continue;
    }
    const named: Record<string, number> = { n: 10, t: 9, r: 13, v: 11, f: 12, a: 7, b: 8 };
    bytes.push(named[next] ?? next.charCodeAt(0));
    i += 1;
  }
  return Buffer.from(bytes).toString('utf8');
}

/**
 * The dump's records one at a time: a night of scattered 4 KiB writes is
 * ~50,000 lines (5.5 MB) per 10 GiB disk, and all of them parsed at once
 * held ~30 MiB of heap, which the process keeps (issue 11).
 */
function* parseRecords(dump: string): Generator<DumpRecord> {
  let line = 0;
  for (let at = 0; at < dump.length; ) {
    const eol = dump.indexOf('\n', at);
    const text = dump.slice(at, eol < 0 ? dump.length : eol);
    at = eol < 0 ? dump.length : eol + 1;
    line++;
    if (text.trim() === '') continue;
    // op, then an escaped path (escaped spaces are part of it), then the rest.
    const m = /^(\S+)\s+((?:\\.|\S)+)\s*(.*)$/.exec(text);
    if (!m) throw new Error(`line ${line}: not a btrfs receive --dump record: ${text}`);
    yield { op: m[1]!, path: unescapeDumpPath(m[2]!), rest: m[3]!, line };
  }
}

/**
 * V8 keeps the subject of the last RegExp match reachable (RegExp.lastMatch):
 * here a line of the dump, a slice that holds the whole dump for the rest of
 * the run. A match on an empty string lets it go: each exported parser
 * does this when it is done with the dump.
 */
function forgetLastMatch(): void {
  /(?:)/.exec('');
}

function field(rest: string, key: string): string | undefined {
  return new RegExp(`(?:^|\\s)${key}=(\\S+)`).exec(rest)?.[1];
}

function numberField(record: DumpRecord, key: string): number {
  const raw = field(record.rest, key);
  const n = raw === undefined ? NaN : Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new Error(`line ${record.line}: ${record.op} record without a valid ${key}=: ${record.rest}`);
  }
  return n;
}

/** The `snapshot` record that opens an incremental stream: which subvolume, and its parent's UUID. */
export function parseDumpHeader(dump: string): DumpHeader {
  try {
    const first = parseRecords(dump).next().value;
    if (!first || first.op !== 'snapshot') {
      throw new Error('btrfs receive --dump printed no snapshot record: not an incremental stream');
    }
    const header: DumpHeader = { subvolume: first.path };
    const uuid = field(first.rest, 'uuid');
    const parentUuid = field(first.rest, 'parent_uuid');
    if (uuid) header.uuid = uuid;
    if (parentUuid) header.parentUuid = parentUuid;
    return header;
  } finally {
    forgetLastMatch();
  }
}

/** Sorts ranges and merges those that overlap or touch. */
export function mergeRanges(ranges: readonly ByteRange[]): ByteRange[] {
  const sorted = ranges.filter((r) => r.end > r.start).sort((a, b) => a.start - b.start);
  const merged: ByteRange[] = [];
  for (const r of sorted) {
    const last = merged[merged.length - 1];
    if (last && r.start <= last.end) last.end = Math.max(last.end, r.end);
    else merged.push({ start: r.start, end: r.end });
  }
  return merged;
}

/**
 * Changes of each file in `imagePaths` (relative to the subvolume root, e.g.
 * `vm/disk.img`), from one dump. `sizes` are the files' sizes in CUR: ranges
 * are clipped to them.
 */
export function changesFromDump(dump: string, imagePaths: readonly string[], sizes: readonly number[]): ImageChanges[] {
  try {
    const records = parseRecords(dump);
    const header = records.next().value;
    if (!header || header.op !== 'snapshot') {
      return imagePaths.map(() => ({ kind: 'full', reason: 'btrfs send printed no incremental stream' }));
    }
    const prefix = header.path.endsWith('/') ? header.path : `${header.path}/`;
    const images: ImageInDump[] = imagePaths.map((p) => ({ full: prefix + p, ranges: [] }));
    // One pass over the records for every image: a night's dump is tens of thousands of lines.
    for (const r of records) {
      for (const image of images) if (image.fullReason === undefined) followRecord(image, r);
    }
    return images.map((image, i): ImageChanges => {
      if (image.fullReason !== undefined) return { kind: 'full', reason: image.fullReason };
      const size = sizes[i] ?? Infinity;
      const clipped = mergeRanges(image.ranges)
        .map((r) => ({ start: r.start, end: Math.min(r.end, size) }))
        .filter((r) => r.end > r.start);
      return { kind: 'ranges', ranges: clipped };
    });
  } finally {
    forgetLastMatch();
  }
}

/** One image's changes as the dump's records are read: its ranges, or why it must be read in full. */
interface ImageInDump {
  /** Its path in the dump (the subvolume's path, then the image's). */
  full: string;
  ranges: ByteRange[];
  fullReason?: string;
}

/** What record `r` means for `image`: new bytes in a range, nothing, or a reason to read it in full. */
function followRecord(image: ImageInDump, r: DumpRecord): void {
  const { full, ranges } = image;
  const namesImage = r.path === full;
  if (namesImage && METADATA_ONLY.has(r.op)) return;
  if (namesImage && DATA_RECORDS.has(r.op)) {
    const offset = numberField(r, 'offset');
    ranges.push({ start: offset, end: offset + numberField(r, 'len') });
    return;
  }
  if (namesImage && r.op === 'clone') {
    const offset = numberField(r, 'offset');
    const len = numberField(r, 'len');
    // `from=` is printed unescaped and may hold spaces: it runs up to ` clone_offset=`.
    const from = / from=(.*) clone_offset=(\d+)/.exec(r.rest);
    // A clone from the same file at the same offset copies bytes onto
    // themselves: send emits these when an unchanged extent was split by
    // a write next to it. Anything else brings new bytes.
    if (from && from[1] === full && Number(from[2]) === offset) return;
    ranges.push({ start: offset, end: offset + len });
    return;
  }
  if (namesImage && r.op === 'truncate') {
    image.fullReason = `the image was truncated or extended (size=${field(r.rest, 'size') ?? '?'}) since the last backup`;
    return;
  }
  // Any other record that names the image (unlink, a rename or link onto
  // it, a new file) means it is not simply the old file with
  // some ranges rewritten.
  if (namesImage || isDestination(r, full)) {
    image.fullReason = `btrfs send reports '${r.op}' for the image since the last backup (line ${r.line}): it was replaced, renamed or recreated`;
  }
}

/** Whether a rename or link record makes `full` its destination. */
function isDestination(r: DumpRecord, full: string): boolean {
  const dest = /(?:^|\s)dest=((?:\\.|\S)+)/.exec(r.rest);
  return dest !== null && unescapeDumpPath(dest[1]!) === full;
}
