import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { builtinModules } from 'node:module';

const root = path.join(__dirname, '..', '..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
};

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

// The package a bare specifier names: '@scope/name/sub' -> '@scope/name'.
function packageOf(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

function packagesImportedBySrc(): Set<string> {
  const found = new Set<string>();
  // A statement's end (`from 'x';`, `require('x')`), so that a message quoting a command ("from 'site plan --out')") is no import.
  const pattern = /(?:from\s+'([^'.][^']*)'\s*;|(?:require|import)\(\s*'([^'.][^']*)'\s*\))/g;
  for (const file of sourceFiles(path.join(root, 'src'))) {
    for (const m of fs.readFileSync(file, 'utf8').matchAll(pattern)) {
      const name = packageOf(m[1] ?? m[2]);
      if (name.startsWith('node:') || builtinModules.includes(name)) continue;
      found.add(name);
    }
  }
  return found;
}

describe('package.json dependencies', () => {
  // A user's `npm ci --omit=dev` installs exactly these: each must be needed at
  // run time, and everything else (benchmark comparisons, types) is a devDependency.
  it('lists exactly the packages that src/ imports', () => {
    expect(Object.keys(pkg.dependencies).sort()).toEqual([...packagesImportedBySrc()].sort());
  });
});
