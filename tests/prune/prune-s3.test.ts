// Prune on S3 (Ceph RGW): few requests, counted per GB freed through a
// counting Backend (the S3 backend makes one request per call, a listing one
// per 1000 objects), and no download of a pack that stays whole. With S3
// Object Lock, an object whose retention has not passed is never deleted:
// prune reports it and leaves it for a later run.
import * as fs from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { GetObjectRetentionCommand, ListObjectsV2Command, PutObjectRetentionCommand } from '@aws-sdk/client-s3';
import { expectSuccess, FAST_KDF, ferry, overwriteRandomPages, parseJson, sha256File, TestRepo, useScratch, writeRandomishImage } from '../support';
import { useS3Server } from '../support/s3server';
import { Backend, ObjectInfo, ObjectType } from '../../src/storage/backend';
import { S3Backend } from '../../src/storage/s3';
import { Repository } from '../../src/repo/repository';
import { pruneRepository, PruneReport } from '../../src/prune/pruneRun';

const MiB = 1024 * 1024;
const GB = 1e9;
const scratch = useScratch('prune-s3');
const s3 = useS3Server();
process.env.XDG_CACHE_HOME = scratch.path('cache');

/** Every call, and what was read of which pack. */
class CountingBackend implements Backend {
  readonly calls = new Map<string, number>();
  /** Packs read whole. */
  readonly packsRead: string[] = [];
  /** Bytes read by range, per pack. */
  readonly rangeBytes = new Map<string, number>();
  readonly removed: string[] = [];
  /** Object sizes from listings: a ranged read of all of an object is a whole read (prune reads packs into a buffer it keeps). */
  private readonly sizes = new Map<string, number>();
  constructor(private readonly inner: Backend) {}
  get location(): string {
    return this.inner.location;
  }
  get requests(): number {
    return [...this.calls.values()].reduce((a, b) => a + b, 0);
  }
  private count(op: string, type: ObjectType): void {
    const key = `${op} ${type}`;
    this.calls.set(key, (this.calls.get(key) ?? 0) + 1);
  }
  read(type: ObjectType, name: string): Promise<Buffer> {
    this.count('read', type);
    if (type === 'data') this.packsRead.push(name);
    return this.inner.read(type, name);
  }
  readRange(type: ObjectType, name: string, offset: number, length: number, into?: Uint8Array): Promise<Buffer> {
    if (type === 'data' && offset === 0 && length === this.sizes.get(`${type}/${name}`)) {
      this.count('read', type);
      this.packsRead.push(name);
    } else {
      this.count('readRange', type);
      if (type === 'data') this.rangeBytes.set(name, (this.rangeBytes.get(name) ?? 0) + length);
    }
    return this.inner.readRange(type, name, offset, length, into);
  }
  write(type: ObjectType, name: string, data: Buffer): Promise<void> {
    this.count('write', type);
    return this.inner.write(type, name, data);
  }
  stat(type: ObjectType, name: string): Promise<ObjectInfo | undefined> {
    this.count('stat', type);
    return this.inner.stat(type, name);
  }
  async *list(type: ObjectType): AsyncIterable<ObjectInfo> {
    // One request per page of 1000.
    let n = 0;
    for await (const info of this.inner.list(type)) {
      if (n++ % 1000 === 0) this.count('list', type);
      this.sizes.set(`${type}/${info.name}`, info.size);
      yield info;
    }
    if (n === 0) this.count('list', type);
  }
  remove(type: ObjectType, name: string): Promise<void> {
    this.count('remove', type);
    if (type === 'data') this.removed.push(name);
    return this.inner.remove(type, name);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

interface Point {
  id: string;
  /** The restored file's name: the backed-up image's. */
  file: string;
  sha256: string;
}

/**
 * A repository at `location` with 4 MiB packs: web (24 MiB, then its second half rewritten and
 * a few pages patched) and db (8 MiB). Web's first point is forgotten: half its packs are all
 * garbage, one straddles the change (repacked or kept), the first half stays whole.
 */
async function forgottenRepository(location: string, name: string): Promise<{ repo: TestRepo; kept: Point[] }> {
  const repo = new TestRepo(location, scratch.path(`${name}.pw`));
  fs.writeFileSync(repo.passwordFile, `correct horse ${name}\n`);
  expectSuccess(await ferry(['init', '--repo', location, '--password-file', repo.passwordFile, '--pack-size', '4M', ...FAST_KDF]));
  const web = scratch.path(`${name}-web.img`);
  const db = scratch.path(`${name}-db.img`);
  writeRandomishImage(web, 24 * MiB, 31, { holes: 0 });
  writeRandomishImage(db, 8 * MiB, 32, { holes: 0 });
  const points: Point[] = [];
  const backUp = async (guest: string, image: string) => {
    const { id } = await repo.backup(guest, [image]);
    points.push({ id, file: image.split('/').pop()!, sha256: await sha256File(image) });
  };
  await backUp('web', web);
  await backUp('db', db);
  const newHalf = scratch.path(`${name}-half.img`);
  writeRandomishImage(newHalf, 12 * MiB, 33, { holes: 0 });
  const fd = fs.openSync(web, 'r+');
  fs.writeSync(fd, fs.readFileSync(newHalf), 0, 12 * MiB, 12 * MiB);
  fs.closeSync(fd);
  overwriteRandomPages(web, 6, 34);
  await backUp('web', web);
  expectSuccess(await repo.run(['forget', points[0].id]));
  return { repo, kept: points.slice(1) };
}

async function expectRestores(repo: TestRepo, points: Point[], name: string): Promise<void> {
  for (const p of points) {
    const out = scratch.path(`restore-${name}-${p.id.slice(0, 8)}`);
    expectSuccess(await repo.run(['restore', p.id, '--to', out]));
    expect(await sha256File(`${out}/${p.file}`), `${p.file} ${p.id.slice(0, 8)}`).toBe(p.sha256);
    fs.rmSync(out, { recursive: true });
  }
}

const passphrase = (repo: TestRepo): Buffer => Buffer.from(fs.readFileSync(repo.passwordFile, 'utf8').replace(/\n$/, ''));

describe('prune on RGW', () => {
  let repo: TestRepo;
  let kept: Point[];
  let counting: CountingBackend;
  let report: PruneReport;
  let packsBefore: string[];

  beforeAll(async () => {
    ({ repo, kept } = await forgottenRepository(await s3.server.newLocation('prune'), 'counted'));
    counting = new CountingBackend(new S3Backend(repo.path));
    packsBefore = [];
    for await (const info of counting.list('data')) packsBefore.push(info.name);
    counting.calls.clear();
    report = await pruneRepository(await Repository.open(counting, passphrase(repo)), { repackBelow: 0.5, mode: 'prune' });
    await counting.close();
  }, 120_000);

  it('frees the forgotten data, and the repository checks clean and restores bit-exact', async () => {
    expect(report.bytesFreed).toBeGreaterThan(8 * MiB);
    expect(report.packsDeleted).toBeGreaterThan(0);
    await repo.expectCheckPasses(true);
    await expectRestores(repo, kept, 'counted');
  });

  it('never downloads a pack that stays whole; reads each repacked pack once', async () => {
    const whole = packsBefore.filter((p) => !counting.removed.includes(p));
    expect(whole.length).toBeGreaterThan(0);
    for (const p of whole) expect(counting.packsRead, `pack ${p.slice(0, 8)} stays whole`).not.toContain(p);
    // Only patch bodies are read from them, by range: a small share of their bytes.
    const ranged = whole.reduce((n, p) => n + (counting.rangeBytes.get(p) ?? 0), 0);
    expect(ranged).toBeLessThan(whole.length * 64 * 1024);
    expect(counting.packsRead.length).toBe(report.packsRepacked);
    expect(new Set(counting.packsRead).size).toBe(counting.packsRead.length);
  });

  it('makes few requests: a fixed cost, then one deletion per dropped pack and one read per repacked pack', () => {
    const calls = Object.fromEntries(counting.calls);
    const perPack = report.packsDeleted + report.packsRepacked;
    const fixed = counting.requests - perPack;
    // At the default 16 MiB packs a GB freed is ~60 dropped packs.
    const perGBAt16MiB = fixed + (GB / (16 * MiB)) * (perPack / Math.max(report.packsDeleted, 1));
    console.log(
      `prune on RGW: ${counting.requests} requests for ${(report.bytesFreed / MiB).toFixed(1)} MiB freed ` +
        `(${report.packsDeleted} packs deleted, ${report.packsRepacked} repacked; ${fixed} not per pack; ~${Math.round(perGBAt16MiB)} per GB at 16 MiB packs): ` +
        JSON.stringify(calls),
    );
    expect(calls['remove data']).toBe(report.packsDeleted);
    expect(calls['read data'] ?? 0).toBe(report.packsRepacked);
    // Listing, keys, restore points and index files read once each, merged index written, old ones
    // removed, and one ranged read per page patch in a kept pack (6 pages were patched).
    expect(fixed).toBeLessThan(40);
  });
});

describe('prune with S3 Object Lock', () => {
  it('leaves locked packs and index files where they are and reports them; the repository stays valid', async () => {
    const bucket = await s3.server.createBucket({ objectLock: true });
    const location = s3.server.location(bucket, 'locked');
    // Written without retention (a versioned bucket), then locked by hand.
    const { repo, kept } = await forgottenRepository(location, 'locked');
    const keysOf = async (prefix: string): Promise<string[]> => {
      const r = await s3.server.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `locked/${prefix}/` }));
      return (r.Contents ?? []).map((o) => o.Key!).sort();
    };
    const packsBefore = await keysOf('data');
    const setRetention = async (key: string, until: Date) =>
      s3.server.client.send(new PutObjectRetentionCommand({ Bucket: bucket, Key: key, Retention: { Mode: 'GOVERNANCE', RetainUntilDate: until } }));
    const tomorrow = new Date(Date.now() + 86_400_000);
    for (const key of packsBefore) await setRetention(key, tomorrow);
    expect((await s3.server.client.send(new GetObjectRetentionCommand({ Bucket: bucket, Key: packsBefore[0] }))).Retention?.Mode).toBe('GOVERNANCE');

    // Every pack to drop is locked: none goes, each is reported; the old index files (unlocked) go.
    const first = parseJson<PruneReport>(await repo.run(['prune', '--object-lock-days', '1', '--json']));
    expect(first.lockedPacks.length).toBeGreaterThan(0);
    expect(first.packsDeleted).toBe(0);
    expect(first.lockedIndexFiles).toEqual([]);
    const packsAfter = await keysOf('data');
    for (const key of packsBefore) expect(packsAfter, key).toContain(key);
    await repo.expectCheckPasses(true);
    await expectRestores(repo, kept, 'locked');

    // The index file the first prune wrote is under COMPLIANCE (--object-lock-days 1): the next
    // prune's merge cannot delete it, reports it and leaves it; the repository stays valid.
    const human = await repo.run(['prune', '--object-lock-days', '1']);
    expectSuccess(human);
    expect(human.stdout).toMatch(/left for later: +\d+ pack\(s\) and 1 index file\(s\) under S3 Object Lock, \d+ pack\(s\) a locked index file names; a prune after their retention deletes them/);
    await repo.expectCheckPasses(false);
  });
});
