// Typed reading of a TOML document that smol-toml accepted: each reader
// returns the value or throws a ConfigError naming the file, the key's line,
// the key and what was expected. Shared by ferry.conf and hosts.toml.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parse, TomlError } from 'smol-toml';
import { describeSystemError } from '../errors';
import { ConfigError } from './configError';
import { globProblem } from './glob';
import { HEALTH_KINDS, type HealthCheck, parseHealthTimeout, parseTcpTarget, serialPatternProblem } from '../health/healthCheck';
import { type KeyPath, TomlLines, formatKeyPath } from './tomlLines';

export type { KeyPath } from './tomlLines';
export type Table = Record<string, unknown>;

/** The file's text, or one line saying why the `what` ("config file") cannot be read and `whatToDo`. */
export function readTomlFile(file: string, what: string, whatToDo: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, undefined, undefined, `cannot read the ${what}: ${describeSystemError(err)}; ${whatToDo}`, { cause: err });
  }
}

/** Parses TOML; a syntax error names the line and column. */
export function parseTomlDocument(text: string, file: string): Table {
  try {
    return parse(text) as Table;
  } catch (err) {
    if (err instanceof TomlError) {
      const what = err.message.split('\n')[0]!.replace(/^Invalid TOML document:\s*/, '');
      throw new ConfigError(file, err.line, undefined, `TOML syntax error at column ${err.column}: ${what}`, { cause: err });
    }
    throw err;
  }
}

export class TomlChecker {
  protected readonly lines: TomlLines;
  private readonly baseDir: string;

  constructor(text: string, protected readonly file: string) {
    this.lines = new TomlLines(text);
    this.baseDir = path.dirname(path.resolve(file));
  }

  // ---- typed readers: each fails with the key's line and what it expects ----

  protected onlyKeys(t: Table, at: KeyPath, allowed: readonly string[]): void {
    for (const key of Object.keys(t)) {
      if (allowed.includes(key)) continue;
      const near = allowed.find((a) => editDistance(a, key) <= 2);
      this.fail([...at, key], `unknown key; expected one of ${allowed.join(', ')}${near ? ` (did you mean '${near}'?)` : ''}`);
    }
  }

  protected table(value: unknown, at: KeyPath, what = 'a table'): Table {
    if (!isTable(value)) this.fail(at, `expected ${what}, got ${describeValue(value)}`);
    return value;
  }

  protected string(value: unknown, at: KeyPath): string {
    if (typeof value !== 'string') this.fail(at, `expected a string, got ${describeValue(value)}`);
    return this.nonEmpty(value, at);
  }

  protected nonEmpty(value: string, at: KeyPath): string {
    if (value.trim() === '') this.fail(at, 'expected a non-empty string');
    return value;
  }

  protected guestName(value: unknown, at: KeyPath): string {
    const name = this.string(value, at);
    if (/[\x00-\x1f\s/]/.test(name)) this.fail(at, `expected a guest name without spaces, slashes or control characters, got ${JSON.stringify(name)}`);
    return name;
  }

  protected integer(value: unknown, at: KeyPath, min: number, max: number): number {
    if (typeof value !== 'number' || !Number.isInteger(value)) this.fail(at, `expected an integer from ${min} to ${max}, got ${describeValue(value)}`);
    if (value < min || value > max) this.fail(at, `expected an integer from ${min} to ${max}, got ${value}`);
    return value;
  }

  protected oneOf<T extends string>(value: unknown, at: KeyPath, choices: readonly T[]): T {
    const list = choices.map((c) => JSON.stringify(c)).join(', ');
    if (typeof value !== 'string') this.fail(at, `expected one of ${list}, got ${describeValue(value)}`);
    if (!(choices as readonly string[]).includes(value)) this.fail(at, `expected one of ${list}, got ${JSON.stringify(value)}`);
    return value as T;
  }

  protected stringList(value: unknown, at: KeyPath, opts: { nonEmpty?: boolean; argv?: boolean } = {}): string[] {
    const what = opts.argv ? 'an array of strings (a command and its arguments, no shell), e.g. ["ssh", "{name}", "sync"]' : 'an array of strings';
    if (!Array.isArray(value)) this.fail(at, `expected ${what}, got ${describeValue(value)}`);
    const bad = value.findIndex((v) => typeof v !== 'string');
    if (bad >= 0) this.fail(at, `expected ${what}, got ${describeValue(value[bad])} at position ${bad}`);
    if (opts.nonEmpty && value.length === 0) this.fail(at, `expected ${what} with at least one element, got an empty array`);
    return value as string[];
  }

  protected patterns(value: unknown, at: KeyPath): string[] {
    const list = this.stringList(value, at);
    list.forEach((p) => {
      const problem = globProblem(p);
      if (problem) this.fail(at, `expected guest name patterns, but ${JSON.stringify(p)}: ${problem}`);
    });
    return list;
  }

  protected path(p: string): string {
    return path.resolve(this.baseDir, p);
  }

  /** A plain path is resolved like any path; `s3:…` and other scheme locations are kept. */
  protected location(loc: string): string {
    return /^[a-z][a-z0-9+.-]*:/i.test(loc) ? loc : this.path(loc);
  }

  // ---- health checks of guest rules (ferry.conf and hosts.toml write them alike) ----

  /** `{ tcp = "HOST:PORT" }`, `{ serial = "text" | "/regex/" }` or `{ command = [argv] }`. */
  protected healthCheck(value: unknown, at: KeyPath): HealthCheck {
    const what = 'one of { tcp = "HOST:PORT" }, { serial = "login:" } or { command = ["pg_isready", "-h", "db01"] }';
    const t = this.table(value, at, what);
    this.onlyKeys(t, at, HEALTH_KINDS);
    const keys = Object.keys(t);
    if (keys.length !== 1) this.fail(at, `expected ${what}: exactly one of them, got ${keys.length === 0 ? 'an empty table' : keys.join(' and ')}`);
    if (t.tcp !== undefined) {
      const target = parseTcpTarget(this.string(t.tcp, [...at, 'tcp']));
      if ('problem' in target) this.fail([...at, 'tcp'], target.problem);
      return { kind: 'tcp', ...target };
    }
    if (t.serial !== undefined) {
      const pattern = this.string(t.serial, [...at, 'serial']);
      const problem = serialPatternProblem(pattern);
      if (problem) this.fail([...at, 'serial'], problem);
      return { kind: 'serial', pattern };
    }
    const argv = this.stringList(t.command, [...at, 'command'], { nonEmpty: true, argv: true });
    if (argv[0] === '') this.fail([...at, 'command'], 'expected a command as the first element, got an empty string');
    return { kind: 'command', argv: [...argv] };
  }

  /** `"90s"`, `"5m"`, `"1h"` → milliseconds. */
  protected healthTimeout(value: unknown, at: KeyPath): number {
    const text = this.string(value, at);
    const ms = parseHealthTimeout(text);
    if (ms === undefined) this.fail(at, `expected a duration above zero and at most a day, such as "90s", "5m" or "1h", got ${JSON.stringify(text)}`);
    return ms;
  }

  protected fail(at: KeyPath, detail: string): never {
    if (at.length === 0) throw new ConfigError(this.file, undefined, undefined, detail);
    throw new ConfigError(this.file, this.lines.lineOf(at), formatKeyPath(at), detail);
  }
}

export function isTable(value: unknown): value is Table {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === null || proto === Object.prototype; // smol-toml makes tables without a prototype
}

export function describeValue(value: unknown): string {
  if (typeof value === 'string') return `a string ${JSON.stringify(value)}`;
  if (typeof value === 'number') return Number.isInteger(value) ? `an integer ${value}` : `a float ${value}`;
  if (typeof value === 'bigint') return `an integer ${value}`;
  if (typeof value === 'boolean') return `a boolean ${value}`;
  if (Array.isArray(value)) return 'an array';
  if (isTable(value)) return 'a table';
  if (value instanceof Date) return 'a date';
  return typeof value;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}
