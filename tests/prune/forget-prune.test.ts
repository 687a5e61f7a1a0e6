// `ferry forget --prune`: forget, then prune under the same exclusive lock, with
// one report of both parts (text, or one JSON object with --json).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT, TestRepo, expectCleanFailure, expectSuccess, listFiles, parseJson, sha256File, useScratch, writeRandomishImage } from '../support';

const MiB = 1024 * 1024;
const scratch = useScratch('forget-prune');

interface ForgetPruneReport {
  dryRun: boolean;
  removed: string[];
  prune: { dryRun: boolean; restorePointsKept: number; bytesFreed: number; packBytesAfter: number; packsDeleted: number };
}

let fixture: TestRepo;
let keep: { id: string; sha256: string };
let drop: { id: string };
let copies = 0;

/** Guest `a` (8 MiB) and guest `b` (6 MiB), incompressible and sharing nothing. */
beforeAll(async () => {
  fixture = await TestRepo.init(scratch, 'fixture');
  const a = scratch.path('a.img');
  const b = scratch.path('b.img');
  writeRandomishImage(a, 8 * MiB, 1, { holes: 0, text: 0 });
  writeRandomishImage(b, 6 * MiB, 2, { holes: 0, text: 0 });
  keep = { id: (await fixture.backup('a', [a])).id, sha256: await sha256File(a) };
  drop = { id: (await fixture.backup('b', [b])).id };
});

function packBytes(repo: TestRepo): number {
  return listFiles(path.join(repo.path, 'data')).reduce((sum, f) => sum + fs.statSync(path.join(repo.path, 'data', f)).size, 0);
}

function objects(repo: TestRepo): string[] {
  return ['data', 'index', 'snapshots'].flatMap((dir) => listFiles(path.join(repo.path, dir)).map((f) => `${dir}/${f}`));
}

describe('ferry forget --prune', () => {
  it('removes the restore point and frees its data in one run; --json gives both reports in one object', async () => {
    const repo = await fixture.copyTo(scratch.path(`copy-${++copies}`));
    const before = packBytes(repo);
    const report = parseJson<ForgetPruneReport>(await repo.run(['forget', drop.id, '--prune', '--json']));
    expect(report.removed).toEqual([drop.id]);
    expect(report.prune.dryRun).toBe(false);
    expect(report.prune.restorePointsKept).toBe(1);
    expect(report.prune.bytesFreed).toBe(before - packBytes(repo));
    expect(report.prune.bytesFreed).toBeGreaterThan(6 * MiB * 0.95);
    expect((await repo.list()).map((p) => p.id)).toEqual([keep.id]);
    const out = scratch.path(`restored-${copies}`);
    expectSuccess(await repo.run(['restore', keep.id, '--to', out]));
    expect(await sha256File(path.join(out, 'a.img'))).toBe(keep.sha256);
    await repo.expectCheckPasses(true);
  });

  it('prints the forget lines, then the prune report', async () => {
    const repo = await fixture.copyTo(scratch.path(`copy-${++copies}`));
    const out = expectSuccess(await repo.run(['forget', drop.id, '--prune', '--repack-below', '0.3']));
    expect(out).toMatch(new RegExp(`^removed restore point ${drop.id.slice(0, 8)} \\(b, .*\\)\\nprune:\\n  restore points kept: +1 `, 'm'));
    expect(out).toMatch(/^ {2}freed: +\d+ blobs, 6\.\d+ MiB/m);
  });

  it('--dry-run --prune reports what prune would free once the points are gone, and changes nothing', async () => {
    const repo = await fixture.copyTo(scratch.path(`copy-${++copies}`));
    const before = objects(repo);
    const report = parseJson<ForgetPruneReport>(await repo.run(['forget', drop.id, '--prune', '--dry-run', '--json']));
    expect(report.dryRun).toBe(true);
    expect(report.removed).toEqual([drop.id]);
    expect(report.prune.dryRun).toBe(true);
    expect(report.prune.restorePointsKept).toBe(1);
    expect(report.prune.bytesFreed).toBeGreaterThan(6 * MiB * 0.95);
    expect(objects(repo)).toEqual(before);
  });

  it("refuses prune's options without --prune, and a bad --repack-below, before touching anything", async () => {
    const repo = await fixture.copyTo(scratch.path(`copy-${++copies}`));
    const before = objects(repo);
    expectCleanFailure(await repo.run(['forget', drop.id, '--repack-below', '0.3']), { code: EXIT.usage, message: /--repack-below only applies with --prune/ });
    expectCleanFailure(await repo.run(['forget', drop.id, '--prune', '--repack-below', '2']), { code: EXIT.usage, message: /--repack-below: '2' must be a fraction/ });
    expect(objects(repo)).toEqual(before);
  });
});
