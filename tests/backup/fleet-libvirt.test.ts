// `ferry backup --all --libvirt` against a real libvirt domain (TCG) that
// never stops writing to the ext4 file system on its qcow2 disk: libvirt's
// own backup job copies it live (no pause, the domain stays running), the
// restored raw image is a clean file system holding every file written before
// the backup and boots as a fresh domain, a nightly run reads only what the
// checkpoint's dirty bitmap reports, and the restore point keeps the domain
// XML. Domains (with their checkpoint metadata), libvirtd if started here, and
// all files are removed at clean-up, also when a test failed.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { useScratch } from '../support/scratch';
import { mustRun, runCommand } from '../support/system';
import { ferry, expectSuccess, FAST_KDF } from '../support/ferry';
import {
  type DomainSpec, LIBVIRT_URI, copyDisk, defineDomain, domstate, expectedFileContent, removeDomain, startDomain,
  startNewDomain, useLibvirtGuestFiles, virsh, waitForWrites, writtenFiles,
} from '../support/libvirtGuest';

const scratch = useScratch('fleet-libvirt');
const NAME = `ferry-fleet-lv-${process.pid}`;
const env = { FERRY_PASSWORD: 'fleet-libvirt-test' };
let repo: string;
let spec: DomainSpec;
const timings: Record<string, number> = {};

beforeAll(async () => {
  const files = await useLibvirtGuestFiles(scratch);
  spec = {
    name: NAME,
    files,
    // qcow2: libvirt keeps the checkpoint's dirty bitmap in the image.
    disks: [{ path: await copyDisk(files, scratch.path('vda.qcow2'), 'qcow2'), format: 'qcow2' }],
    consoleLog: scratch.path('console.log'),
    mac: '52:54:00:fe:01:01',
  };
  await startNewDomain(scratch, spec);
  repo = scratch.path('repo');
  expectSuccess(await ferry(['init', '--repo', repo, ...FAST_KDF], { env }), 'init');
  await waitForWrites(spec.consoleLog, 0, 5);
}, 300_000);

interface GuestOutcomeJson {
  guest: string;
  driver: string;
  ok: boolean;
  id: string;
  error?: string;
  pauseMs: number;
  readBytes: number;
  logicalBytes: number;
  newBytes: number;
  fullReads: string[];
  snapshotKinds: string[];
}

/** `ferry backup --all --libvirt` restricted to the test domain, with `domstate` polled all along. */
async function backupAll(label: string): Promise<{ outcome: GuestOutcomeJson; states: string[]; samples: number }> {
  const states = new Set<string>();
  let samples = 0;
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const r = await runCommand('virsh', ['-c', LIBVIRT_URI, 'domstate', NAME], { timeoutMs: 60_000 });
      states.add(r.code === 0 ? r.stdout.trim() : `virsh failed: ${r.stderr.trim()}`);
      samples++;
      await new Promise((res) => setTimeout(res, 50));
    }
  })();
  const t0 = Date.now();
  let out: string;
  try {
    out = expectSuccess(
      await ferry(
        ['backup', '--all', '--libvirt', LIBVIRT_URI, '--guest', NAME, '--repo', repo, '--work-dir', scratch.mkdir('work'), '--json'],
        { env, timeoutMs: 600_000 },
      ),
      `backup --all (${label})`,
    );
  } finally {
    polling = false;
    await poller;
    timings[label] = Date.now() - t0;
  }
  const parsed = JSON.parse(out) as { guests: GuestOutcomeJson[]; failed: number };
  expect(parsed.failed).toBe(0);
  expect(parsed.guests.map((g) => g.guest)).toEqual([NAME]);
  return { outcome: parsed.guests[0]!, states: [...states], samples };
}

async function restore(id: string, dirName: string): Promise<{ dir: string; image: string }> {
  const dir = scratch.mkdir(dirName);
  const t0 = Date.now();
  expectSuccess(await ferry(['restore', '--repo', repo, id, '--to', dir], { env, timeoutMs: 300_000 }), 'restore');
  timings[`restore ${dirName}`] = Date.now() - t0;
  expect(fs.readdirSync(dir).sort()).toEqual([`${NAME}.xml`, 'vda.img']);
  return { dir, image: path.join(dir, 'vda.img') };
}

/**
 * A crash-consistent copy of a mounted ext4 has an unreplayed journal: replay it
 * on a private copy (as a mount would), then `fsck.ext4 -fn` must find nothing,
 * every file in `mustHold` must be in /data, and a spread of them must hold
 * exactly what the guest wrote.
 */
async function expectCleanExt4Holding(image: string, mustHold: string[]): Promise<void> {
  const copy = scratch.path(`fsck-${process.hrtime.bigint()}.img`);
  await mustRun('cp', ['--sparse=always', image, copy]);
  try {
    const replay = await runCommand('e2fsck', ['-E', 'journal_only', '-p', copy]);
    expect(replay.code, `journal replay: ${replay.stdout}${replay.stderr}`).toBeLessThanOrEqual(1); // 1: journal replayed
    const fsck = await runCommand('fsck.ext4', ['-fn', copy]);
    expect(fsck.code, `fsck.ext4 -fn ${image}:\n${fsck.stdout}${fsck.stderr}`).toBe(0);
    const listing = await mustRun('debugfs', ['-R', 'ls -p /data', copy]);
    const present = new Set([...listing.matchAll(/\/\d+\/\d+\/\d+\/\d+\/([^/]+)\//g)].map((m) => `data/${m[1]}`));
    expect(mustHold.length).toBeGreaterThan(0);
    expect(mustHold.filter((f) => !present.has(f)), 'files the guest had fsynced before the backup began').toEqual([]);
    const picks = [...new Set([0, Math.floor(mustHold.length / 2), mustHold.length - 1].map((i) => mustHold[i]!))];
    for (const f of picks) {
      const r = await runCommand('debugfs', ['-R', `cat /${f}`, copy]);
      expect(Buffer.from(r.stdout, 'utf8'), f).toEqual(expectedFileContent(f));
    }
  } finally {
    fs.rmSync(copy, { force: true });
  }
}

describe('backup --all of a running libvirt domain', () => {
  // The first backup, watched from outside, and its restore: every test here reads them.
  let first: Awaited<ReturnType<typeof backupAll>>;
  let writtenBefore: string[];
  let checkpointsAfterFirst: string[];
  let workDirAfterFirst: string[];
  let firstId: string;
  let firstRestore: { dir: string; image: string };

  beforeAll(async () => {
    writtenBefore = writtenFiles(spec.consoleLog);
    first = await backupAll('backup 1 (full)');
    console.log(`first backup --all: ${JSON.stringify(first.outcome)}; domstate samples ${first.samples}`);
    checkpointsAfterFirst = (await virsh('checkpoint-list', NAME, '--name')).split('\n').map((l) => l.trim()).filter(Boolean);
    workDirAfterFirst = fs.readdirSync(scratch.path('work'));
    firstId = first.outcome.id;
    firstRestore = await restore(firstId, 'restore-1');
  });

  it('backs up live through libvirt: no pause, the domain stays running and keeps writing', async () => {
    const { outcome, states, samples } = first;
    expect(outcome.ok).toBe(true);
    expect(outcome.driver).toBe('libvirt');
    expect(outcome.snapshotKinds).toEqual(['libvirt-backup']);
    expect(outcome.pauseMs).toBe(0);
    expect(states).toEqual(['running']);
    expect(samples, 'domstate polls while ferry ran').toBeGreaterThanOrEqual(2);
    expect(outcome.readBytes).toBeGreaterThan(0);
    expect(outcome.logicalBytes).toBe(256 * 1024 * 1024);
    // Still writing after the backup, and the checkpoint of this run is the baseline kept.
    await waitForWrites(spec.consoleLog, writtenFiles(spec.consoleLog).length, 3);
    expect(checkpointsAfterFirst).toHaveLength(1);
    expect(checkpointsAfterFirst[0]).toMatch(/^ferry-/);
    // Nothing left in the work directory.
    expect(workDirAfterFirst).toEqual([]);
    await expectCleanExt4Holding(firstRestore.image, writtenBefore);
  });

  it('keeps the domain XML as the guest config of the restore point', async () => {
    const xml = fs.readFileSync(path.join(firstRestore.dir, `${NAME}.xml`), 'utf8');
    expect(xml).toContain('<domain');
    expect(xml).toContain(`<name>${NAME}</name>`);
    expect(xml).toContain(spec.disks[0]!.path);
    // The persistent definition, as `virsh define` takes it back.
    expect(xml).toBe(await virsh('dumpxml', '--inactive', NAME));
  });

  it('the restored (raw) image boots as a fresh domain and writes', async () => {
    const restored: DomainSpec = {
      name: `${NAME}-restored`,
      files: spec.files,
      disks: [{ path: firstRestore.image, format: 'raw' }],
      consoleLog: scratch.path('restored-console.log'),
      mac: '52:54:00:fe:01:02',
    };
    await defineDomain(scratch, restored);
    try {
      await startDomain(restored);
      const files = await waitForWrites(restored.consoleLog, 0, 2);
      // Second boot of this file system: it carries the original's boot count.
      expect(files[0]).toMatch(/^data\/b2-/);
      expect(await domstate(restored.name)).toBe('running');
    } finally {
      await removeDomain(restored.name); // frees the CPU for the rest
    }
  });

  it('a nightly run reads only what changed since the last one', async () => {
    await waitForWrites(spec.consoleLog, writtenFiles(spec.consoleLog).length, 10);
    const writtenBefore = writtenFiles(spec.consoleLog);
    const { outcome, states, samples } = await backupAll('backup 2 (incremental)');
    console.log(`second backup --all: ${JSON.stringify(outcome)}; domstate samples ${samples}`);
    expect(outcome.ok).toBe(true);
    expect(outcome.snapshotKinds).toEqual(['libvirt-backup']);
    expect(outcome.pauseMs).toBe(0);
    expect(states).toEqual(['running']);
    expect(samples, 'domstate polls while ferry ran').toBeGreaterThanOrEqual(2);
    expect(outcome.fullReads).toEqual([]);
    expect(outcome.readBytes).toBeGreaterThan(0);
    expect(outcome.readBytes).toBeLessThan(outcome.logicalBytes / 10);
    expect(outcome.id).not.toBe(firstId);
    await waitForWrites(spec.consoleLog, writtenFiles(spec.consoleLog).length, 2);
    // Only the new baseline checkpoint is left.
    const checkpoints = (await virsh('checkpoint-list', NAME, '--name')).split('\n').map((l) => l.trim()).filter(Boolean);
    expect(checkpoints).toHaveLength(1);

    const second = await restore(outcome.id, 'restore-2');
    await expectCleanExt4Holding(second.image, writtenBefore);
    console.log(`fleet-libvirt timings (ms): ${JSON.stringify(timings)}`);
  });
});
