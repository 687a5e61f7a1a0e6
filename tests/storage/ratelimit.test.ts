// RateLimitedBackend caps bandwidth per direction. Timing tests assert lower
// bounds only: a limit must never be exceeded, however fast the machine.
import { beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { LocalBackend } from '../../src/storage/local';
import { RateLimitedBackend, TokenBucket } from '../../src/storage/ratelimit';
import { useScratch } from '../support/scratch';

const MiB = 1024 * 1024;
const scratch = useScratch('ratelimit');
let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(scratch.path('rate-'));
});

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

describe('RateLimitedBackend', () => {
  it('4 MiB/s upload: 8 MiB in two objects take at least ~2 s', async () => {
    const be = new RateLimitedBackend(new LocalBackend(dir), { uploadBytesPerSec: 4 * MiB });
    const s = await timed(async () => {
      await be.write('data', 'aa01', randomBytes(4 * MiB));
      await be.write('data', 'aa02', randomBytes(4 * MiB));
    });
    // 8 MiB at 4 MiB/s is 2 s, minus the burst allowance (0.1 s worth).
    expect(s).toBeGreaterThanOrEqual(1.85);
  });

  it('concurrent writers share one budget', async () => {
    const be = new RateLimitedBackend(new LocalBackend(dir), { uploadBytesPerSec: 4 * MiB });
    const s = await timed(() =>
      Promise.all(Array.from({ length: 4 }, (_, i) => be.write('data', `bb0${i}`, randomBytes(1 * MiB)))),
    );
    expect(s).toBeGreaterThanOrEqual(0.85); // 4 MiB at 4 MiB/s, minus the burst
  });

  it('limits downloads separately; the unlimited direction is not slowed', async () => {
    const inner = new LocalBackend(dir);
    await inner.write('data', 'cc01', randomBytes(3 * MiB));
    const be = new RateLimitedBackend(inner, { downloadBytesPerSec: 4 * MiB });
    expect(await timed(() => be.write('data', 'cc02', randomBytes(6 * MiB)))).toBeLessThan(1);
    expect(await timed(() => be.read('data', 'cc01'))).toBeGreaterThanOrEqual(0.65); // 3 MiB at 4 MiB/s = 0.75 s
    expect(await timed(() => be.readRange('data', 'cc01', 0, 2 * MiB))).toBeGreaterThanOrEqual(0.45);
  });

  it('TokenBucket lets a burst through at once after idling', async () => {
    const bucket = new TokenBucket(1 * MiB, 512 * 1024);
    expect(await timed(() => bucket.take(512 * 1024))).toBeLessThan(0.05);
    expect(await timed(() => bucket.take(512 * 1024))).toBeGreaterThanOrEqual(0.45);
  });
});
