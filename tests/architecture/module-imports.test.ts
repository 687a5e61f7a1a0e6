// The module map of docs/ARCHITECTURE.md, enforced: each folder of src/ may
// import only the folders listed for it, so data flows one way
// (hypervisor → snapshot → dedupe → crypto → repo → storage on backup) and no
// module reaches around its neighbour. A new import across folders means
// changing this table and the document together, on purpose.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve(__dirname, '..', '..', 'src');

/**
 * Folder → folders (or single files, `repo/format`) it may import, besides
 * itself and src/errors.ts, which every folder may use.
 */
const MAY_IMPORT: Record<string, readonly string[]> = {
  host: [],
  // Sizes and durations as people write them: read by flags and config keys alike.
  units: [],
  concurrency: [],
  types: [],
  storage: ['host'],
  crypto: [],
  // The format's constants and the page-patch body are leaf files of repo/: dedupe cuts and patches by them.
  // Snapshot providers hand dedupe byte ranges (ByteRange is the snapshot seam's type).
  // Images are read past the page cache by host/directIo's alignment rules.
  dedupe: ['units', 'crypto', 'snapshot', 'host', 'repo/format', 'repo/pagePatchFormat'],
  repo: ['storage', 'crypto', 'host', 'concurrency'],
  workers: ['repo', 'crypto', 'dedupe', 'host'],
  hypervisor: ['host'],
  snapshot: ['hypervisor', 'host', 'concurrency'],
  config: ['units', 'hypervisor', 'snapshot', 'retention', 'health'],
  // Health checks of restored guests: its commands run with the child environment of hypervisor/.
  health: ['units', 'hypervisor'],
  retention: [],
  backup: ['hypervisor', 'snapshot', 'dedupe', 'crypto', 'repo', 'storage', 'workers', 'host', 'concurrency', 'config'],
  restore: ['repo', 'crypto', 'dedupe', 'storage', 'workers', 'host', 'concurrency'],
  check: ['repo', 'crypto', 'storage', 'workers', 'concurrency', 'host'],
  repair: ['repo', 'crypto', 'storage', 'concurrency'],
  prune: ['repo', 'crypto', 'storage', 'concurrency'],
  sync: ['repo', 'crypto', 'storage', 'host', 'concurrency', 'prune'],
  tar: ['backup', 'restore', 'repo', 'crypto', 'dedupe', 'storage', 'workers', 'concurrency'],
  site: ['config', 'hypervisor', 'snapshot', 'repo', 'restore', 'storage', 'workers', 'concurrency', 'host', 'health', 'crypto', 'dedupe'],
  // The nightly job's parts: [nightly] read with config's checker, the check's subset spec, hooks' secret-free environment.
  nightly: ['units', 'config', 'check', 'hypervisor', 'host'],
  drill: ['restore', 'repo', 'workers', 'site', 'hypervisor', 'health'],
  demo: ['backup', 'restore', 'repo', 'storage', 'crypto', 'dedupe', 'workers', 'hypervisor', 'snapshot', 'concurrency', 'host'],
  schedule: ['host'],
  cli: ['*'],
};

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

/** `src/<folder>/…` → folder; a file directly in src/ → its name (e.g. `errors.ts`). */
function folderOf(file: string): string {
  return path.relative(SRC, file).split(path.sep)[0]!;
}

interface Edge { from: string; to: string; file: string; spec: string; target: string }

function crossFolderImports(): Edge[] {
  const edges: Edge[] = [];
  for (const file of sourceFiles(SRC)) {
    const text = fs.readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+'(\.[^']+)'|import\(\s*'(\.[^']+)'\s*\)|require\(\s*'(\.[^']+)'\s*\)/g)) {
      const spec = m[1] ?? m[2] ?? m[3]!;
      const target = path.resolve(path.dirname(file), spec);
      if (!target.startsWith(SRC + path.sep)) continue;
      const from = folderOf(file);
      const to = folderOf(target.endsWith('.ts') ? target : `${target}.ts`);
      const targetFile = path.relative(SRC, target).replace(/\.ts$/, '');
      if (from !== to) edges.push({ from, to: to.replace(/\.ts$/, ''), file: path.relative(SRC, file), spec, target: targetFile });
    }
  }
  return edges;
}

describe('module map (docs/ARCHITECTURE.md)', () => {
  const edges = crossFolderImports();

  it('finds the imports it checks', () => {
    expect(edges.length).toBeGreaterThan(100);
    expect(edges.some((e) => e.from === 'backup' && e.to === 'repo')).toBe(true);
  });

  it('every folder of src/ is in the map', () => {
    const folders = fs.readdirSync(SRC, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    expect(folders.filter((f) => !(f in MAY_IMPORT))).toEqual([]);
  });

  it('each folder imports only what the map allows', () => {
    const bad = edges
      .filter((e) => e.to !== 'errors' && !(MAY_IMPORT[e.from] ?? []).some((a) => a === '*' || a === e.to || a === e.target))
      .map((e) => `${e.file} imports ${e.spec} (${e.from} → ${e.to})`);
    expect(bad).toEqual([]);
  });

  it('the single files other folders may import are leaves (they import nothing from src/)', () => {
    const leaves = Object.values(MAY_IMPORT).flat().filter((a) => a.includes('/'));
    const leafImports = edges.filter((e) => leaves.includes(e.file.replace(/\.ts$/, ''))).map((e) => `${e.file} imports ${e.spec}`);
    expect(leafImports).toEqual([]);
    for (const leaf of leaves) expect(fs.readFileSync(path.join(SRC, `${leaf}.ts`), 'utf8')).not.toMatch(/from '\.\//);
  });

  it('no two folders import each other, directly or in a cycle', () => {
    const graph = new Map<string, Set<string>>();
    // A leaf file another folder may import by name (repo/format) imports nothing back: it is not an edge of a cycle.
    const leaves = new Set(Object.values(MAY_IMPORT).flat().filter((a) => a.includes('/')));
    for (const e of edges) if (e.to !== 'errors' && !leaves.has(e.target)) graph.set(e.from, (graph.get(e.from) ?? new Set()).add(e.to));
    const cycles: string[] = [];
    const visit = (node: string, trail: string[]) => {
      for (const next of graph.get(node) ?? []) {
        if (trail.includes(next)) cycles.push([...trail.slice(trail.indexOf(next)), next].join(' → '));
        else visit(next, [...trail, next]);
      }
    };
    for (const node of graph.keys()) visit(node, [node]);
    expect([...new Set(cycles)]).toEqual([]);
  });
});
