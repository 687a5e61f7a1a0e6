// check --read-data on a chunk patched on three nights running: a chain of
// three page patches (each on the one before) over one whole chunk. Check
// rebuilds the newest patch's chain and checks every level of it, so the
// older patches are checked with it; what it reports when a level is damaged
// must still be exactly what reading each patch finds: every patch laid on
// the damaged blob, and no other.
//
// Fixed 256 KiB chunks, so every night patches the same chunk whatever the
// repository's keys (tests/README.md).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BlobType, blobType } from '../../src/crypto/blobCodec';
import { Repository } from '../../src/repo/repository';
import { LocalBackend } from '../../src/storage/local';
import { EXIT, TestRepo, flipByte, overwritePage, useScratch, writeRandomishImage } from '../support';

const KiB = 1024;
const scratch = useScratch('check-patch-chains');

interface CheckJson {
  damage: { object: string; problem: string }[];
  affected: { id: string }[];
  blobsVerified: number;
}

/** The chunk at offset 0 on each night: its whole root, then the patch of night 2, 3 and 4 (hex ids). */
interface Chain {
  root: string;
  patches: [string, string, string];
  /** Where each blob lies: the pack file and the offset of its stored bytes. */
  where: Map<string, { file: string; offset: number; storedLength: number }>;
  /** Blobs the index names (chunks, patches, region maps). */
  indexed: number;
}

let repo: TestRepo;
let nights: string[];
let chain: Chain;

async function readChain(testRepo: TestRepo): Promise<Chain> {
  const passphrase = fs.readFileSync(testRepo.passwordFile, 'utf8').replace(/\r?\n$/, '');
  const opened = await Repository.open(new LocalBackend(testRepo.path), Buffer.from(passphrase));
  try {
    await opened.loadIndex();
    const patches: Buffer[] = [];
    let indexed = 0;
    opened.forEachBlob((id, loc) => {
      indexed++;
      if (blobType(loc.typeFlags) === BlobType.Patch) patches.push(Buffer.from(id));
    });
    expect(patches.length, 'page patches: one a night on nights 2, 3 and 4').toBe(3);
    const chains = await Promise.all(patches.map((id) => opened.blobDependencies(id)));
    // [newest patch, its base, ..., the whole chunk]
    const longest = chains.find((c) => c.length === 4)!.map((b) => b.toString('hex'));
    expect(longest, 'the night 4 patch lies on night 3s, on night 2s, on the whole chunk').toBeDefined();
    const where = new Map<string, { file: string; offset: number; storedLength: number }>();
    for (const hex of longest) {
      const loc = opened.blobLocation(Buffer.from(hex, 'hex'))!;
      const pack = opened.packIds[loc.pack];
      where.set(hex, { file: path.join(testRepo.path, 'data', pack.slice(0, 2), pack), offset: loc.offset, storedLength: loc.storedLength });
    }
    return { root: longest[3], patches: [longest[2], longest[1], longest[0]], where, indexed };
  } finally {
    await opened.backend.close();
  }
}

/** A copy of the repository with one byte flipped in the middle of blob `hex`. */
async function damagedCopy(name: string, hex: string): Promise<TestRepo> {
  const copy = await repo.copyTo(scratch.path(name));
  const at = chain.where.get(hex)!;
  flipByte(path.join(copy.path, path.relative(repo.path, at.file)), at.offset + Math.floor(at.storedLength / 2));
  return copy;
}

async function checkJson(testRepo: TestRepo, expectedExit: number): Promise<CheckJson> {
  const r = await testRepo.run(['check', '--read-data', '--json']);
  expect(r.code, r.stderr).toBe(expectedExit);
  return JSON.parse(r.stdout) as CheckJson;
}

const damagedPatches = (report: CheckJson) =>
  report.damage.map((d) => /page patch (\w+) does not rebuild its chunk/.exec(d.problem)?.[1]).filter((id): id is string => id !== undefined).sort();
const failsAuthentication = (report: CheckJson) =>
  report.damage.filter((d) => d.problem.includes('fails authentication')).map((d) => /blob (\w+)/.exec(d.problem)![1]);
const short = (hex: string) => hex.slice(0, 16);

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'repo', { chunker: 'fixed:256K' });
  const image = scratch.path('disk.img');
  writeRandomishImage(image, 1024 * KiB, 5, { holes: 0, text: 0 });
  nights = [(await repo.backup('g', [image])).id];
  for (const [night, at] of [[2, 16], [3, 96], [4, 200]] as const) {
    overwritePage(image, at * KiB, night);
    nights.push((await repo.backup('g', [image])).id);
  }
  chain = await readChain(repo);
});

describe('check --read-data of a patch chain three deep', () => {
  it('passes a clean repository and verifies every blob', async () => {
    const report = await checkJson(repo, 0);
    expect(report.damage).toEqual([]);
    expect(report.blobsVerified).toBe(chain.indexed);
  });

  it('a damaged whole chunk: it fails authentication, and each of the three patches on it does not rebuild; every night is affected', async () => {
    const report = await checkJson(await damagedCopy('root-damaged', chain.root), EXIT.damageFound);
    expect(failsAuthentication(report)).toEqual([short(chain.root)]);
    expect(damagedPatches(report)).toEqual(chain.patches.map(short).sort());
    expect(report.affected.map((a) => a.id).sort()).toEqual([...nights].sort());
  });

  it('a damaged middle patch: it fails authentication, the newer one on it does not rebuild, the older one is sound; nights 3 and 4 are affected', async () => {
    const [older, middle, newer] = chain.patches;
    const report = await checkJson(await damagedCopy('middle-damaged', middle), EXIT.damageFound);
    expect(failsAuthentication(report)).toEqual([short(middle)]);
    expect(damagedPatches(report)).toEqual([short(newer)]);
    expect(report.damage.map((d) => d.problem).join('\n')).not.toContain(short(older));
    expect(report.affected.map((a) => a.id).sort()).toEqual([nights[2], nights[3]].sort());
  });

  it('a damaged newest patch: only it is reported, and only night 4 is affected', async () => {
    const newer = chain.patches[2];
    const report = await checkJson(await damagedCopy('newest-damaged', newer), EXIT.damageFound);
    expect(failsAuthentication(report)).toEqual([short(newer)]);
    expect(damagedPatches(report)).toEqual([]);
    expect(report.affected.map((a) => a.id)).toEqual([nights[3]]);
  });

  it('a --read-data-subset follows a chain into packs it does not read: clean buckets pass; a damaged middle patch outside the bucket fails the newest', async () => {
    for (let n = 1; n <= 4; n++) {
      const r = await repo.run(['check', '--read-data-subset', `${n}/4`, '--json']);
      expect(r.code, `bucket ${n}/4: ${r.stderr}`).toBe(0);
      expect((JSON.parse(r.stdout) as CheckJson).damage).toEqual([]);
    }
    const [, middle, newer] = chain.patches;
    const bucketOf = (hex: string, of: number) => parseInt(path.basename(chain.where.get(hex)!.file).slice(0, 8), 16) % of;
    // A bucket count that reads the newest patch's pack and not the middle one's.
    const of = [2, 3, 5, 7, 11, 13].find((t) => bucketOf(newer, t) !== bucketOf(middle, t))!;
    const r = await (await damagedCopy('middle-damaged-subset', middle)).run(['check', '--read-data-subset', `${bucketOf(newer, of) + 1}/${of}`, '--json']);
    expect(r.code, r.stderr).toBe(EXIT.damageFound);
    const report = JSON.parse(r.stdout) as CheckJson;
    expect(failsAuthentication(report)).toEqual([]); // the middle patch's pack is not read
    expect(damagedPatches(report)).toEqual([short(newer)]);
  });
});
