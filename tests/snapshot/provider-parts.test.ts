// The parts snapshot providers share: the leftover sweep that tries every
// leftover before it reports, work-directory file sweeps, and polling.
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HypervisorError, UsageError } from '../../src/errors';
import { spawnSync } from 'node:child_process';
import { checkRunId, newRunId, ownedByLiveRun } from '../../src/snapshot/provider';
import { LeftoverSweep, deleteFiles, pollUntil, sweepOwnedFiles } from '../../src/snapshot/providerParts';
import { useScratch } from '../support';

const scratch = useScratch('provider-parts');

describe('checkRunId', () => {
  it('refuses a run id that cannot be part of a name, saying of what', () => {
    expect(() => checkRunId('a/b', 'an LVM name')).toThrow(UsageError);
    expect(() => checkRunId('a/b', 'an LVM name')).toThrow('run id "a/b" cannot be part of an LVM name: use letters, digits and _ . + -');
    expect(() => checkRunId('2026-12-01T03.00+1_x', 'an LVM name')).not.toThrow();
  });
});

describe('ownedByLiveRun: a leftover sweep passes over the names of a run that still runs on this host', () => {
  const deadPid = spawnSync('true').pid!;

  it('is true for a name of this process\'s run, false for a dead process\'s', () => {
    expect(ownedByLiveRun(`ferry-${newRunId(new Date(), process.pid)}-web01-disk`, 'ferry-')).toBe(true);
    expect(ownedByLiveRun(`ferry-${newRunId(new Date(), process.pid)}`, 'ferry-')).toBe(true);
    expect(ownedByLiveRun(`ferry-${newRunId(new Date(), deadPid)}-web01-disk`, 'ferry-')).toBe(false);
  });

  it('is false when the live process started after the run did: its pid was reused (after a reboot)', () => {
    expect(ownedByLiveRun(`ferry-${newRunId(new Date('2020-01-01T02:00:00Z'), process.pid)}-web01-disk`, 'ferry-')).toBe(false);
  });

  it('is false for names without a run id of newRunId\'s, or with another prefix', () => {
    expect(ownedByLiveRun('ferry-r9-0-vda.raw', 'ferry-')).toBe(false);
    expect(ownedByLiveRun('ferry-20260101T020000Z-app01-disk', 'ferry-')).toBe(false);
    expect(ownedByLiveRun(`other-${newRunId(new Date(), process.pid)}-x`, 'ferry-')).toBe(false);
  });
});

describe('LeftoverSweep and sweepOwnedFiles', () => {
  it('removes only owned files, in name order, and reports every one it could not remove after trying all', async () => {
    const dir = scratch.mkdir('work');
    for (const f of ['ferry-b.raw', 'ferry-a.qcow2', 'admin.img']) fs.writeFileSync(`${dir}/${f}`, '');
    fs.mkdirSync(`${dir}/ferry-dir.raw`); // unlink refuses a directory
    const sweep = new LeftoverSweep('leftover copies');
    await sweepOwnedFiles(sweep, dir, (name) => name.startsWith('ferry-'));
    expect(sweep.removed).toEqual([`${dir}/ferry-a.qcow2`, `${dir}/ferry-b.raw`]);
    expect(() => sweep.done()).toThrow(HypervisorError);
    expect(() => sweep.done()).toThrow(new RegExp(`^could not remove 1 leftover copies: cannot delete ${dir}/ferry-dir\\.raw: `));
    expect(fs.readdirSync(dir).sort()).toEqual(['admin.img', 'ferry-dir.raw']);
  });

  it('finds nothing in a work directory that does not exist', async () => {
    const sweep = new LeftoverSweep('leftover copies');
    await sweepOwnedFiles(sweep, scratch.path('never-made'), () => true);
    expect(sweep.done()).toEqual([]);
  });

  it('deleteFiles passes over files already gone', async () => {
    const f = scratch.path('ferry-x.raw');
    fs.writeFileSync(f, '');
    await deleteFiles([f, scratch.path('ferry-x.qcow2')]);
    expect(fs.existsSync(f)).toBe(false);
  });
});

describe('pollUntil', () => {
  it('asks until the check holds', async () => {
    let calls = 0;
    expect(await pollUntil(async () => ++calls === 3, { timeoutMs: 60_000, intervalMs: 1, maxIntervalMs: 4 })).toBe(true);
    expect(calls).toBe(3);
  });

  it('answers false once the time is up', async () => {
    let calls = 0;
    expect(await pollUntil(async () => { calls++; return false; }, { timeoutMs: 0, intervalMs: 1 })).toBe(false);
    expect(calls).toBeGreaterThanOrEqual(1);
  });
});
