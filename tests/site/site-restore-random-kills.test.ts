// `ferry site restore` SIGKILLed at seeded random moments, drawn across the
// measured duration of a run that is not killed, and run again after each
// kill: the final name only ever holds the complete disk, the re-run
// finishes bit-exact, continues after exactly the regions the journal says
// were written and fsynced, and writes at most what was missing plus one
// batch (LOCAL_BATCH_REGIONS). A local dir pool: the data path is the same as
// for any host, and it is fast enough for many kills.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { SeededRandom, TestRepo, expectSuccess, ferryStateDir, parseJson, useScratch, writeRandomishImage } from '../support';
import { RestoreJournal } from '../../src/site/restoreJournal';
import { LOCAL_BATCH_REGIONS, PARTIAL_SUFFIX } from '../../src/site/siteRestore';
import { REGION_SIZE } from '../../src/repo/format';

const scratch = useScratch('site-restore-random-kills');
const KILLS = 8;
const REGIONS = 3 * LOCAL_BATCH_REGIONS;
const SEED = 7107;
/** Blocks compared between the partial file and the source, to measure what a kill left missing. */
const BLOCK = 64 * 1024;
let repo: TestRepo;
let image: string;
let planFile: string;
let pool: string;

interface Report { guest: string; ok: boolean; error?: string; restorePoint: string; writtenBytes: number; disks: Array<{ name: string; target: string; writtenBytes: number; resumedAfterRegions?: number; alreadyRestored?: boolean }> }

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'repo');
  image = scratch.path('rk01.img');
  // Three batches; about a seventh data, in 1 MiB pieces.
  writeRandomishImage(image, REGIONS * REGION_SIZE, 5, { holes: 0.86 });
  await repo.backup('rk01', [image]);
  pool = scratch.mkdir('pool');
  const hostsToml = scratch.path('hosts.toml');
  fs.writeFileSync(hostsToml, `[[host]]\nname = "new01"\naddress = "local"\nhypervisor = "qemu"\naccel = "tcg"\nmemory = "4G"\ncpus = 2\nconfig_dir = "${scratch.path('etc')}"\n[[host.pool]]\nname = "images"\ntype = "dir"\npath = "${pool}"\n`);
  planFile = scratch.path('plan.json');
  expectSuccess(await repo.run(['site', 'plan', '--hosts', hostsToml, '--out', planFile]));
});

// No --force: a re-run must take what its killed predecessor left as its own.
const RESTORE = ['site', 'restore', '--no-start', '--json'];

/** Bytes in BLOCK-sized blocks of `file` (absent: all zeros) that differ from the source image in [from, to); read 4 MiB at a time. */
function differingBytes(file: string | undefined, from = 0, to = fs.statSync(image).size): number {
  const READ = 64 * BLOCK;
  const src = fs.openSync(image, 'r');
  const dst = file ? fs.openSync(file, 'r') : undefined;
  const a = Buffer.alloc(READ);
  const b = Buffer.alloc(READ);
  let differing = 0;
  try {
    for (let at = from; at < to; at += READ) {
      const n = fs.readSync(src, a, 0, Math.min(READ, to - at), at);
      b.fill(0);
      if (dst !== undefined) fs.readSync(dst, b, 0, n, at);
      if (a.subarray(0, n).equals(b.subarray(0, n))) continue;
      for (let i = 0; i < n; i += BLOCK) {
        const end = Math.min(n, i + BLOCK);
        if (!a.subarray(i, end).equals(b.subarray(i, end))) differing += end - i;
      }
    }
  } finally {
    fs.closeSync(src);
    if (dst !== undefined) fs.closeSync(dst);
  }
  return differing;
}

/** Bit-exact: the same size, and no block differs. */
function sameAsImage(file: string): boolean {
  return fs.statSync(file).size === fs.statSync(image).size && differingBytes(file) === 0;
}

describe('site restore killed at random moments', () => {
  it(`${KILLS} SIGKILLs at seeded moments across an unkilled run: each re-run completes bit-exact and writes only what was missing, plus at most one batch`, async () => {
    const journal = new RestoreJournal(path.join(ferryStateDir(), 'site-restore')); // FERRY_STATE_DIR of every ferry this file runs
    const guestDir = path.join(pool, 'rk01');
    const target = path.join(guestDir, 'rk01.img');
    const partial = `${target}${PARTIAL_SUFFIX}`;
    const fresh = () => {
      fs.rmSync(guestDir, { recursive: true, force: true });
      journal.forget('new01', target);
    };
    // One batch's data, the most a kill can cost beyond what is missing: the largest of any batch.
    const batchBytes = LOCAL_BATCH_REGIONS * REGION_SIZE;
    let oneBatch = 0;
    for (let from = 0; from < fs.statSync(image).size; from += batchBytes) oneBatch = Math.max(oneBatch, differingBytes(undefined, from, from + batchBytes));

    // The unkilled run, timed from its start to the first byte of its partial file and to its end.
    fresh();
    const began = Date.now();
    const unkilled = repo.spawn([...RESTORE, '--plan', planFile]);
    let firstWrite: number | undefined;
    let exited = false;
    void unkilled.done.then(() => { exited = true; });
    while (!exited) {
      if (firstWrite === undefined && fs.existsSync(partial)) firstWrite = Date.now() - began;
      await new Promise((r) => setTimeout(r, 5));
    }
    const duration = Date.now() - began;
    const full = parseJson<Report[]>(await unkilled.done)[0]!;
    expect(full.ok, full.error).toBe(true);
    const disk = full.disks[0]!.name;
    const writing = firstWrite ?? 0;
    console.log(`unkilled run: ${duration} ms (writing from ${writing} ms), ${full.writtenBytes} bytes written; one batch holds at most ${oneBatch} data bytes`);

    const rng = new SeededRandom(SEED);
    // Across the run; most of them while it writes, where a kill can cost something.
    const moments = Array.from({ length: KILLS }, (_, i) => Math.floor(i < 2 ? rng.next() * duration : writing + rng.next() * (duration - writing)));
    for (const ms of moments) {
      fresh();
      const run = repo.spawn([...RESTORE, '--plan', planFile]);
      await new Promise((r) => setTimeout(r, ms));
      run.child.kill('SIGKILL');
      await run.done;
      const at = `after a kill at ${ms} ms`;
      // The final name holds the whole disk or nothing.
      const complete = fs.existsSync(target);
      if (complete) expect(sameAsImage(target), at).toBe(true);
      const record = journal.read('new01', target, full.restorePoint, disk);
      const durableRegions = record && !record.complete && fs.existsSync(partial) ? record.regionsDone : 0;
      const missing = complete ? 0 : differingBytes(fs.existsSync(partial) ? partial : undefined);

      const again = parseJson<Report[]>(await repo.run([...RESTORE, '--plan', planFile]))[0]!;
      expect(again.ok, `${at}: ${again.error}`).toBe(true);
      expect(sameAsImage(target), at).toBe(true);
      expect(fs.readdirSync(guestDir), at).toEqual(['rk01.img']);
      if (complete) expect(again.disks[0], at).toMatchObject({ alreadyRestored: true, writtenBytes: 0 });
      // Never rewrites what the journal says is written and fsynced...
      else expect(again.disks[0]!.resumedAfterRegions ?? 0, at).toBe(durableRegions);
      // ...and so writes what was missing, and at most the unrecorded part of the batch in flight again.
      expect(again.writtenBytes, at).toBeLessThanOrEqual(missing + oneBatch);
      console.log(`kill at ${ms} ms: ${complete ? 'disk complete' : `${durableRegions} of ${REGIONS} regions durable`}, ${missing} bytes missing, re-run wrote ${again.writtenBytes}`);
    }
  });

  it('a run killed between the rename of the complete disk and its journal record: the re-run takes the disk as its own and writes nothing', async () => {
    const journal = new RestoreJournal(path.join(ferryStateDir(), 'site-restore'));
    const target = path.join(pool, 'rk01', 'rk01.img');
    fs.rmSync(path.dirname(target), { recursive: true, force: true });
    journal.forget('new01', target);
    const full = parseJson<Report[]>(await repo.run([...RESTORE, '--plan', planFile]))[0]!;
    // What that kill leaves: the disk renamed, the record still at its last checkpoint.
    const record = journal.read('new01', target, full.restorePoint, full.disks[0]!.name)!;
    journal.write('new01', target, { restorePoint: record.restorePoint, disk: record.disk, size: record.size, regionsDone: record.regionsDone, complete: false });
    const again = parseJson<Report[]>(await repo.run([...RESTORE, '--plan', planFile]))[0]!;
    expect(again.ok, again.error).toBe(true);
    expect(again.disks[0]).toMatchObject({ alreadyRestored: true, writtenBytes: 0 });
    expect(sameAsImage(target)).toBe(true);
    expect(journal.read('new01', target, full.restorePoint, full.disks[0]!.name)).toMatchObject({ complete: true });
  });
});
