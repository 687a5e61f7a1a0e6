// Shell-style patterns for guest names: `*` any run of characters, `?` one
// character, `[abc]` / `[a-z]` / `[!abc]` one of (or none of) a set.
// Guest names have no `/`, so `*` matches everything.
import { UsageError } from '../errors';

/** Why `pattern` is not a valid pattern, or undefined if it is. */
export function globProblem(pattern: string): string | undefined {
  if (pattern === '') return 'an empty pattern matches no guest';
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') i++;
    else if (c === '[' && !inClass) {
      inClass = true;
      if (pattern[i + 1] === '!' || pattern[i + 1] === '^') i++;
      if (pattern[i + 1] === ']') i++; // `[]abc]`: a leading ] is literal
    } else if (c === ']' && inClass) inClass = false;
  }
  if (inClass) return `'[' without a closing ']'`;
  try {
    compile(pattern);
  } catch {
    // The only thing the regular expression engine still refuses: `[z-a]`.
    return 'a range in [...] runs backwards';
  }
  return undefined;
}

/** Refuse the first bad pattern given to `option` (e.g. `--guest`), naming it: a usage error, before any work. */
export function checkGlobs(patterns: string[], option: string): void {
  for (const p of patterns) {
    const problem = globProblem(p);
    if (problem) throw new UsageError(`${option} ${JSON.stringify(p)}: not a valid guest pattern (${problem}); fix the pattern`);
  }
}

export function globToRegExp(pattern: string): RegExp {
  const problem = globProblem(pattern);
  if (problem) throw new UsageError(`bad pattern ${JSON.stringify(pattern)}: ${problem}`);
  return compile(pattern);
}

function compile(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\' && i + 1 < pattern.length) re += escape(pattern[++i]!);
    else if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      let j = i + 1;
      let negate = false;
      if (pattern[j] === '!' || pattern[j] === '^') { negate = true; j++; }
      let body = '';
      if (pattern[j] === ']') { body += '\\]'; j++; }
      for (; pattern[j] !== ']'; j++) {
        const d = pattern[j]!;
        body += d === '-' ? '-' : escape(d);
      }
      re += `[${negate ? '^' : ''}${body}]`;
      i = j;
    } else re += escape(c);
  }
  return new RegExp(`^${re}$`, 's');
}

export function matchesGlob(name: string, pattern: string): boolean {
  return globToRegExp(pattern).test(name);
}

/** True for a pattern with no wildcard: it names exactly one guest. */
export function isLiteralGlob(pattern: string): boolean {
  return !/[*?[\\]/.test(pattern);
}

function escape(c: string): string {
  return /[\\^$.*+?()[\]{}|/-]/.test(c) ? `\\${c}` : c;
}
