// Shared pieces of the property-based fuzz tests: inputs made by mutating
// real examples (fixtures) with tokens of the format, and the one property
// they all check: a parser either returns, or throws a FerryError with an
// exit code of its class — never a plain Error, which the CLI reports as
// "internal error" (exit 70).
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { expect } from 'vitest';
import { FerryError } from '../../src/errors';

export const FIXTURES = path.join(__dirname, '..', 'fixtures');

/** Runs are bounded by count, not time: each property stays within seconds on a slow machine. */
export const FUZZ_RUNS = 1000;

/** Text files under a fixtures directory whose names match `pattern`. */
export function fixtureTexts(dir: string, pattern: RegExp): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (pattern.test(e.name)) out.push(fs.readFileSync(p, 'utf8'));
    }
  };
  walk(path.join(FIXTURES, dir));
  if (out.length === 0) throw new Error(`no fixtures matching ${pattern} under ${dir}`);
  return out;
}

type Edit = { at: number; kind: 'delete' | 'insert' | 'duplicate' | 'truncate'; length: number; token: string };

function applyEdit(text: string, e: Edit): string {
  const at = text.length === 0 ? 0 : e.at % (text.length + 1);
  switch (e.kind) {
    case 'delete': return text.slice(0, at) + text.slice(at + e.length);
    case 'insert': return text.slice(0, at) + e.token + text.slice(at);
    case 'duplicate': return text.slice(0, at + e.length) + text.slice(at, at + e.length) + text.slice(at + e.length);
    case 'truncate': return text.slice(0, at);
  }
}

/** A seed text with a few random edits: deletions, duplications, truncation, format tokens or odd characters inserted. */
export function mutated(seeds: string[], tokens: string[]): fc.Arbitrary<string> {
  const token = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...tokens) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }) },
    { weight: 1, arbitrary: fc.constantFrom('\u0000', '\n', '\r\n', '\\', '"', "'", '\uFFFD', '\u{1F600}', '-1', '1e309', '99999999999999999999', 'NaN') },
  );
  const edit: fc.Arbitrary<Edit> = fc.record({
    at: fc.nat(),
    kind: fc.constantFrom('delete', 'insert', 'insert', 'insert', 'duplicate', 'truncate'),
    length: fc.nat({ max: 64 }),
    token,
  });
  return fc
    .tuple(fc.constantFrom(...seeds), fc.array(edit, { minLength: 1, maxLength: 6 }))
    .map(([seed, edits]) => edits.reduce(applyEdit, seed));
}

/** Tokens of the format glued together at random: for parsers, not just mutations of valid input. */
export function tokenSoup(tokens: string[]): fc.Arbitrary<string> {
  return fc.array(fc.oneof(fc.constantFrom(...tokens), fc.string({ maxLength: 4 })), { maxLength: 30 }).map((parts) => parts.join(''));
}

/** The property: `parse` returns, or throws a FerryError whose exit code is its class's (never 70). */
export function returnsOrFerryError(parse: () => unknown): void {
  try {
    parse();
  } catch (err) {
    if (!(err instanceof FerryError)) {
      throw new Error(`not a FerryError: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`, { cause: err });
    }
    expect(err.exitCode).not.toBe(70);
    expect(err.exitCode).toBeGreaterThan(1);
  }
}
