// A local repository keeps its packs' descriptors open between range reads
// (src/storage/readHandles.ts): a restore reads thousands of ranges from a few
// dozen packs. What a read returns must not depend on that: a pack removed or
// written again through the backend is read afresh, and closing the backend
// leaves no descriptor open.
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { LocalBackend } from '../../src/storage/local';
import { NotFoundError } from '../../src/storage/backend';
import { useScratch } from '../support';

const scratch = useScratch('read-handles');
const name = (i: number) => i.toString(16).padStart(64, '0');

function openDescriptorsUnder(dir: string): number {
  return fs.readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir);
    } catch {
      return false; // closed meanwhile (the readdir's own descriptor)
    }
  }).length;
}

describe('LocalBackend range reads of packs', () => {
  it('reuse a descriptor per pack, at most 32 at once, and close them all with the backend', async () => {
    const root = scratch.mkdir('many');
    const backend = new LocalBackend(root);
    for (let i = 0; i < 40; i++) await backend.write('data', name(i), Buffer.from(`pack ${i} `.repeat(100)));
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 40; i++) expect((await backend.readRange('data', name(i), 0, 7)).toString()).toBe(`pack ${i}`.padEnd(7).slice(0, 7));
    }
    expect(openDescriptorsUnder(root)).toBeLessThanOrEqual(32);
    expect(openDescriptorsUnder(root)).toBeGreaterThan(0);
    await backend.close();
    // At once: a USB drive is unmounted right after its repository is closed.
    expect(openDescriptorsUnder(root)).toBe(0);
  });

  it('a removed pack is not found, and one written again is read as it is now', async () => {
    const root = scratch.mkdir('changed');
    const backend = new LocalBackend(root);
    await backend.write('data', name(1), Buffer.from('first content'));
    expect((await backend.readRange('data', name(1), 0, 5)).toString()).toBe('first');
    await backend.remove('data', name(1));
    await expect(backend.readRange('data', name(1), 0, 5)).rejects.toBeInstanceOf(NotFoundError);
    await backend.write('data', name(1), Buffer.from('other content'));
    expect((await backend.readRange('data', name(1), 0, 5)).toString()).toBe('other');
    await backend.close();
  });

  it('reads in flight on one pack share its descriptor and all complete', async () => {
    const root = scratch.mkdir('concurrent');
    const backend = new LocalBackend(root);
    const bytes = Buffer.alloc(1 << 20);
    for (let i = 0; i < bytes.length; i++) bytes[i] = i % 251;
    await backend.write('data', name(7), bytes);
    const reads = Array.from({ length: 64 }, (_, k) => backend.readRange('data', name(7), k * 16384, 16384));
    const got = await Promise.all(reads);
    got.forEach((b, k) => expect(b.equals(bytes.subarray(k * 16384, (k + 1) * 16384)), `read ${k}`).toBe(true));
    await backend.close();
  });
});
