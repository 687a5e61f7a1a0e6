// A restore asks for writeback of what it has written every 128 MiB, in the
// background, so the device writes while the workers decrypt and the final
// fsync waits only for the tail (src/restore/earlyWriteback.ts).
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EarlyWriteback } from '../../src/restore/earlyWriteback';
import { useScratch } from '../support';

const MiB = 1024 * 1024;
const scratch = useScratch('early-writeback');

async function settled(writeback: EarlyWriteback): Promise<void> {
  while (writeback.flushing) await new Promise((resolve) => setTimeout(resolve, 2));
}

describe('EarlyWriteback', () => {
  it('flushes once per interval of newly written bytes, one flush at a time', async () => {
    const file = scratch.path('target.img');
    fs.writeFileSync(file, Buffer.alloc(4 * MiB, 1));
    const writeback = EarlyWriteback.open(file, 1 * MiB);
    writeback.written(512 * 1024);
    expect(writeback.flushes, 'under one interval').toBe(0);
    writeback.written(1 * MiB);
    expect(writeback.flushes).toBe(1);
    expect(writeback.flushing).toBe(true);
    // Another interval while the first flush runs does not start a second.
    writeback.written(2 * MiB);
    expect(writeback.flushes).toBe(1);
    await settled(writeback);
    // The next counts from the bytes the last one was asked at (1 MiB), not from zero.
    writeback.written(1.5 * MiB);
    expect(writeback.flushes, 'half an interval since the last').toBe(1);
    writeback.written(2 * MiB);
    expect(writeback.flushes).toBe(2);
    await writeback.close();
    expect(writeback.flushing, 'close waits for the flush in flight').toBe(false);
  });
});
