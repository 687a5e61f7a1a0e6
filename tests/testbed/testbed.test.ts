// The test harness itself: the real Debian image and the helpers that the
// other integration tests rely on to modify images and fill disks.
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  allocatedBytes,
  debianImage,
  mountTmpfs,
  mustRun,
  overwriteRandomPages,
  runCommand,
  sha256File,
  useScratch,
  withLoopMount,
  writeRandomishImage,
} from '../support';

const scratch = useScratch('testbed');
const MiB = 1024 * 1024;

describe('test bed', () => {
  it('builds a real Debian bookworm ext4 image that is sparse and fscks clean', async () => {
    const image = await debianImage(scratch.path('debian.img'));
    expect(fs.statSync(image).size).toBe(1024 * MiB);
    expect(allocatedBytes(image)).toBeLessThan(400 * MiB);
    await mustRun('fsck.ext4', ['-fn', image]);
    const osRelease = await withLoopMount(scratch, image, (root) => fs.readFileSync(`${root}/etc/os-release`, 'utf8'));
    expect(osRelease).toMatch(/VERSION_CODENAME=bookworm/);
  });

  it('changes an image in place through a loop mount', async () => {
    const image = await debianImage(scratch.path('changed.img'));
    const before = await sha256File(image);
    await withLoopMount(scratch, image, (root) => fs.writeFileSync(`${root}/root/marker`, 'changed\n'));
    expect(await sha256File(image)).not.toBe(before);
    await mustRun('fsck.ext4', ['-fn', image]);
  });

  it('fills a small tmpfs to ENOSPC', async () => {
    const dir = await mountTmpfs(scratch, 'tiny', 2);
    const r = await runCommand('dd', ['if=/dev/zero', `of=${dir}/fill`, 'bs=1M', 'count=4']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/No space left on device/);
  });

  it('writes deterministic sparse random-ish images and page updates', async () => {
    const a = scratch.path('a.img');
    const b = scratch.path('b.img');
    writeRandomishImage(a, 16 * MiB, 7);
    writeRandomishImage(b, 16 * MiB, 7);
    expect(await sha256File(a)).toBe(await sha256File(b));
    expect(allocatedBytes(a)).toBeLessThan(16 * MiB);
    overwriteRandomPages(b, 3, 1);
    expect(await sha256File(a)).not.toBe(await sha256File(b));
  });
});
