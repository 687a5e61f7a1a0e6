// The remembered retentions (storage/retentionMemo.ts) on a real Ceph RGW:
// what this host wrote or read is answered from the file, by a later process
// too; a damaged file only costs requests.
import * as fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Backend } from '../../src/storage/s3';
import { RetentionMemoBackend } from '../../src/storage/retentionMemo';
import { useScratch } from '../support';
import { useS3Server } from '../support/s3server';
import { FaultProxy } from '../support/faultproxy';

const DAY = 86_400_000;
const scratch = useScratch('retention-memo');
const s3 = useS3Server();
let proxy: FaultProxy;

beforeAll(async () => {
  proxy = await FaultProxy.start(s3.server.endpoint);
});
afterAll(async () => {
  await proxy?.close();
});

const hexName = (): string => randomBytes(32).toString('hex');
const retentionGets = (from: number): number => proxy.requests.slice(from).filter((r) => r.method === 'GET' && /[?&]retention/.test(r.path)).length;

describe('RetentionMemoBackend', () => {
  it('answers from the file what this host wrote or read, in a later process too', async () => {
    const bucket = await s3.server.createBucket({ objectLock: true });
    const file = scratch.path('memo-a', 'object-retention');
    const open = () => new RetentionMemoBackend(new S3Backend(s3.server.location(bucket, 'r', proxy.endpoint), { objectLockDays: 10 }), file);
    const writer = open();
    const packed = hexName();
    await writer.write('data', packed, Buffer.from('pack'));
    // Written elsewhere (another host): unknown here.
    const foreign = hexName();
    const other = new S3Backend(s3.server.location(bucket, 'r'), { objectLockDays: 10, objectLockMode: 'GOVERNANCE' });
    await other.write('index', foreign, Buffer.from('index'));
    await writer.close();

    const later = open();
    let from = proxy.requests.length;
    const mine = await later.objectLock!.retention('data', packed);
    expect(retentionGets(from)).toBe(0);
    // Remembered from before the write: never later than what the server holds, within the margin of a day.
    expect(mine!.until.getTime()).toBeGreaterThan(Date.now() + 10.9 * DAY);
    expect(mine!.until.getTime()).toBeLessThanOrEqual(Date.now() + 11 * DAY);

    from = proxy.requests.length;
    expect((await later.objectLock!.retention('index', foreign))?.mode).toBe('GOVERNANCE');
    expect((await later.objectLock!.retention('index', foreign))?.mode).toBe('GOVERNANCE');
    expect(retentionGets(from), 'asked once, then remembered').toBe(1);

    // Raised: remembered at the new date, no request to read it back.
    const raised = new Date(Date.now() + 20 * DAY);
    await later.objectLock!.extendRetention('index', foreign, { mode: 'GOVERNANCE', until: raised });
    from = proxy.requests.length;
    expect((await later.objectLock!.retention('index', foreign))?.until.getTime()).toBe(raised.getTime());
    expect(retentionGets(from)).toBe(0);
    await later.close();
    await other.close();

  });

  it('a damaged file costs requests, not the command', async () => {
    const bucket = await s3.server.createBucket({ objectLock: true });
    const file = scratch.path('memo-b', 'object-retention');
    fs.mkdirSync(scratch.path('memo-b'), { recursive: true });
    const name = hexName();
    fs.writeFileSync(file, `data ${name} STRICT 12\ngarbage\n\0\0\0\ndata ${name} COMPLIANCE not-a-date\n`);
    const be = new RetentionMemoBackend(new S3Backend(s3.server.location(bucket, 'r', proxy.endpoint), { objectLockDays: 3 }), file);
    await new S3Backend(s3.server.location(bucket, 'r'), { objectLockDays: 3 }).write('data', name, Buffer.from('p'));
    const from = proxy.requests.length;
    const r = await be.objectLock!.retention('data', name);
    expect(r?.mode).toBe('COMPLIANCE');
    expect(retentionGets(from)).toBe(1);
    await be.close();
  });
});
