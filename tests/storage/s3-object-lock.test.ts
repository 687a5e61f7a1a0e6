// Object Lock: objects written with a retention cannot be deleted by anyone
// (COMPLIANCE) until it passes, which is what protects an offsite copy from a
// compromised backup host. Ferry writes the retention on every object, and
// when asked to remove a locked one it says why it cannot, in one line.
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { DeleteObjectCommand, GetObjectRetentionCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { S3Backend } from '../../src/storage/s3';
import { StorageError } from '../../src/errors';
import { useS3Server } from '../support/s3server';

const MiB = 1024 * 1024;
const DAY = 86_400_000;
const hexName = (): string => randomBytes(32).toString('hex');
const s3 = useS3Server();

describe('S3Backend with objectLockDays', () => {
  it('writes every object (single PUT and multipart) with the requested retention, packs and index files a tenth more', async () => {
    const bucket = await s3.server.createBucket({ objectLock: true });
    const be = new S3Backend(s3.server.location(bucket, 'repo'), { objectLockDays: 30 });
    const small = hexName();
    const large = hexName();
    await be.write('index', small, Buffer.from('index'));
    await be.write('data', large, randomBytes(20 * MiB)); // multipart
    for (const key of [`repo/index/${small}`, `repo/data/${large.slice(0, 2)}/${large}`]) {
      const r = await s3.server.client.send(new GetObjectRetentionCommand({ Bucket: bucket, Key: key }));
      expect(r.Retention?.Mode, key).toBe('COMPLIANCE');
      const until = r.Retention?.RetainUntilDate?.getTime() ?? 0;
      // Packs and index files get a tenth more (objectLockMargin): newer restore points will need them.
      expect(Math.abs(until - (Date.now() + 33 * DAY)), key).toBeLessThan(60_000);
    }
    await be.close();
  });

  it('the server refuses to delete a locked version (403), and ferry remove reports it clearly', async () => {
    const bucket = await s3.server.createBucket({ objectLock: true });
    const be = new S3Backend(s3.server.location(bucket, 'repo'), { objectLockDays: 1 });
    const name = hexName();
    const key = `repo/data/${name.slice(0, 2)}/${name}`;
    await be.write('data', name, Buffer.from('precious'));

    // The server itself: deleting the version is refused.
    const head = await s3.server.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    const raw = await s3.server.client
      .send(new DeleteObjectCommand({ Bucket: bucket, Key: key, VersionId: head.VersionId }))
      .catch((e: unknown) => e);
    expect(raw).toMatchObject({ name: 'AccessDenied', $metadata: { httpStatusCode: 403 } });

    // Ferry: one line, what and where and why, and the object is still there.
    const err = await be.remove('data', name).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect((err as Error).message).toMatch(
      new RegExp(
        `^s3:${s3.server.endpoint}/${bucket}/repo: removing data/${name.slice(0, 2)}/${name}: ` +
          `object is protected by Object Lock until \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z \\(403 AccessDenied\\): ` +
          `it can be removed only after its retention has passed$`,
      ),
    );
    expect((await be.read('data', name)).toString()).toBe('precious');
    await be.close();
  });

  it('GOVERNANCE mode is written when asked for', async () => {
    const bucket = await s3.server.createBucket({ objectLock: true });
    const be = new S3Backend(s3.server.location(bucket), { objectLockDays: 2, objectLockMode: 'GOVERNANCE' });
    const name = hexName();
    await be.write('restorepoints', name, Buffer.from('s'));
    const r = await s3.server.client.send(new GetObjectRetentionCommand({ Bucket: bucket, Key: `snapshots/${name}` }));
    expect(r.Retention?.Mode).toBe('GOVERNANCE');
    await be.close();
  });

  it('a bucket created without Object Lock: writing fails with a hint to enable it at bucket creation', async () => {
    const bucket = await s3.server.createBucket();
    const be = new S3Backend(s3.server.location(bucket, 'repo'), { objectLockDays: 1 });
    const err = await be.write('index', hexName(), Buffer.from('x')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect((err as Error).message).toMatch(/is Object Lock enabled on bucket '[^']+'\? It must be set when the bucket is created$/);
    await be.close();
  });

  it('without a lock, remove in a versioned (locked) bucket deletes the versions and frees the name', async () => {
    const bucket = await s3.server.createBucket({ objectLock: true });
    // objectLockDays is what tells ferry the bucket is versioned; an unlocked object is simply removed.
    const writer = new S3Backend(s3.server.location(bucket, 'repo'));
    const name = hexName();
    await writer.write('locks', name, Buffer.from('lock'));
    const be = new S3Backend(s3.server.location(bucket, 'repo'), { objectLockDays: 1 });
    await be.remove('locks', name);
    expect(await be.stat('locks', name)).toBeUndefined();
    await be.close();
    await writer.close();
  });
});
