// Where each key of a TOML document is written, so a semantic error (wrong
// type, unknown key, bad value) can name the line. smol-toml reports lines
// only for syntax errors; the parsed object has none. This scanner is not a
// TOML parser: it runs only on documents smol-toml already accepted, and
// follows just enough of the grammar (table headers, arrays of tables,
// dotted and quoted keys, multi-line strings and arrays) to map key paths to
// the line that sets them.

/** A key's path: table and key names, with the element index for arrays of tables. */
export type KeyPath = readonly (string | number)[];

const BARE = /^[A-Za-z0-9_-]+/;

function pathId(path: KeyPath): string {
  return JSON.stringify(path);
}

/** Reads dotted key segments from the start of `s`; returns them and the rest, or undefined. */
function readKey(s: string): { segments: string[]; rest: string } | undefined {
  const segments: string[] = [];
  let rest = s.trimStart();
  for (;;) {
    let m: RegExpExecArray | null;
    if ((m = BARE.exec(rest))) {
      segments.push(m[0]);
    } else if ((m = /^"((?:[^"\\]|\\.)*)"/.exec(rest))) {
      try {
        segments.push(JSON.parse(`"${m[1]}"`) as string);
      } catch {
        segments.push(m[1]!);
      }
    } else if ((m = /^'([^']*)'/.exec(rest))) {
      segments.push(m[1]!);
    } else {
      return undefined;
    }
    rest = rest.slice(m[0].length).trimStart();
    if (!rest.startsWith('.')) return { segments, rest };
    rest = rest.slice(1).trimStart();
  }
}

/** How far `[`/`]` nesting changes over a value, ignoring brackets in strings and comments. */
function bracketDelta(s: string): number {
  let depth = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '#') break;
    if (c === '"' || c === "'") {
      const close = c === '"' ? /^"(?:[^"\\]|\\.)*"/ : /^'[^']*'/;
      const m = close.exec(s.slice(i));
      if (!m) break;
      i += m[0].length - 1;
    } else if (c === '[') depth++;
    else if (c === ']') depth--;
  }
  return depth;
}

export class TomlLines {
  private readonly lines = new Map<string, number>();

  constructor(text: string) {
    const arrayCounts = new Map<string, number>();
    let table: (string | number)[] = [];
    let openArray = 0; // bracket depth of a multi-line array value being skipped
    let openString: '"""' | "'''" | undefined;
    const src = text.split(/\r?\n/);

    // `[a.b]` after `[[a]]` means a table inside a's last element.
    const resolve = (segments: string[]): (string | number)[] => {
      const out: (string | number)[] = [];
      for (const seg of segments) {
        out.push(seg);
        const n = arrayCounts.get(pathId(out));
        if (n !== undefined) out.push(n - 1);
      }
      return out;
    };

    for (let i = 0; i < src.length; i++) {
      const lineNo = i + 1;
      let line = src[i]!;
      if (openString) {
        const end = line.indexOf(openString);
        if (end < 0) continue;
        line = line.slice(end + 3);
        openString = undefined;
        continue;
      }
      if (openArray > 0) {
        openArray += bracketDelta(line);
        continue;
      }
      const trimmed = line.trim();
      if (trimmed === '' || trimmed.startsWith('#')) continue;

      const arrayHeader = /^\[\[(.*)\]\]\s*(#.*)?$/.exec(trimmed);
      if (arrayHeader) {
        const key = readKey(arrayHeader[1]!);
        if (!key) continue;
        const parent = resolve(key.segments.slice(0, -1));
        const base = [...parent, key.segments[key.segments.length - 1]!];
        const n = (arrayCounts.get(pathId(base)) ?? 0) + 1;
        arrayCounts.set(pathId(base), n);
        table = [...base, n - 1];
        this.record(base, lineNo);
        this.record(table, lineNo);
        continue;
      }
      const header = /^\[(.*)\]\s*(#.*)?$/.exec(trimmed);
      if (header) {
        const key = readKey(header[1]!);
        if (!key) continue;
        table = resolve(key.segments);
        for (let k = 1; k <= table.length; k++) this.record(table.slice(0, k), lineNo);
        continue;
      }
      const key = readKey(trimmed);
      if (!key || !key.rest.startsWith('=')) continue;
      const full = [...table, ...key.segments];
      for (let k = table.length + 1; k <= full.length; k++) this.record(full.slice(0, k), lineNo);
      const value = key.rest.slice(1).trim();
      for (const q of ['"""', "'''"] as const) {
        if (value.startsWith(q) && value.indexOf(q, 3) < 0) openString = q;
      }
      if (!openString) openArray = Math.max(0, bracketDelta(value));
    }
  }

  private record(path: KeyPath, line: number): void {
    const id = pathId(path);
    if (!this.lines.has(id)) this.lines.set(id, line);
  }

  /** The line that sets `path`, or of its nearest enclosing key or table; undefined if none is written. */
  lineOf(path: KeyPath): number | undefined {
    for (let k = path.length; k > 0; k--) {
      const line = this.lines.get(pathId(path.slice(0, k)));
      if (line !== undefined) return line;
    }
    return undefined;
  }
}

/** `static.guest[0].disks`, `guest."web*".quiesce`: a key path as a reader of the file would write it. */
export function formatKeyPath(path: KeyPath): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += (out ? '.' : '') + (/^[A-Za-z0-9_-]+$/.test(seg) ? seg : JSON.stringify(seg));
  }
  return out;
}
