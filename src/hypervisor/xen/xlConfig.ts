// Parser for xl domain config files (/etc/xen/NAME.cfg), following libxlu's
// grammar (libxlu_cfg_l.l / libxlu_cfg_y.y): `key = value` or `key += value`
// statements ended by a newline or `;`; values are strings ('..' or "..",
// with C escapes), numbers, or [ lists ] that may span lines and nest; `#`
// starts a comment. Every key is kept, known or not: ferry keeps the file's
// text for restore and only interprets a few keys.
import { InputError } from '../../errors';

export type XlValue =
  | { kind: 'string'; value: string; line: number }
  | { kind: 'number'; value: string; line: number }
  | { kind: 'list'; items: XlValue[]; line: number };

export interface XlSetting {
  name: string;
  value: XlValue;
  /** Line of the (last) statement that set it. */
  line: number;
}

export interface XlConfig {
  fileName: string;
  /** The file's text, unchanged. */
  text: string;
  /** Settings by name, in first-seen order. */
  settings: Map<string, XlSetting>;
}

type Token =
  | { type: 'ident'; text: string; line: number }
  | { type: 'string'; text: string; line: number }
  | { type: 'number'; text: string; line: number }
  | { type: 'op'; text: '=' | '+=' | ',' | '[' | ']' | ';'; line: number }
  | { type: 'newline'; line: number }
  | { type: 'eof'; line: number };

export function parseXlConfig(text: string, fileName: string): XlConfig {
  const tokens = tokenize(text, fileName);
  return { fileName, text, settings: parseStatements(tokens, fileName) };
}

function syntaxError(fileName: string, line: number, message: string): InputError {
  return new InputError(`${fileName}:${line}: ${message}`);
}

function tokenize(text: string, fileName: string): Token[] {
  const tokens: Token[] = [];
  let line = 1;
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '\n') { tokens.push({ type: 'newline', line }); line++; i++; continue; }
    if (c === ' ' || c === '\t' || c === '\r') { i++; continue; }
    if (c === '#') { while (i < text.length && text[i] !== '\n') i++; continue; }
    if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < text.length && text[j] !== c && text[j] !== '\n') j += text[j] === '\\' ? 2 : 1;
      if (j >= text.length || text[j] !== c) throw syntaxError(fileName, line, `unterminated string starting ${text.slice(i, i + 20)}`);
      tokens.push({ type: 'string', text: unescape(text.slice(i + 1, j), fileName, line), line });
      i = j + 1;
      continue;
    }
    if (c === '+' && text[i + 1] === '=') { tokens.push({ type: 'op', text: '+=', line }); i += 2; continue; }
    if (c === '=' || c === ',' || c === '[' || c === ']' || c === ';') {
      tokens.push({ type: 'op', text: c, line }); i++; continue;
    }
    const number = /^(0x[0-9a-fA-F]+|[0-9]+)(?![A-Za-z0-9_.])/.exec(text.slice(i, i + 40));
    if (number) { tokens.push({ type: 'number', text: number[1]!, line }); i += number[1]!.length; continue; }
    const ident = /^[A-Za-z_][A-Za-z0-9_.]*/.exec(text.slice(i, i + 200));
    if (ident) { tokens.push({ type: 'ident', text: ident[0], line }); i += ident[0].length; continue; }
    throw syntaxError(fileName, line, `unexpected character ${JSON.stringify(c)}`);
  }
  tokens.push({ type: 'eof', line });
  return tokens;
}

const SIMPLE_ESCAPES: Record<string, string> = {
  '"': '"', "'": "'", '\\': '\\', a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v',
};

// Same escapes as libxlu's xlu__cfgl_dequote: C escapes, \xHH and octal.
function unescape(body: string, fileName: string, line: number): string {
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== '\\') { out += c; continue; }
    const n = body[++i] ?? '';
    if (n in SIMPLE_ESCAPES) { out += SIMPLE_ESCAPES[n]; continue; }
    const hex = n === 'x' ? /^[0-9a-fA-F]{1,2}/.exec(body.slice(i + 1)) : null;
    if (hex) { out += String.fromCharCode(parseInt(hex[0], 16)); i += hex[0].length; continue; }
    const octal = /^[0-7]{1,3}/.exec(body.slice(i));
    if (octal) { out += String.fromCharCode(parseInt(octal[0], 8)); i += octal[0].length - 1; continue; }
    throw syntaxError(fileName, line, `invalid escape \\${n} in string`);
  }
  return out;
}

function parseStatements(tokens: Token[], fileName: string): Map<string, XlSetting> {
  const settings = new Map<string, XlSetting>();
  let pos = 0;
  const peek = () => tokens[pos]!;
  const next = () => tokens[pos++]!;
  const skipNewlines = () => { while (peek().type === 'newline') pos++; };
  const describe = (t: Token) =>
    t.type === 'eof' ? 'end of file' : t.type === 'newline' ? 'end of line' : JSON.stringify(t.text);

  const parseValue = (): XlValue => {
    const t = next();
    if (t.type === 'string') return { kind: 'string', value: t.text, line: t.line };
    if (t.type === 'number') return { kind: 'number', value: t.text, line: t.line };
    if (t.type === 'op' && t.text === '[') {
      const items: XlValue[] = [];
      skipNewlines();
      while (!(peek().type === 'op' && (peek() as { text: string }).text === ']')) {
        items.push(parseValue());
        skipNewlines();
        const sep = peek();
        if (sep.type === 'op' && sep.text === ',') { pos++; skipNewlines(); continue; }
        if (sep.type === 'op' && sep.text === ']') break;
        throw syntaxError(fileName, sep.line, `expected "," or "]" in list starting on line ${t.line}, found ${describe(sep)}`);
      }
      pos++; // ']'
      return { kind: 'list', items, line: t.line };
    }
    throw syntaxError(fileName, t.line, `expected a value (string, number or [list]), found ${describe(t)}`);
  };

  for (;;) {
    const t = next();
    if (t.type === 'eof') break;
    if (t.type === 'newline' || (t.type === 'op' && t.text === ';')) continue;
    if (t.type !== 'ident') throw syntaxError(fileName, t.line, `expected a setting name, found ${describe(t)}`);
    const op = next();
    if (op.type !== 'op' || (op.text !== '=' && op.text !== '+=')) {
      throw syntaxError(fileName, op.line, `expected "=" after ${t.text}, found ${describe(op)}`);
    }
    const value = parseValue();
    const end = peek();
    if (!(end.type === 'newline' || end.type === 'eof' || (end.type === 'op' && end.text === ';'))) {
      throw syntaxError(fileName, end.line, `expected end of line after the value of ${t.text}, found ${describe(end)}`);
    }
    const previous = settings.get(t.text);
    const merged = op.text === '+=' && previous ? append(previous.value, value, fileName, t.text) : value;
    settings.set(t.text, { name: t.text, value: merged, line: t.line });
  }
  return settings;
}

// `key += value`: concatenates strings, extends lists (libxlu's xlu__cfg_concat_vals).
function append(previous: XlValue, added: XlValue, fileName: string, name: string): XlValue {
  if (previous.kind === 'string' && added.kind === 'string') return { ...previous, value: previous.value + added.value };
  if (previous.kind === 'list' && added.kind === 'list') return { ...previous, items: [...previous.items, ...added.items] };
  throw syntaxError(fileName, added.line, `"${name} +=" must add a value of the same type (string or list) as before`);
}

/** A string or number setting as text; a list is an error naming file and line. */
export function configString(config: XlConfig, key: string): string | undefined {
  const s = config.settings.get(key);
  if (!s) return undefined;
  if (s.value.kind === 'list') throw syntaxError(config.fileName, s.line, `${key} must be a single value, not a list`);
  return s.value.value;
}

/** A numeric setting; a non-number is an error naming file and line. */
export function configNumber(config: XlConfig, key: string): number | undefined {
  const s = config.settings.get(key);
  if (!s) return undefined;
  if (s.value.kind !== 'number') throw syntaxError(config.fileName, s.line, `${key} must be a number`);
  return Number(s.value.value);
}

/** A list of strings with the line each item is on. A single string counts as a one-item list. */
export function configStringList(config: XlConfig, key: string): { value: string; line: number }[] {
  const s = config.settings.get(key);
  if (!s) return [];
  const items = s.value.kind === 'list' ? s.value.items : [s.value];
  return items.map((item) => {
    if (item.kind === 'list') throw syntaxError(config.fileName, item.line, `${key} must be a list of strings`);
    return { value: item.value, line: item.line };
  });
}
