// glibc's mmap threshold pinned (src/host/mallocThreshold.ts): a MiB-sized
// buffer freed after a larger one goes back to the system. Left dynamic, the
// threshold rises to the 16 MiB buffer freed first, the next buffers come from
// malloc's heap and stay in the RSS once freed: what made check --read-data
// creep from 150 to 190 MiB (16 MiB packs, then 1-4 MiB buffers).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { useScratch } from '../support';

const scratch = useScratch('malloc-threshold');
const built = path.join(__dirname, '..', '..', 'dist', 'host', 'mallocThreshold.js');

// Frees a 16 MiB buffer (raising a dynamic threshold to it), then holds six 4 MiB buffers and frees them;
// prints what pinning returned and how much RSS the freed six still hold.
const PROBE = `
const { pinMallocMmapThreshold } = require(${JSON.stringify(built)});
const MiB = 1024 * 1024;
const pinned = process.argv[2] === 'pin' ? pinMallocMmapThreshold() : 'dynamic';
const settle = async () => { for (let i = 0; i < 3; i++) { global.gc(); await new Promise((r) => setTimeout(r, 20)); } };
(async () => {
  let large = Buffer.alloc(16 * MiB, 1);
  large = null;
  await settle();
  const before = process.memoryUsage().rss;
  let held = [];
  for (let i = 0; i < 6; i++) held.push(Buffer.alloc(4 * MiB, 1));
  held = null;
  await settle();
  process.stdout.write(JSON.stringify({ pinned, retainedMiB: (process.memoryUsage().rss - before) / MiB }));
})();
`;

function probe(mode: 'pin' | 'dynamic'): { pinned: string; retainedMiB: number } {
  const script = scratch.path('probe.js');
  if (!fs.existsSync(script)) fs.writeFileSync(script, PROBE);
  const run = spawnSync(process.execPath, ['--expose-gc', script, mode], { encoding: 'utf8' });
  expect(run.status, run.stderr).toBe(0);
  return JSON.parse(run.stdout) as { pinned: string; retainedMiB: number };
}

describe('pinMallocMmapThreshold: freed MiB-sized buffers leave the RSS', () => {
  it('left dynamic (glibc default), 24 MiB of freed 4 MiB buffers stay resident', () => {
    expect(probe('dynamic').retainedMiB).toBeGreaterThan(20);
  });

  it('pinned at 1 MiB, they are given back', () => {
    const { pinned, retainedMiB } = probe('pin');
    expect(pinned).toBe('pinned');
    expect(retainedMiB).toBeLessThan(4);
  });
});
