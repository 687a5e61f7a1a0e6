// What every storage backend promises the repository, checked the same way on
// a local directory, on a real S3 server (Ceph RGW) and on the cache wrapper
// over S3. A new backend passes this suite before anything uses it.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import {
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import { Backend, NotFoundError, ObjectInfo, ObjectType, TruncatedObjectError } from '../../src/storage/backend';
import { LocalBackend } from '../../src/storage/local';
import { openObjectStream } from '../../src/storage/objectStream';
import { FencedBackend } from '../../src/storage/fenced';
import { S3Backend } from '../../src/storage/s3';
import { CachedBackend } from '../../src/storage/cache';
import { StorageError } from '../../src/errors';
import { useS3Server } from '../support/s3server';
import { useScratch } from '../support/scratch';

const MiB = 1024 * 1024;
const scratch = useScratch('backend-contract');

/** Names as the repository makes them: hex hashes. */
function hexName(): string {
  return randomBytes(32).toString('hex');
}

/** Names and sizes of a listing, sorted (modification times are checked on their own). */
async function collect(it: AsyncIterable<ObjectInfo>): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const x of it) out.push({ name: x.name, size: x.size });
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** Name and size of a stat (modification times are checked on their own). */
async function nameAndSize(info: Promise<ObjectInfo | undefined>): Promise<ObjectInfo | undefined> {
  const x = await info;
  return x && { name: x.name, size: x.size };
}

interface Fixture {
  backend: Backend;
  cleanup?: () => Promise<void>;
}

/** The contract. `make` gives a fresh, empty backend for each test. */
function backendContract(label: string, make: () => Promise<Fixture>): void {
  describe(`Backend contract: ${label}`, () => {
    let fx: Fixture;
    let be: Backend;
    beforeEach(async () => {
      fx = await make();
      be = fx.backend;
    });
    afterEach(async () => {
      await be.close();
      await fx.cleanup?.();
    });

    it('reads back what was written, for every object type', async () => {
      const written = new Map<ObjectType, { name: string; data: Buffer }>();
      for (const type of ['config', 'keys', 'data', 'index', 'restorepoints', 'locks'] as ObjectType[]) {
        const name = type === 'config' ? 'config' : hexName();
        const data = randomBytes(1000 + Math.floor(Math.random() * 1000));
        await be.write(type, name, data);
        written.set(type, { name, data });
      }
      for (const [type, { name, data }] of written) {
        expect((await be.read(type, name)).equals(data), `${type}/${name}`).toBe(true);
        expect(await nameAndSize(be.stat(type, name))).toEqual({ name, size: data.length });
      }
    });

    it('writes an object given as parts (a pack\'s blobs, then its header) as their bytes in order', async () => {
      for (const type of ['data', 'index'] as ObjectType[]) {
        const name = hexName();
        const whole = randomBytes(3 * MiB + 17);
        const parts = [whole.subarray(0, 1), whole.subarray(1, 1), whole.subarray(1, 2 * MiB), new Uint8Array(whole.subarray(2 * MiB))];
        await be.write(type, name, parts);
        expect((await be.read(type, name)).equals(whole), `${type}/${name}`).toBe(true);
        expect(await nameAndSize(be.stat(type, name))).toEqual({ name, size: whole.length });
      }
    });

    it('writes an object piece by piece (openObjectStream): named at commit, unseen before, the pieces\' bytes in order; the caller may reuse a piece once appended', async () => {
      const whole = randomBytes(5 * MiB + 3);
      const name = hexName();
      const stream = await openObjectStream(be, 'data');
      const piece = Buffer.alloc(2 * MiB);
      for (let at = 0; at < whole.length; at += piece.length) {
        const n = whole.copy(piece, 0, at, at + piece.length);
        await stream.append(piece.subarray(0, n));
        piece.fill(0xee); // reused at once, as the pack writer reuses its piece
      }
      expect(await collect(be.list('data'))).toEqual([]);
      await stream.commit(name);
      expect((await be.read('data', name)).equals(whole)).toBe(true);
      expect(await collect(be.list('data'))).toEqual([{ name, size: whole.length }]);
    });

    it('drops an aborted object stream: no object, nothing listed', async () => {
      const stream = await openObjectStream(be, 'data');
      await stream.append(randomBytes(MiB));
      await stream.abort();
      expect(await collect(be.list('data'))).toEqual([]);
    });

    it('reads a range into the caller\'s buffer when given one, and returns a view of it', async () => {
      const name = hexName();
      const whole = randomBytes(2 * MiB);
      await be.write('data', name, whole);
      const into = new Uint8Array(MiB + 100);
      const got = await be.readRange('data', name, 12345, MiB, into);
      expect(got.buffer).toBe(into.buffer);
      expect(got.byteOffset).toBe(0);
      expect(got.equals(whole.subarray(12345, 12345 + MiB))).toBe(true);
      await expect(be.readRange('data', name, 2 * MiB - 10, 20, new Uint8Array(20))).rejects.toBeInstanceOf(TruncatedObjectError);
    });

    it('stores an empty object', async () => {
      const name = hexName();
      await be.write('locks', name, Buffer.alloc(0));
      expect((await be.read('locks', name)).length).toBe(0);
      expect(await nameAndSize(be.stat('locks', name))).toEqual({ name, size: 0 });
    });

    it('reports a missing object: NotFoundError (a StorageError) on read, undefined on stat, no error on remove', async () => {
      const name = hexName();
      await expect(be.read('index', name)).rejects.toBeInstanceOf(NotFoundError);
      await expect(be.readRange('data', name, 0, 10)).rejects.toBeInstanceOf(NotFoundError);
      await expect(be.read('config', 'config')).rejects.toBeInstanceOf(NotFoundError);
      expect(await be.stat('restorepoints', name)).toBeUndefined();
      await be.remove('data', name);
      const err = await be.read('keys', name).catch((e: unknown) => e);
      expect(err).toMatchObject({ type: 'keys', objectName: name });
      expect((err as Error).message).toContain(be.location);
      // If it reaches the user it is one line and exit 8, not an "internal error" (70).
      expect(err).toBeInstanceOf(StorageError);
      expect(err).toMatchObject({ exitCode: 8 });
    });

    it('reads ranges: start, middle, end, empty; a range past the end is a truncated object (corruption, exit 6), not NotFound', async () => {
      const name = hexName();
      const data = randomBytes(100_000);
      await be.write('data', name, data);
      expect((await be.readRange('data', name, 0, 10)).equals(data.subarray(0, 10))).toBe(true);
      expect((await be.readRange('data', name, 12_345, 50_000)).equals(data.subarray(12_345, 62_345))).toBe(true);
      expect((await be.readRange('data', name, 99_990, 10)).equals(data.subarray(99_990))).toBe(true);
      expect((await be.readRange('data', name, 500, 0)).length).toBe(0);
      for (const [offset, length] of [[99_990, 11], [100_000, 1], [200_000, 5]]) {
        const err = await be.readRange('data', name, offset, length).catch((e: unknown) => e);
        expect(err, `range ${offset}+${length}`).toBeInstanceOf(TruncatedObjectError);
        expect(err).toMatchObject({ exitCode: 6, type: 'data', objectName: name });
        expect((err as Error).message).toMatch(/object is truncated/);
      }
    });

    it('lists each type separately, with sizes, never mixing types', async () => {
      expect(await collect(be.list('index'))).toEqual([]);
      expect(await collect(be.list('config'))).toEqual([]);
      const data: ObjectInfo[] = [];
      // Names starting with different hex digits land in different data/<xx>/ folders.
      for (let i = 0; i < 12; i++) {
        const name = i.toString(16).padStart(2, '0') + hexName().slice(2);
        await be.write('data', name, Buffer.alloc(i * 7, i));
        data.push({ name, size: i * 7 });
      }
      const index = [{ name: hexName(), size: 3 }];
      await be.write('index', index[0].name, Buffer.from('abc'));
      await be.write('config', 'config', Buffer.from('cfg'));
      expect(await collect(be.list('data'))).toEqual(data.sort((a, b) => a.name.localeCompare(b.name)));
      expect(await collect(be.list('index'))).toEqual(index);
      expect(await collect(be.list('config'))).toEqual([{ name: 'config', size: 3 }]);
      expect(await collect(be.list('restorepoints'))).toEqual([]);
    });

    it('lists past one page (page size forced small on S3)', async () => {
      const names = Array.from({ length: 40 }, hexName).sort();
      await Promise.all(names.map((n) => be.write('restorepoints', n, Buffer.from(n))));
      expect((await collect(be.list('restorepoints'))).map((x) => x.name)).toEqual(names);
    });

    it('removes: the object is gone from read, stat and list; others stay', async () => {
      const [a, b] = [hexName(), hexName()];
      await be.write('index', a, Buffer.from('a'));
      await be.write('index', b, Buffer.from('b'));
      await be.read('index', a); // (the cache wrapper now holds a copy)
      await be.remove('index', a);
      await expect(be.read('index', a)).rejects.toBeInstanceOf(NotFoundError);
      expect(await be.stat('index', a)).toBeUndefined();
      expect((await collect(be.list('index'))).map((x) => x.name)).toEqual([b]);
      expect((await be.read('index', b)).toString()).toBe('b');
    });

    it('overwrites: writing an existing name replaces the whole object', async () => {
      const name = hexName();
      await be.write('locks', name, Buffer.from('first version, longer'));
      await be.read('locks', name);
      await be.write('locks', name, Buffer.from('second'));
      expect((await be.read('locks', name)).toString()).toBe('second');
      expect(await nameAndSize(be.stat('locks', name))).toEqual({ name, size: 6 });
      expect(await collect(be.list('locks'))).toEqual([{ name, size: 6 }]);
    });

    it('reports the storage\'s modification time of a lock, on stat and in a listing (lock staleness is judged by it)', async () => {
      const name = hexName();
      await be.write('locks', name, Buffer.from('first'));
      const first = (await be.stat('locks', name))?.mtime;
      expect(Number.isFinite(first), `stat mtime ${first}`).toBe(true);
      const listed: ObjectInfo[] = [];
      for await (const x of be.list('locks')) listed.push(x);
      expect(listed).toHaveLength(1);
      // S3 reports whole seconds in HEAD and may report milliseconds in a listing: the same second.
      expect(Math.abs(listed[0].mtime! - first!), 'listing and stat agree').toBeLessThan(1000);
      await be.write('locks', name, Buffer.from('second'));
      expect((await be.stat('locks', name))!.mtime!, 'a rewrite never makes a lock older').toBeGreaterThanOrEqual(first!);
    });

    it('handles concurrent writes and reads of different objects', async () => {
      const objs = Array.from({ length: 16 }, () => ({ name: hexName(), data: randomBytes(64 * 1024) }));
      await Promise.all(objs.map((o) => be.write('data', o.name, o.data)));
      const back = await Promise.all(objs.map((o) => be.read('data', o.name)));
      back.forEach((b, i) => expect(b.equals(objs[i].data)).toBe(true));
    });

    it('round-trips a 40 MiB object (multipart on S3), whole and by ranges across part boundaries', async () => {
      const name = hexName();
      const data = randomBytes(40 * MiB);
      await be.write('data', name, data);
      expect(await nameAndSize(be.stat('data', name))).toEqual({ name, size: data.length });
      const back = await be.read('data', name);
      expect(createHash('sha256').update(back).digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
      const at = 8 * MiB - 100; // straddles the first part boundary
      expect((await be.readRange('data', name, at, 200)).equals(data.subarray(at, at + 200))).toBe(true);
    });
  });
}

// --- the backends -----------------------------------------------------------

backendContract('LocalBackend (temp dir)', async () => {
  const dir = fs.mkdtempSync(scratch.path('local-'));
  return { backend: new LocalBackend(dir), cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }) };
});

describe('LocalBackend specifics', () => {
  const scratch = useScratch('backend-local');
  it("keeps restore points under snapshots/, the format's folder name, and every other type under its own", async () => {
    const dir = scratch.mkdir('layout');
    const be = new LocalBackend(dir);
    const name = 'ab' + hexName().slice(2);
    for (const type of ['data', 'index', 'keys', 'restorepoints', 'locks'] as ObjectType[]) await be.write(type, name, Buffer.from(type));
    expect(fs.readFileSync(path.join(dir, 'snapshots', name), 'utf8')).toBe('restorepoints');
    expect(fs.readFileSync(path.join(dir, 'data', 'ab', name), 'utf8')).toBe('data');
    expect(fs.readdirSync(dir).sort()).toEqual(['data', 'index', 'keys', 'locks', 'snapshots']);
    expect((await collect(be.list('restorepoints'))).map((x) => x.name)).toEqual([name]);
  });
});

describe('LocalBackend object streams', () => {
  const scratch = useScratch('backend-local-stream');
  /** Temporary files under the repository, as leftover cleanup finds them. */
  const temporaries = async (be: LocalBackend) => (await be.temporaryFiles()).map((f) => path.relative(be.location, f.path));

  it('writes the pieces to a temporary file as they come (no buffer of the whole object), renamed into data/<xx>/ at commit', async () => {
    const be = new LocalBackend(scratch.mkdir('stream'));
    const stream = await be.openStream('data');
    await stream.append(Buffer.alloc(MiB, 1));
    const [temp] = await temporaries(be);
    expect(temp).toMatch(/^data\/[0-9a-f]{2}\/stream\.tmp-[0-9a-f]{12}$/);
    expect(fs.statSync(path.join(be.location, temp)).size).toBe(MiB);
    const name = 'cd' + hexName().slice(2);
    await stream.commit(name);
    expect(await temporaries(be)).toEqual([]);
    expect(fs.statSync(path.join(be.location, 'data', 'cd', name)).size).toBe(MiB);
    await expect(stream.append(Buffer.alloc(1))).rejects.toThrow(/already committed or aborted/);
  });

  it('leaves no temporary file after abort', async () => {
    const be = new LocalBackend(scratch.mkdir('abort'));
    const stream = await be.openStream('data');
    await stream.append(Buffer.alloc(MiB, 2));
    await stream.abort();
    await stream.abort(); // twice is harmless
    expect(await temporaries(be)).toEqual([]);
    expect(await collect(be.list('data'))).toEqual([]);
  });

  it('behind a fence: a stream fenced between pieces is dropped with the fence\'s error and leaves nothing', async () => {
    const inner = new LocalBackend(scratch.mkdir('fenced'));
    const be = new FencedBackend(inner);
    const stream = await openObjectStream(be, 'data');
    await stream.append(Buffer.alloc(MiB, 3));
    be.fence(new StorageError('the repository lock was lost'));
    await expect(stream.append(Buffer.alloc(10))).rejects.toThrow('the repository lock was lost');
    await expect(stream.commit(hexName())).rejects.toThrow('the repository lock was lost');
    expect(await temporaries(inner)).toEqual([]);
    expect(await collect(inner.list('data'))).toEqual([]);
  });
});

describe('on a real S3 server (Ceph RGW)', () => {
  const s3 = useS3Server();
  // A small page size makes every listing in the contract paginate.
  const s3Options = { listPageSize: 7, idleTimeoutMs: 30_000 };

  backendContract('S3Backend', async () => {
    const bucket = await s3.server.createBucket();
    return { backend: new S3Backend(s3.server.location(bucket, 'repo/one'), s3Options) };
  });

  backendContract('CachedBackend(S3Backend)', async () => {
    const bucket = await s3.server.createBucket();
    const dir = fs.mkdtempSync(scratch.path('cache-'));
    return {
      backend: new CachedBackend(new S3Backend(s3.server.location(bucket, 'repo'), s3Options), dir),
      cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }),
    };
  });

  describe('S3Backend specifics', () => {
    it('lays objects out as <prefix>/<type>/<name>, data under data/<xx>/', async () => {
      const bucket = await s3.server.createBucket();
      const be = new S3Backend(s3.server.location(bucket, 'site-a/ferry'));
      const name = 'ab' + hexName().slice(2);
      await be.write('config', 'config', Buffer.from('c'));
      await be.write('data', name, Buffer.from('d'));
      await be.write('index', name, Buffer.from('i'));
      await be.write('keys', name, Buffer.from('k'));
      await be.write('restorepoints', name, Buffer.from('s'));
      await be.write('locks', name, Buffer.from('l'));
      const listed = await s3.server.client.send(new ListObjectsV2Command({ Bucket: bucket }));
      expect((listed.Contents ?? []).map((o) => o.Key).sort()).toEqual([
        'site-a/ferry/config',
        `site-a/ferry/data/ab/${name}`,
        `site-a/ferry/index/${name}`,
        `site-a/ferry/keys/${name}`,
        `site-a/ferry/locks/${name}`,
        `site-a/ferry/snapshots/${name}`,
      ]);
      await be.close();
    });

    it('works at the bucket root (no prefix) and ignores foreign keys in its folders', async () => {
      const bucket = await s3.server.createBucket();
      const be = new S3Backend(s3.server.location(bucket));
      const name = hexName();
      await be.write('index', name, Buffer.from('x'));
      // Stray things a person or another tool may leave: a folder marker, a nested key.
      await s3.server.client.send(new PutObjectCommand({ Bucket: bucket, Key: 'index/', Body: Buffer.alloc(0) }));
      await s3.server.client.send(new PutObjectCommand({ Bucket: bucket, Key: 'index/sub/x', Body: Buffer.from('y') }));
      expect(await collect(be.list('index'))).toEqual([{ name, size: 1 }]);
      const obj = await s3.server.client.send(new GetObjectCommand({ Bucket: bucket, Key: `index/${name}` }));
      expect(await obj.Body?.transformToString()).toBe('x');
      await be.close();
    });

    it('lists more than 1000 objects with the default page size', async () => {
      const bucket = await s3.server.createBucket();
      const be = new S3Backend(s3.server.location(bucket, 'p'));
      const names = Array.from({ length: 1005 }, hexName);
      for (let i = 0; i < names.length; i += 100) {
        await Promise.all(names.slice(i, i + 100).map((n) => be.write('locks', n, Buffer.alloc(1))));
      }
      const listed = await collect(be.list('locks'));
      expect(listed.length).toBe(1005);
      expect(new Set(listed.map((x) => x.name))).toEqual(new Set(names));
      await be.close();
    });

    it('abortStaleUploads() removes multipart uploads a killed process left under the prefix, and only those', async () => {
      const bucket = await s3.server.createBucket();
      const be = new S3Backend(s3.server.location(bucket, 'repo'));
      const leftover = await s3.server.client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: `repo/data/ab/ab${hexName().slice(2)}` }));
      await s3.server.client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'other-tool/big.iso' }));
      expect(await be.abortStaleUploads(60_000)).toBe(0); // too recent: may be a backup running right now
      expect(await be.abortStaleUploads(0)).toBe(1);
      const left = await s3.server.client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
      expect((left.Uploads ?? []).map((u) => u.Key)).toEqual(['other-tool/big.iso']);
      expect(leftover.UploadId).toBeTruthy();
      await be.close();
    });

    it('a missing bucket is a one-line StorageError naming the bucket', async () => {
      const be = new S3Backend(s3.server.location('no-such-bucket-here', 'repo'));
      const err = await be.write('config', 'config', Buffer.from('x')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StorageError);
      expect((err as Error).message).toMatch(/^s3:http:\/\/127\.0\.0\.1:\d+\/no-such-bucket-here\/repo: writing config: bucket 'no-such-bucket-here' does not exist \(404 NoSuchBucket\)/);
      expect((err as Error).message).not.toContain('\n');
      await be.close();
    });
  });

  describe('CachedBackend specifics', () => {
    it('serves index/snapshots/keys/config from the cache, not data; a complete list evicts vanished names', async () => {
      const bucket = await s3.server.createBucket();
      const dir = fs.mkdtempSync(scratch.path('cache-'));
      const be = new CachedBackend(new S3Backend(s3.server.location(bucket, 'r')), dir);
      const name = hexName();
      await be.write('index', name, Buffer.from('index bytes'));
      await be.write('data', name, Buffer.from('data bytes'));
      expect(fs.readFileSync(path.join(dir, 'index', name), 'utf8')).toBe('index bytes');
      expect(fs.existsSync(path.join(dir, 'data'))).toBe(false);

      // Another host prunes both objects behind our back.
      await s3.server.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: `r/index/${name}` }));
      await s3.server.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: `r/data/${name.slice(0, 2)}/${name}` }));
      // The cached copy is still served (it is immutable and content-named) ...
      expect((await be.read('index', name)).toString()).toBe('index bytes');
      await expect(be.read('data', name)).rejects.toBeInstanceOf(NotFoundError);
      // ... until a listing shows the name is gone.
      expect(await collect(be.list('index'))).toEqual([]);
      expect(fs.existsSync(path.join(dir, 'index', name))).toBe(false);
      await expect(be.read('index', name)).rejects.toBeInstanceOf(NotFoundError);
      await be.close();
    });

    it('fills the cache on first read and refuses names that could leave the cache directory', async () => {
      const bucket = await s3.server.createBucket();
      const dir = fs.mkdtempSync(scratch.path('cache-'));
      const inner = new S3Backend(s3.server.location(bucket, 'r'));
      const name = hexName();
      await inner.write('restorepoints', name, Buffer.from('snap'));
      const be = new CachedBackend(inner, dir);
      expect((await be.read('restorepoints', name)).toString()).toBe('snap');
      expect(fs.readFileSync(path.join(dir, 'snapshots', name), 'utf8')).toBe('snap');
      expect((await be.readRange('restorepoints', name, 1, 2)).toString()).toBe('na');
      await expect(be.read('restorepoints', '../../etc')).rejects.toBeInstanceOf(NotFoundError);
      expect(fs.readdirSync(dir)).toEqual(['snapshots']);
      await be.close();
    });
  });
});
