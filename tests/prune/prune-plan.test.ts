// The pack decisions of prune (FORMAT.md, garbage-collection rules 5 and 6),
// on packs described by their entries alone.
import { describe, expect, it } from 'vitest';
import { planPrune, type PackContents } from '../../src/prune/prunePlan';
import type { PackEntry } from '../../src/repo/packFormat';

const CHUNK = 0x00;
const PATCH = 0x02;

const id = (name: string) => Buffer.alloc(32, name);
const hex = (name: string) => id(name).toString('hex');

/** A pack of blobs given as [name, stored length, type]. */
function pack(packId: string, blobs: Array<[string, number, number?]>): PackContents {
  let offset = 0;
  const entries: PackEntry[] = blobs.map(([name, storedLength, typeFlags]) => {
    const e = { id: id(name), typeFlags: typeFlags ?? CHUNK, offset, storedLength, rawLength: storedLength };
    offset += storedLength;
    return e;
  });
  return { packId, size: offset + 100, entries };
}

const noPatches = async (): Promise<Buffer> => {
  throw new Error('no patch should be read');
};
const names = (packs: PackContents[]) => packs.map((p) => p.packId);

describe('planPrune', () => {
  it('keeps a pack at or above the threshold, repacks one below it, deletes one without live blobs', async () => {
    const packs = [pack('aa', [['a', 60], ['b', 40]]), pack('bb', [['c', 30], ['d', 70]]), pack('cc', [['e', 100]])];
    const plan = await planPrune(packs, new Set([hex('a'), hex('c')]), { repackBelow: 0.5, readBase: noPatches });
    expect(names(plan.keep)).toEqual(['aa']);
    expect(plan.repack.map((r) => [r.pack.packId, r.copy.map((e) => e.id.toString('hex'))])).toEqual([['bb', [hex('c')]]]);
    expect(names(plan.remove)).toEqual(['cc']);
    expect(plan.missing).toEqual([]);
  });

  it('keeps one copy of a duplicated blob: in a pack that stays whole, else the first in name order', async () => {
    const packs = [pack('aa', [['x', 10], ['dead', 90]]), pack('bb', [['x', 10], ['y', 10]]), pack('cc', [['x', 10], ['dead2', 90]])];
    const plan = await planPrune(packs, new Set([hex('x'), hex('y')]), { repackBelow: 0.5, readBase: noPatches });
    expect(names(plan.keep)).toEqual(['bb']);
    expect(plan.repack).toEqual([]);
    expect(names(plan.remove)).toEqual(['aa', 'cc']);

    const none = await planPrune([pack('aa', [['x', 10], ['dead', 90]]), pack('cc', [['x', 10], ['dead2', 90]])], new Set([hex('x')]), { repackBelow: 0.5, readBase: noPatches });
    expect(none.repack.map((r) => r.pack.packId)).toEqual(['aa']);
    expect(names(none.remove)).toEqual(['cc']);
  });

  it('of two packs holding the same live blobs (an interrupted prune), one goes', async () => {
    const plan = await planPrune([pack('aa', [['x', 10], ['y', 10]]), pack('bb', [['x', 10], ['y', 10]])], new Set([hex('x'), hex('y')]), { repackBelow: 0.5, readBase: noPatches });
    expect(names(plan.keep)).toEqual(['aa']);
    expect(names(plan.remove)).toEqual(['bb']);
  });

  it('of a chunk stored whole and as a page patch (a prune killed after storing a chain whole), keeps the whole copy', async () => {
    // Readers read the whole copy and later patches were sized on it (FORMAT.md, "Copies of one blob"): dropping
    // it for the patch copy would make their chains deeper than the limit. Packs aa and bb are both repacked.
    const packs = [pack('aa', [['x', 5, PATCH], ['dead', 95]]), pack('bb', [['x', 20], ['dead2', 80]])];
    const asked: string[] = [];
    const readBase = async (p: PackContents, e: PackEntry): Promise<Buffer> => {
      asked.push(p.packId);
      return id('base');
    };
    const plan = await planPrune(packs, new Set([hex('x')]), { repackBelow: 0.5, readBase });
    expect(plan.repack.map((r) => [r.pack.packId, r.copy.map((e) => [e.id.toString('hex'), e.typeFlags])])).toEqual([['bb', [[hex('x'), CHUNK]]]]);
    expect(names(plan.remove)).toEqual(['aa']);
    expect(asked, 'no patch copy is kept, so no base is followed').toEqual([]);
  });

  it('a chunk whose page patch stays in a pack kept whole also keeps its whole copy, and the patch its base', async () => {
    const packs = [pack('aa', [['x', 5, PATCH], ['big', 95]]), pack('bb', [['x', 20], ['dead', 80]]), pack('cc', [['base', 20], ['dead2', 80]])];
    const readBase = async (): Promise<Buffer> => id('base');
    const plan = await planPrune(packs, new Set([hex('x'), hex('big')]), { repackBelow: 0.5, readBase });
    expect(names(plan.keep)).toEqual(['aa']);
    expect(plan.repack.map((r) => [r.pack.packId, r.copy.map((e) => e.id.toString('hex'))])).toEqual([
      ['bb', [hex('x')]],
      ['cc', [hex('base')]],
    ]);
  });

  it("a live chunk's patch copy in a pack kept whole, beside a whole copy, needs its base only as a stored patch does", async () => {
    // Restore reads the whole copy: a base of the patch copy that is gone does not stop prune (it is not 'missing').
    const packs = [pack('aa', [['x', 5, PATCH], ['big', 95]]), pack('bb', [['x', 20], ['y', 80]])];
    const plan = await planPrune(packs, new Set([hex('x'), hex('big'), hex('y')]), { repackBelow: 0.5, readBase: async () => id('gone') });
    expect(plan.missing).toEqual([]);
    expect(plan.missingDeadBases).toEqual([hex('gone')]);
    expect(names(plan.keep)).toEqual(['aa', 'bb']);
  });

  it('every patch that stays stored keeps its base, read from that copy, also a dead patch in a kept pack', async () => {
    // Pack aa stays whole (live 'big'); its dead patch 'p' names base 'b', which is in dropped pack cc.
    const packs = [pack('aa', [['big', 100], ['p', 5, PATCH]]), pack('cc', [['b', 50], ['junk', 500]])];
    const asked: string[] = [];
    const readBase = async (p: PackContents, e: PackEntry): Promise<Buffer> => {
      asked.push(`${p.packId}:${e.id.toString('hex').slice(0, 2)}`);
      return id('b');
    };
    const plan = await planPrune(packs, new Set([hex('big')]), { repackBelow: 0.5, readBase });
    expect(asked).toEqual([`aa:${hex('p').slice(0, 2)}`]);
    expect(plan.repack.map((r) => [r.pack.packId, r.copy.map((e) => e.id.toString('hex'))])).toEqual([['cc', [hex('b')]]]);
  });

  it('with a repack budget, repacks the packs with the lowest live share first and keeps the rest whole for a later run', async () => {
    // Live shares: aa 40%, bb 10%, cc 30%, dd 20%; each pack file is 200 bytes. ee has nothing live: deleted whatever the budget.
    const packs = [
      pack('aa', [['a', 40], ['a-', 60]]), pack('bb', [['b', 10], ['b-', 90]]), pack('cc', [['c', 30], ['c-', 70]]),
      pack('dd', [['d', 20], ['d-', 80]]), pack('ee', [['e-', 100]]),
    ];
    const live = new Set(['a', 'b', 'c', 'd'].map(hex));
    const plan = await planPrune(packs, live, { repackBelow: 0.5, readBase: noPatches, maxRepackBytes: 450 });
    expect(plan.repack.map((r) => r.pack.packId)).toEqual(['bb', 'dd']);
    expect(names(plan.deferred)).toEqual(['aa', 'cc']);
    expect(names(plan.keep)).toEqual(['aa', 'cc']);
    expect(names(plan.remove)).toEqual(['ee']);
    // A budget smaller than the lowest share's pack still repacks that one pack: every run makes progress.
    const tight = await planPrune(packs, live, { repackBelow: 0.5, readBase: noPatches, maxRepackBytes: 199 });
    expect(tight.repack.map((r) => r.pack.packId)).toEqual(['bb']);
    expect(names(tight.deferred)).toEqual(['aa', 'cc', 'dd']);
    expect(names(tight.remove)).toEqual(['ee']);
    const unbounded = await planPrune(packs, live, { repackBelow: 0.5, readBase: noPatches });
    expect(unbounded.repack.map((r) => r.pack.packId)).toEqual(['aa', 'bb', 'cc', 'dd']);
    expect(unbounded.deferred).toEqual([]);
  });

  it('a pack kept whole over the budget keeps the base of its dead patch, and what that costs still fits the budget', async () => {
    // aa (live 10%) keeps its dead patch 'p' when it is deferred; p's base 'b' is in cc, which was to be deleted.
    const packs = [pack('aa', [['a', 10], ['p', 5, PATCH], ['a-', 85]]), pack('bb', [['x', 5], ['x-', 95]]), pack('cc', [['b', 50], ['junk', 50]])];
    const readBase = async () => id('b');
    const unbounded = await planPrune(packs, new Set([hex('a'), hex('x')]), { repackBelow: 0.5, readBase });
    expect(unbounded.repack.map((r) => r.pack.packId)).toEqual(['aa', 'bb']);
    expect(names(unbounded.remove)).toEqual(['cc']);
    // Room for one pack: bb (5%) goes first; aa stays whole, so cc must be repacked for 'b' — over the budget, so cc stays whole too.
    const plan = await planPrune(packs, new Set([hex('a'), hex('x')]), { repackBelow: 0.5, readBase, maxRepackBytes: 200 });
    expect(plan.repack.map((r) => r.pack.packId)).toEqual(['bb']);
    expect(names(plan.deferred)).toEqual(['aa', 'cc']);
    expect(plan.remove).toEqual([]);
  });

  it('names live blobs no pack holds, and bases only dead patches need apart', async () => {
    const packs = [pack('aa', [['big', 100], ['p', 5, PATCH]])];
    const plan = await planPrune(packs, new Set([hex('big'), hex('gone')]), { repackBelow: 0.5, readBase: async () => id('lost') });
    expect(plan.missing).toEqual([hex('gone')]);
    expect(plan.missingDeadBases).toEqual([hex('lost')]);
  });
});
