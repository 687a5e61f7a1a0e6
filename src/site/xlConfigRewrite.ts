// An xl cfg rewritten for its new host (issue 7 §3): `disk = [...]` targets
// point at the restored storage, `vif = [...]` bridges (and MACs, when asked)
// are mapped, and every other byte of the file — comments, layout, settings
// ferry does not know — stays as it was. Only the string literals that change
// are replaced, located by a scan that follows libxlu's lexical rules (the
// same as hypervisor/xen/xlConfig.ts, which parses the file first and so
// judges its syntax). Each disk spec is edited in place in the form it was
// written in (positional, `phy:`/`file:`/`tap:qcow2:` prefixes, or `key=value`
// with `target=` last) and parsed back to prove it says what was meant.
import { basename } from 'node:path';
import { FerryError, InputError } from '../errors';
import type { GuestSpec } from '../repo/restorePoint';
import { deprecatedDiskPrefix, isDiskSpecFlag, parseDiskSpec, type XlDiskSpec } from '../hypervisor/xen/diskSpec';
import { parseVifSpec } from '../hypervisor/xen/vifSpec';
import { hostPath } from '../hypervisor/xen/xlList';
import { configStringList, parseXlConfig } from '../hypervisor/xen/xlConfig';
import { type DiskTarget, type GuestRewriteOptions, type RewrittenConfig, diskTarget, macFor, mapBridge, specDiskFor } from './guestRewrite';

const XEN_OUI = '00:16:3e';
/** xl plugs a vif without `bridge=` into this one (xl-network-configuration(5)). */
const XL_DEFAULT_BRIDGE = 'xenbr0';

export interface XlRewriteOptions extends GuestRewriteOptions {
  /** `drop` removes the `uuid = ...` setting, so xl makes a new one (a copy beside the original); default keep. */
  uuid?: 'keep' | 'drop';
}

/** `text` (an xl cfg, `fileName` for messages) rewritten for the new host; refuses, naming file and line, what it cannot rewrite. */
export function rewriteXlConfig(text: string, fileName: string, spec: GuestSpec, options: XlRewriteOptions): RewrittenConfig {
  const config = parseXlConfig(text, fileName);
  const where = basename(fileName);
  const statements = scanStatements(text);
  const edits: Edit[] = [];
  const notes: string[] = [];

  const disks = liveItems(statements, 'disk');
  const listed = configStringList(config, 'disk');
  checkSameItems(disks, listed.map((l) => l.value), where, 'disk');
  const attached = new Set<string>();
  for (const item of disks) {
    const at = `${where}:${item.line}`;
    const parsed = parseDiskSpec(item.value);
    if (parsed.target === '') continue; // an empty CD drive: nothing to point anywhere
    if (parsed.script !== undefined) {
      throw new InputError(`${at}: disk ${parsed.vdev} is reached through block script ${parsed.script} ('${item.value}'), not a path ferry can restore to; replace it with a plain disk in the config before the restore`);
    }
    const disk = specDiskFor(spec, parsed.vdev, hostPath(parsed.target, false));
    if (!disk) {
      if (parsed.cdrom) {
        edits.push({ ...item.body, text: quoteBody(`,${parsed.vdev}:cdrom,r`, item.quote) });
        notes.push(`${at}: CD-ROM ${parsed.vdev} held ${parsed.target}, which was not backed up: the drive is left empty`);
        continue;
      }
      throw new InputError(`${at}: disk ${parsed.vdev} (${parsed.target}) is in the config but in no disk of the restore point; restore from a restore point that holds it, or remove it from the config`);
    }
    attached.add(disk.name);
    edits.push({ ...item.body, text: quoteBody(rewriteDiskSpec(item.value, parsed, diskTarget(options, disk, at), at), item.quote, at) });
  }
  for (const d of spec.disks) {
    if (!attached.has(d.name)) notes.push(`${where}: disk ${d.name} (${d.origin}) is restored, but the config attaches no disk ${d.device ?? 'at that path'}`);
  }

  const vifs = liveItems(statements, 'vif');
  checkSameItems(vifs, configStringList(config, 'vif').map((l) => l.value), where, 'vif');
  const guest = options.name ?? liveItems(statements, 'name')[0]?.value ?? spec.disks[0]?.name ?? where;
  const taken = new Set<string>();
  vifs.forEach((item, index) => {
    const rewritten = rewriteVifSpec(item.value, options, guest, index, taken, `${where}:${item.line}`, notes);
    if (rewritten !== item.value) edits.push({ ...item.body, text: quoteBody(rewritten, item.quote, `${where}:${item.line}`) });
  });

  if (options.name !== undefined) {
    const names = liveItems(statements, 'name');
    if (names.length !== 1) throw new InputError(`${where}: the config has no single name = "..." setting to rename`);
    edits.push({ ...names[0]!.body, text: quoteBody(options.name, names[0]!.quote, `${where}:${names[0]!.line}`) });
  }
  if (options.uuid === 'drop') {
    for (const s of statements.filter((st) => st.key === 'uuid')) edits.push(removal(text, s));
  }
  return { text: applyEdits(text, edits), notes };
}

/** A minimal xl cfg for a guest backed up without one: the machine and disks of its spec, PV/HVM left for the admin to say. */
export function generateXlConfig(name: string, spec: GuestSpec, options: GuestRewriteOptions): RewrittenConfig {
  const notes: string[] = [];
  const memory = spec.memoryMiB ?? 512;
  const vcpus = spec.vcpus ?? 1;
  if (spec.memoryMiB === undefined) notes.push(`${name}: the restore point records no memory size: 512 MiB assumed`);
  if (spec.vcpus === undefined) notes.push(`${name}: the restore point records no vCPU count: 1 assumed`);
  const taken = new Set<string>();
  const vifs = spec.nics.map((nic, i) => {
    const mac = macFor(options, XEN_OUI, name, i, nic.mac, taken);
    const bridge = mapBridge(options, nic.bridge ?? XL_DEFAULT_BRIDGE);
    return [mac ? `mac=${mac}` : '', `bridge=${bridge}`, nic.model ? `model=${nic.model}` : ''].filter(Boolean).join(',');
  });
  const disks = spec.disks.map((d, i) => {
    const target = diskTarget(options, d, name);
    const vdev = d.device ?? `xvd${String.fromCharCode(97 + i)}`;
    return `format=${target.format}, vdev=${vdev}, access=${d.readOnly ? 'ro' : 'rw'}, target=${target.path}`;
  });
  const list = (items: string[]) => (items.length === 0 ? '[ ]' : items.length === 1 ? `[ ${quote(items[0]!)} ]` : `[\n${items.map((s) => `    ${quote(s)},\n`).join('')}]`);
  const text = [
    `# ${name}: made by ferry site restore from the restore point's guest spec (no config was backed up).`,
    '# Add type = "pvh" / "hvm" and a kernel or bootloader as the guest needs.',
    `name = ${quote(options.name ?? name)}`,
    `memory = ${memory}`,
    `maxmem = ${Math.max(spec.maxMemoryMiB ?? memory, memory)}`,
    `vcpus = ${vcpus}`,
    `vif = ${list(vifs)}`,
    `disk = ${list(disks)}`,
    '',
  ].join('\n');
  parseXlConfig(text, `${name}.cfg`); // what ferry writes must read back
  return { text, notes };
}

/** One disk spec pointed at `target`, in the form it was written in. */
function rewriteDiskSpec(value: string, parsed: XlDiskSpec, target: DiskTarget, at: string): string {
  if (target.format === 'qcow2' && parsed.backendType === 'phy') {
    throw new InputError(`${at}: disk ${parsed.vdev} asks for backendtype=phy, which cannot serve the qcow2 image it is restored as; remove backendtype= from the config`);
  }
  const parts = diskSpecParts(value);
  const edits: Edit[] = [{ ...parts.target, text: target.path }];
  if (parts.format) {
    const blankRaw = parts.format.positional && value.slice(parts.format.start, parts.format.end) === '' && target.format === 'raw';
    edits.push({ ...parts.format, text: blankRaw ? '' : target.format });
  }
  if (parts.prefix) {
    edits.push({ ...parts.prefix, text: prefixFor(value.slice(parts.prefix.start, parts.prefix.end), target) });
  } else if (!parts.format && target.format !== 'raw') {
    edits.push({ start: 0, end: 0, text: `format=${target.format},` });
  }
  const rewritten = applyEdits(value, edits);
  const check = parseDiskSpec(rewritten);
  if (check.target !== target.path || check.format !== target.format || check.vdev !== parsed.vdev || check.readWrite !== parsed.readWrite || check.cdrom !== parsed.cdrom) {
    throw new FerryError(`${at}: rewriting disk spec '${value}' gave '${rewritten}', which xl would read differently (a bug in ferry; please report it)`);
  }
  return rewritten;
}

/** The deprecated prefix for the new storage, keeping the original's where it still fits. */
function prefixFor(original: string, target: DiskTarget): string {
  if (target.format === 'qcow2') return /qcow2:$/.test(original) ? original : 'tap:qcow2:';
  if (target.storage === 'block') return 'phy:';
  return /^((tap2?|tapdisk):)?(aio|raw):$|^file:$/.test(original) ? original : 'file:';
}

interface Span { start: number; end: number }

/** Where the target, the format and the deprecated prefixes are in a disk spec (the same walk as parseDiskSpec). */
function diskSpecParts(spec: string): { target: Span; format?: Span & { positional: boolean }; prefix?: Span } {
  let pos = 0;
  let positional = 0;
  let target: Span | undefined;
  let format: (Span & { positional: boolean }) | undefined;
  let prefix: Span | undefined;
  while (pos < spec.length) {
    const ws = /^[ \t\n]+/.exec(spec.slice(pos));
    if (ws) { pos += ws[0].length; continue; }
    const rest = spec.slice(pos);
    if (rest.startsWith('target=')) {
      target = { start: pos + 'target='.length, end: spec.endsWith(',') ? spec.length - 1 : spec.length };
      break;
    }
    const p = deprecatedDiskPrefix(rest);
    if (p) {
      prefix = { start: prefix?.start ?? pos, end: pos + p.length };
      pos += p.length;
      continue;
    }
    const comma = rest.indexOf(',');
    const end = comma < 0 ? spec.length : pos + comma;
    const token = spec.slice(pos, end);
    if (token.startsWith('format=')) format = { start: pos + 'format='.length, end, positional: false };
    else if (!/^[a-z][-a-z0-9_]*=/.test(token) && !isDiskSpecFlag(token)) {
      if (positional === 0) target = { start: pos, end };
      else if (positional === 1 && !prefix && !format) format = { start: pos, end, positional: true };
      positional++;
    }
    pos = comma < 0 ? spec.length : end + 1;
  }
  if (!target) throw new FerryError(`disk spec '${spec}' has no target to rewrite (a bug in ferry: empty drives are skipped)`);
  return { target, ...(format ? { format } : {}), ...(prefix ? { prefix } : {}) };
}

/** A vif spec with its bridge mapped and, when asked, a new MAC; pairs and spacing otherwise kept. */
function rewriteVifSpec(value: string, options: GuestRewriteOptions, guest: string, index: number, taken: Set<string>, at: string, notes: string[]): string {
  let vif;
  try {
    vif = parseVifSpec(value);
  } catch (err) {
    throw new InputError(`${at}: bad vif spec: ${(err as Error).message}`, { cause: err });
  }
  const mac = macFor(options, XEN_OUI, guest, index, vif.mac, taken);
  const bridged = vif.options.script === undefined || /(^|\/)vif-bridge$/.test(vif.options.script);
  const bridge = bridged ? mapBridge(options, vif.bridge ?? XL_DEFAULT_BRIDGE) : undefined;
  const pairs = value.split(',').map((raw) => {
    const m = /^(\s*)([^=]*?)(\s*=\s*)(.*?)(\s*)$/.exec(raw);
    if (!m) return raw;
    const [, lead, key, eq, , trail] = m as unknown as string[];
    if (key === 'bridge' && bridge !== undefined) return `${lead}${key}${eq}${bridge}${trail}`;
    if (key === 'mac' && mac !== undefined) return `${lead}${key}${eq}${mac}${trail}`;
    return raw;
  });
  const added: string[] = [];
  if (mac !== undefined && vif.mac === undefined) added.push(`mac=${mac}`);
  if (bridge !== undefined && vif.bridge === undefined && bridge !== XL_DEFAULT_BRIDGE) {
    added.push(`bridge=${bridge}`);
    notes.push(`${at}: vif ${index} used xl's default bridge ${XL_DEFAULT_BRIDGE}; it now names bridge=${bridge}`);
  }
  const kept = value.trim() === '' ? [] : [pairs.join(',')];
  return added.length === 0 ? pairs.join(',') : [...kept, ...added].join(',');
}

// ---- the cfg text: statements and their string literals, with offsets ----

interface StringItem {
  value: string;
  line: number;
  quote: string;
  /** The literal's body, between its quotes. */
  body: Span;
}

interface Statement {
  key: string;
  op: '=' | '+=';
  items: StringItem[];
  /** From the key to the end of the value. */
  span: Span;
}

interface Token { type: 'ident' | 'string' | 'number' | 'op' | 'newline'; text: string; start: number; end: number; line: number }

/** Statements with their string literals; the same lexer and grammar as hypervisor/xen/xlConfig.ts, which has judged the file already. */
function scanStatements(text: string): Statement[] {
  const tokens: Token[] = [];
  let line = 1;
  for (let i = 0; i < text.length;) {
    const c = text[i]!;
    const push = (type: Token['type'], end: number, body = text.slice(i, end)) => { tokens.push({ type, text: body, start: i, end, line }); i = end; };
    if (c === '\n') { push('newline', i + 1); line++; continue; }
    if (c === ' ' || c === '\t' || c === '\r') { i++; continue; }
    if (c === '#') { while (i < text.length && text[i] !== '\n') i++; continue; }
    if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < text.length && text[j] !== c) j += text[j] === '\\' ? 2 : 1;
      push('string', j + 1);
      continue;
    }
    if (c === '+' && text[i + 1] === '=') { push('op', i + 2); continue; }
    if ('=,[];'.includes(c)) { push('op', i + 1); continue; }
    const number = /^(0x[0-9a-fA-F]+|[0-9]+)(?![A-Za-z0-9_.])/.exec(text.slice(i, i + 40));
    if (number) { push('number', i + number[1]!.length); continue; }
    const ident = /^[A-Za-z_][A-Za-z0-9_.]*/.exec(text.slice(i, i + 200));
    if (!ident) throw new FerryError(`unexpected ${JSON.stringify(c)} in an xl config the parser accepted (a bug in ferry)`);
    push('ident', i + ident[0].length);
  }

  const statements: Statement[] = [];
  let pos = 0;
  const skipNewlines = () => { while (tokens[pos]?.type === 'newline') pos++; };
  const value = (items: StringItem[]): number => {
    const t = tokens[pos++]!;
    if (t.type === 'string') items.push({ value: t.text.slice(1, -1), line: t.line, quote: t.text[0]!, body: { start: t.start + 1, end: t.end - 1 } });
    if (t.type !== 'op' || t.text !== '[') return t.end;
    skipNewlines();
    while (tokens[pos]!.text !== ']') {
      value(items);
      skipNewlines();
      if (tokens[pos]!.text === ',') { pos++; skipNewlines(); }
    }
    return tokens[pos++]!.end;
  };
  while (pos < tokens.length) {
    const t = tokens[pos++]!;
    if (t.type !== 'ident') continue;
    const op = tokens[pos++]!.text as '=' | '+=';
    const items: StringItem[] = [];
    const end = value(items);
    statements.push({ key: t.text, op, items, span: { start: t.start, end } });
  }
  return statements;
}

/** The string items that make up `key`'s value: its last `=` statement and the `+=` after it. */
function liveItems(statements: Statement[], key: string): StringItem[] {
  const own = statements.filter((s) => s.key === key);
  const lastSet = own.map((s) => s.op).lastIndexOf('=');
  return own.slice(Math.max(lastSet, 0)).flatMap((s) => s.items);
}

/** The scan must see what the parser saw; a literal with escapes is not edited (its text and value differ). */
function checkSameItems(items: StringItem[], parsed: string[], where: string, key: string): void {
  const escaped = items.find((it) => it.value.includes('\\'));
  if (escaped) throw new InputError(`${where}:${escaped.line}: ${key} item '${escaped.value}' has a backslash escape, which ferry does not rewrite; write it without escapes`);
  if (items.length !== parsed.length || items.some((it, i) => it.value !== parsed[i])) {
    throw new FerryError(`${where}: ferry's scan of ${key} = [...] disagrees with the xl parser (a bug in ferry; please report it)`);
  }
}

interface Edit extends Span { text: string }

function applyEdits(text: string, edits: Edit[]): string {
  let out = text;
  for (const e of [...edits].sort((a, b) => b.start - a.start)) out = out.slice(0, e.start) + e.text + out.slice(e.end);
  return out;
}

/** Removes a statement; its line too when nothing else is on it. */
function removal(text: string, s: Statement): Edit {
  const lineStart = text.lastIndexOf('\n', s.span.start - 1) + 1;
  const nl = text.indexOf('\n', s.span.end);
  const lineEnd = nl < 0 ? text.length : nl;
  const after = /^[ \t]*;?[ \t]*/.exec(text.slice(s.span.end, lineEnd))![0].length;
  if (text.slice(lineStart, s.span.start).trim() === '' && text.slice(s.span.end + after, lineEnd).trim() === '') {
    return { start: lineStart, end: nl < 0 ? lineEnd : lineEnd + 1, text: '' };
  }
  return { start: s.span.start, end: s.span.end + after, text: '' };
}

function quoteBody(value: string, quote: string, at = 'xl cfg'): string {
  if (value.includes(quote) || value.includes('\\') || value.includes('\n')) {
    throw new InputError(`${at}: cannot write ${JSON.stringify(value)} into an xl string quoted with ${quote}; choose a path or name without quotes or backslashes`);
  }
  return value;
}

function quote(value: string): string {
  return `'${quoteBody(value, "'")}'`;
}
