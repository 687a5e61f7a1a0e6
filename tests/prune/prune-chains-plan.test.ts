// Garbage-collection rule 7 (FORMAT.md, "Chains") in prune's plan, on packs
// described by their entries alone: which live page patches are stored whole
// so that their bases can go, and when the bases stay.
import { describe, expect, it } from 'vitest';
import { planPrune, type ChainRewriting, type PackContents } from '../../src/prune/prunePlan';
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

/** A repository's patches and what its restore points name: `bases` maps each patch to its base. */
function graph(named: string[], bases: Record<string, string>): { live: Set<string>; readBase: (p: PackContents, e: PackEntry) => Promise<Buffer>; graph: ChainRewriting['graph'] } {
  const baseOf = new Map(Object.entries(bases).map(([p, b]) => [hex(p), hex(b)]));
  const live = new Set(named.map(hex));
  for (const name of named) for (let b = baseOf.get(hex(name)); b; b = baseOf.get(b)) live.add(b);
  const readBase = async (_p: PackContents, e: PackEntry) => Buffer.from(baseOf.get(e.id.toString('hex'))!, 'hex');
  return { live, readBase, graph: { named: new Set(named.map(hex)), baseOf } };
}

const keptIds = (plan: Awaited<ReturnType<typeof planPrune>>) =>
  [...plan.keep.flatMap((p) => p.entries), ...plan.repack.flatMap((r) => r.copy)].map((e) => e.id.toString('hex')).sort();

describe('planPrune, rule 7 (patch chains)', () => {
  it('stores a live patch whole when its base is otherwise dead and the patch and base free more than the whole chunk takes', async () => {
    // Night 1 (pack aa): chunks b and c. Night 2 (pack bb): patch p on b, its map m, and c again by reference.
    const packs = [pack('aa', [['b', 1000], ['c', 300]]), pack('bb', [['p', 60, PATCH], ['m', 40]])];
    const g = graph(['m', 'p', 'c'], { p: 'b' });
    const plan = await planPrune(packs, g.live, { repackBelow: 0.5, readBase: g.readBase, chains: { graph: g.graph, wholeSize: async () => 1010 } });
    expect(plan.rewrite).toEqual([{ id: hex('p'), freedBases: [hex('b')], bytesFreed: 1060, bytesWritten: 1010 }]);
    // Neither the base nor the patch's old copy is kept; c and m are copied out.
    expect(keptIds(plan)).toEqual([hex('c'), hex('m')].sort());
    expect(plan.missing).toEqual([]);
  });

  it('frees a chain deeper than one patch: patch on patch on base', async () => {
    const packs = [pack('aa', [['b', 1000]]), pack('bb', [['q', 50, PATCH]]), pack('cc', [['p', 50, PATCH], ['m', 40]])];
    const g = graph(['m', 'p'], { p: 'q', q: 'b' });
    const plan = await planPrune(packs, g.live, { repackBelow: 0.5, readBase: g.readBase, chains: { graph: g.graph, wholeSize: async () => 1010 } });
    expect(plan.rewrite).toEqual([{ id: hex('p'), freedBases: [hex('q'), hex('b')], bytesFreed: 1100, bytesWritten: 1010 }]);
    expect(keptIds(plan)).toEqual([hex('m')]);
    expect(plan.remove.map((p) => p.packId)).toEqual(['aa', 'bb']);
  });

  it('keeps the base when the whole chunk would take more bytes than the patch and base free', async () => {
    // A base that compresses well, under a patch of pages that do not: whole, the chunk takes more.
    const packs = [pack('aa', [['b', 300]]), pack('bb', [['p', 60, PATCH], ['m', 40]])];
    const g = graph(['m', 'p'], { p: 'b' });
    const plan = await planPrune(packs, g.live, { repackBelow: 0.5, readBase: g.readBase, chains: { graph: g.graph, wholeSize: async () => 360 } });
    expect(plan.rewrite).toEqual([]);
    expect(keptIds(plan)).toEqual([hex('b'), hex('m'), hex('p')].sort());
  });

  it('keeps the base when another live patch needs it, or a restore point names it', async () => {
    const packs = [pack('aa', [['b', 1000]]), pack('bb', [['p', 60, PATCH], ['q', 60, PATCH], ['m', 40]])];
    const shared = graph(['m', 'p', 'q'], { p: 'b', q: 'b' });
    const wholeSize = async () => 1010;
    const plan = await planPrune(packs, shared.live, { repackBelow: 0.5, readBase: shared.readBase, chains: { graph: shared.graph, wholeSize } });
    expect(plan.rewrite).toEqual([]);
    expect(keptIds(plan)).toContain(hex('b'));

    const named = graph(['m', 'p', 'b'], { p: 'b' });
    const plan2 = await planPrune([pack('aa', [['b', 1000]]), pack('bb', [['p', 60, PATCH], ['m', 40]])], named.live, { repackBelow: 0.5, readBase: named.readBase, chains: { graph: named.graph, wholeSize } });
    expect(plan2.rewrite).toEqual([]);
    expect(keptIds(plan2)).toContain(hex('b'));
  });

  it('keeps the chain when the patch lies in a pack that stays whole (that copy keeps its base, rule 5)', async () => {
    // Pack bb is mostly a live chunk, so it stays whole with the patch in it.
    const packs = [pack('aa', [['b', 1000]]), pack('bb', [['p', 60, PATCH], ['big', 5000]])];
    const g = graph(['p', 'big'], { p: 'b' });
    const plan = await planPrune(packs, g.live, { repackBelow: 0.5, readBase: g.readBase, chains: { graph: g.graph, wholeSize: async () => 1010 } });
    expect(plan.rewrite).toEqual([]);
    expect(plan.keep.map((p) => p.packId).sort()).toEqual(['aa', 'bb']);
  });

  it('rewrites nothing without the chains option (bases simply stay)', async () => {
    const packs = [pack('aa', [['b', 1000]]), pack('bb', [['p', 60, PATCH], ['m', 40]])];
    const g = graph(['m', 'p'], { p: 'b' });
    const plan = await planPrune(packs, g.live, { repackBelow: 0.5, readBase: g.readBase });
    expect(plan.rewrite).toEqual([]);
    expect(keptIds(plan)).toContain(hex('b'));
  });
});
