// Without the SEEK_DATA addon (no prebuild for the platform and no compiler
// at install time) ferry still backs up and restores bit-exact: it reads the
// images in full, finds their zero runs by scanning, and says so once.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  REPO_ROOT,
  TestRepo,
  allocatedBytes,
  describeResult,
  expectSuccess,
  ferryEnv,
  pseudoRandomBytes,
  runCommand,
  sha256File,
  useScratch,
} from '../support';

const MiB = 1024 * 1024;
const scratch = useScratch('no-seek-addon');
const WARNING = /^ferry: warning: SEEK_DATA addon unavailable \(.+\); images are read in full/;

/** A 64 MiB sparse image with 4 MiB of data at 8 MiB and 4 MiB at 40 MiB. */
function sparseImage(name: string, seed: number): string {
  const file = scratch.path(name);
  fs.writeFileSync(file, '');
  fs.truncateSync(file, 64 * MiB);
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, pseudoRandomBytes(seed, 1, 4 * MiB), 0, 4 * MiB, 8 * MiB);
  fs.writeSync(fd, pseudoRandomBytes(seed, 2, 4 * MiB), 0, 4 * MiB, 40 * MiB);
  fs.closeSync(fd);
  return file;
}

const images = [sparseImage('vda.img', 1), sparseImage('vdb.img', 2)];

function warningLines(stderr: string): string[] {
  return stderr.split('\n').filter((line) => line.includes('SEEK_DATA'));
}

async function expectRestoresBitExact(repo: TestRepo, id: string, out: string): Promise<void> {
  expectSuccess(await repo.run(['restore', id, '--to', out]), 'ferry restore');
  for (const image of images) {
    const restored = path.join(out, path.basename(image));
    expect(await sha256File(restored)).toBe(await sha256File(image));
    // Zero runs found by scanning are restored as holes, as holes found by SEEK_HOLE are.
    expect(allocatedBytes(restored)).toBeLessThan(16 * MiB);
  }
}

describe('backup without the SEEK_DATA addon', () => {
  it('with FERRY_NO_SEEK_ADDON=1 reads every byte, warns once, and restores bit-exact and sparse', async () => {
    const repo = await TestRepo.init(scratch, 'repo-env');
    const r = await repo.run(['backup', '--guest', 'web', ...images, '--json'], { env: { FERRY_NO_SEEK_ADDON: '1' } });
    const summary = JSON.parse(expectSuccess(r, 'ferry backup')) as { id: string; readBytes: number; logicalBytes: number };
    expect(warningLines(r.stderr), describeResult(r)).toHaveLength(1);
    expect(warningLines(r.stderr)[0]).toMatch(WARNING);
    expect(warningLines(r.stderr)[0]).toContain('FERRY_NO_SEEK_ADDON=1');
    // The holes were read: nothing told ferry where they are.
    expect(summary.readBytes).toBe(2 * 64 * MiB);
    await expectRestoresBitExact(repo, summary.id, scratch.mkdir('out-env'));
  });

  it('with the addon (the default) reads only the data and does not warn', async () => {
    const repo = await TestRepo.init(scratch, 'repo-addon');
    const r = await repo.run(['backup', '--guest', 'web', ...images, '--json']);
    const summary = JSON.parse(expectSuccess(r, 'ferry backup')) as { readBytes: number };
    expect(warningLines(r.stderr)).toEqual([]);
    expect(summary.readBytes).toBe(2 * 8 * MiB);
  });

  it('from an installation with neither a build nor a prebuild of the addon: works, warns once naming the platform', async () => {
    // A copy of the installed program without build/ and prebuilds/, as `npm ci`
    // leaves it on a platform with no prebuild and no compiler.
    const app = scratch.mkdir('app-without-addon');
    for (const part of ['bin', 'dist', 'package.json']) fs.cpSync(path.join(REPO_ROOT, part), path.join(app, part), { recursive: true });
    fs.symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(app, 'node_modules'));
    const repo = await TestRepo.init(scratch, 'repo-no-build');
    const r = await runCommand(process.execPath, [path.join(app, 'bin/ferry'), ...repo.argv(['backup', '--guest', 'web', ...images, '--json'])], {
      env: ferryEnv({ FERRY_PASSWORD_FILE: repo.passwordFile }),
    });
    const summary = JSON.parse(expectSuccess(r, 'ferry backup')) as { id: string; readBytes: number };
    expect(warningLines(r.stderr), describeResult(r)).toHaveLength(1);
    expect(warningLines(r.stderr)[0]).toMatch(WARNING);
    expect(warningLines(r.stderr)[0]).toContain(`platform=linux arch=${process.arch}`);
    expect(summary.readBytes).toBe(2 * 64 * MiB);
    await expectRestoresBitExact(repo, summary.id, scratch.mkdir('out-no-build'));
  });
});
