// Peak memory of `backup --all` over a fleet (issue 11): the nightly job of a
// Dom0 backs up every guest in one process, two at a time by default. The
// guests share the memory budget: one set of slots and spare buffers per
// worker pool, packs split between the guests being written at once, and the
// buffers of a finished guest freed before the next one's pile up. (Each
// guest with its own set, 8 guests of 48 MiB peaked at 214 MiB.)
import * as fs from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { useScratch, writeRandomishImage } from '../support';
import { expectSuccess, ferry, FAST_KDF } from '../support/ferry';
import { ferryPeakRss } from '../support/peakRss';

const MiB = 1024 * 1024;
const GUESTS = 8;
const scratch = useScratch('memory-fleet');
const env = { FERRY_PASSWORD: 'memory-fleet' };
let conf: string;

beforeAll(async () => {
  const repo = scratch.path('repo');
  expectSuccess(await ferry(['init', '--repo', repo, ...FAST_KDF], { env }));
  const guests: string[] = [];
  for (let g = 0; g < GUESTS; g++) {
    const image = scratch.path(`guest${g}.img`);
    writeRandomishImage(image, 48 * MiB, 500 + g, { holes: 0.05, text: 0.3 });
    guests.push(`[[static.guest]]\nname = "guest${g}"\ndisks = [${JSON.stringify(image)}]\n`);
  }
  conf = scratch.path('ferry.conf');
  fs.writeFileSync(conf, `repository = ${JSON.stringify(repo)}\n\n${guests.join('\n')}`);
}, 120_000);

describe('peak memory of backup --all over 8 guests of 48 MiB', () => {
  it('stays under the default 160 MiB budget, every guest backed up', async () => {
    const { result, peakRssBytes } = await ferryPeakRss(scratch, ['backup', '--all', '--config', conf, '--work-dir', scratch.mkdir('work'), '--json'], { env });
    const out = JSON.parse(expectSuccess(result, 'backup --all')) as { guests: { ok: boolean; newBytes: number }[] };
    expect(out.guests.filter((g) => g.ok)).toHaveLength(GUESTS);
    expect(out.guests.every((g) => g.newBytes > 30 * MiB)).toBe(true);
    expect(peakRssBytes / MiB).toBeLessThanOrEqual(160);
  }, 120_000);
});
