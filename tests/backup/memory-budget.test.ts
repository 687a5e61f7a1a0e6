// Peak memory (issue 11) follows the memory budget, not the image: a 4 GiB
// image with 256 MiB of data backs up, restores, checks and syncs within the
// default 160 MiB, and within the smallest --memory budget, 96M. The peak is the kernel's high-water
// mark of the whole process (workers included), read as ferry exits.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { allocatedBytes, useScratch, writeSparseImageWithPieces } from '../support';
import { EXIT, expectCleanFailure, expectSuccess, ferry, FAST_KDF } from '../support/ferry';
import { ferryPeakRss } from '../support/peakRss';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const scratch = useScratch('memory-budget');
const env = { FERRY_PASSWORD: 'memory' };
const IMAGE_BYTES = 4 * GiB;
/** 4 pieces of 64 MiB (random, text, a few holes) spread over the image. */
const PIECE_BYTES = 64 * MiB;
const PIECE_AT = [0, 1, 2, 3].map((i) => Math.floor(((IMAGE_BYTES - PIECE_BYTES) * i) / 3 / MiB) * MiB);

let image: string;
let backedUp: { repo: string; id: string };

async function newRepository(name: string): Promise<string> {
  const repo = scratch.path(name);
  expectSuccess(await ferry(['init', '--repo', repo, ...FAST_KDF], { env }));
  return repo;
}

beforeAll(async () => {
  image = scratch.path('disk.img');
  writeSparseImageWithPieces(image, IMAGE_BYTES, PIECE_AT, PIECE_BYTES, 1100);
  const repo = await newRepository('restore-from');
  const out = JSON.parse(expectSuccess(await ferry(['backup', '--repo', repo, '--guest', 'mem', image, '--json'], { env }))) as { id: string };
  backedUp = { repo, id: out.id };
}, 120_000);

/** The image's data pieces and a hole between them equal the restored file's. */
function expectSameData(restored: string): void {
  expect(fs.statSync(restored).size).toBe(IMAGE_BYTES);
  const a = fs.openSync(image, 'r');
  const b = fs.openSync(restored, 'r');
  const bufA = Buffer.alloc(PIECE_BYTES);
  const bufB = Buffer.alloc(PIECE_BYTES);
  try {
    for (const at of [...PIECE_AT, PIECE_AT[1] + 2 * PIECE_BYTES]) {
      fs.readSync(a, bufA, 0, PIECE_BYTES, at);
      fs.readSync(b, bufB, 0, PIECE_BYTES, at);
      expect(bufB.equals(bufA), `bytes at ${at}`).toBe(true);
    }
  } finally {
    fs.closeSync(a);
    fs.closeSync(b);
  }
}

describe('peak memory of a 4 GiB image with 256 MiB of data', () => {
  it('backup stays under 160 MiB by default', async () => {
    const repo = await newRepository('backup-default');
    const { result, peakRssBytes } = await ferryPeakRss(scratch, ['backup', '--repo', repo, '--guest', 'mem', image], { env });
    expectSuccess(result);
    expect(peakRssBytes / MiB).toBeLessThanOrEqual(160);
  });

  it('restore stays under 160 MiB by default, bit-exact and sparse', async () => {
    const out = scratch.mkdir('restore-default');
    const { result, peakRssBytes } = await ferryPeakRss(scratch, ['restore', '--repo', backedUp.repo, backedUp.id, '--to', out], { env });
    expectSuccess(result);
    expect(peakRssBytes / MiB).toBeLessThanOrEqual(160);
    const restored = path.join(out, 'disk.img');
    expectSameData(restored);
    expect(allocatedBytes(restored)).toBeLessThan(4 * PIECE_BYTES + 4 * MiB);
  });

  it('backup, restore and check --read-data stay under a --memory budget of 96M (no worker isolate)', async () => {
    const repo = await newRepository('backup-96');
    const backup = await ferryPeakRss(scratch, ['backup', '--repo', repo, '--guest', 'mem', image, '--memory', '96M'], { env });
    expectSuccess(backup.result);
    expect(backup.peakRssBytes / MiB, 'backup').toBeLessThanOrEqual(96);
    const out = scratch.mkdir('restore-96');
    const restore = await ferryPeakRss(scratch, ['restore', '--repo', repo, 'latest', '--guest', 'mem', '--to', out, '--memory', '96M'], { env });
    expectSuccess(restore.result);
    expect(restore.peakRssBytes / MiB, 'restore').toBeLessThanOrEqual(96);
    expectSameData(path.join(out, 'disk.img'));
    const check = await ferryPeakRss(scratch, ['check', '--repo', repo, '--read-data', '--memory', '96M'], { env });
    expectSuccess(check.result);
    expect(check.peakRssBytes / MiB, 'check').toBeLessThanOrEqual(96);
  });

  it('check --read-data stays under 160 MiB by default', async () => {
    const { result, peakRssBytes } = await ferryPeakRss(scratch, ['check', '--repo', backedUp.repo, '--read-data'], { env });
    expectSuccess(result);
    expect(peakRssBytes / MiB).toBeLessThanOrEqual(160);
  });

  it('sync stays under 160 MiB by default and under 96 MiB with --memory 96M', async () => {
    for (const [budget, limit] of [[undefined, 160], ['96M', 96]] as const) {
      const copy = scratch.path(`copy-${limit}`);
      expectSuccess(await ferry(['init', '--repo', copy, '--from', backedUp.repo], { env }));
      const { result, peakRssBytes } = await ferryPeakRss(scratch, ['sync', backedUp.repo, copy, ...(budget ? ['--memory', budget] : [])], { env });
      expectSuccess(result);
      expect(peakRssBytes / MiB, `sync, budget ${budget ?? 'default'}`).toBeLessThanOrEqual(limit);
    }
  });

  it('nightly keeps ferry.conf\'s memory_limit = "96M" through its backup, check and prune', async () => {
    const repo = await newRepository('nightly-96');
    const conf = scratch.path('nightly-96.conf');
    fs.writeFileSync(conf, [
      `repository = ${JSON.stringify(repo)}`,
      'memory_limit = "96M"',
      `[[static.guest]]\nname = "mem"\ndisks = [${JSON.stringify(image)}]\n`,
      '[retention]\nkeep_last = 1\n',
      '[nightly]',
      `work_dir = ${JSON.stringify(scratch.mkdir('nightly-work'))}`,
      'prune_on = "daily"',
      'check_read_data = "100%"',
    ].join('\n'));
    const run = { ...env, FERRY_RUN_DIR: scratch.mkdir('nightly-run'), FERRY_STATE_DIR: scratch.mkdir('nightly-state') };
    const { result, peakRssBytes } = await ferryPeakRss(scratch, ['nightly', '--config', conf, '--json'], { env: run });
    const report = JSON.parse(expectSuccess(result, 'nightly')) as { ok: boolean; guests: { ok: boolean }[] };
    expect(report.ok).toBe(true);
    expect(report.guests.map((g) => g.ok)).toEqual([true]);
    expect(peakRssBytes / MiB, 'nightly').toBeLessThanOrEqual(96);
  });

  it('drill keeps ferry.conf\'s memory_limit = "96M" while it restores (a guest that never answers: the restore is all it does)', async () => {
    const conf = scratch.path('drill-96.conf');
    fs.writeFileSync(conf, 'memory_limit = "96M"\n[guest."*"]\nhealth = { serial = "/never printed/" }\nhealth_timeout = "1s"\n');
    const drillScratch = scratch.mkdir('drill-scratch');
    const { result, peakRssBytes } = await ferryPeakRss(scratch, ['drill', '--repo', backedUp.repo, '--guest', 'mem', '--config', conf, '--scratch', drillScratch, '--json'], { env });
    const [drilled] = JSON.parse(result.stdout) as { outcome: string; stage?: string; restoredBytes: number }[];
    expect(drilled, result.stderr).toMatchObject({ outcome: 'failed', stage: 'health' });
    expect(drilled!.restoredBytes).toBeGreaterThan(3 * PIECE_BYTES);
    expect(peakRssBytes / MiB, 'drill').toBeLessThanOrEqual(96);
  });

  it('refuses a budget below 96M or that is not a size, before touching the repository', async () => {
    for (const size of ['64M', '100', 'lots']) {
      const line = expectCleanFailure(await ferry(['backup', '--repo', backedUp.repo, '--guest', 'mem', image, '--memory', size], { env }), { code: EXIT.usage });
      expect(line).toMatch(/--memory: .* at least 96M/);
    }
  });
});
