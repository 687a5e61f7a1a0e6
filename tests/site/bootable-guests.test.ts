// The bootable identity guests themselves (tests/support/bootableGuest.ts,
// scripts/testbed/bootdisk.sh): real raw disks that QEMU boots from their own
// MBR, each printing its identity and the checksum of its data.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { beforeAll, describe, expect, it } from 'vitest';
import { bootGuestDisk, buildBootableGuest, guestData, parseGuestIdentity, type BootableGuestDisk } from '../support/bootableGuest';
import { useScratch } from '../support/scratch';

const scratch = useScratch('bootable-guests');

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { timeout: 30_000 }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (b: Buffer) => parts.push(b));
        res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(parts).toString('utf8')) : reject(new Error(`GET ${url}: HTTP ${res.statusCode}`))));
      })
      .on('timeout', function (this: http.ClientRequest) {
        this.destroy(new Error(`GET ${url} timed out`));
      })
      .on('error', reject);
  });
}
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const alphaData = guestData('alpha', 3 * 1024 * 1024);
let alpha: BootableGuestDisk;
let beta: BootableGuestDisk;

beforeAll(async () => {
  // Sequential: the first build fills the cache (kernel, boot partition).
  alpha = await buildBootableGuest(scratch.path('alpha.raw'), 'alpha', alphaData);
  beta = await buildBootableGuest(scratch.path('beta.raw'), 'beta', undefined, { address: '10.0.2.16/24' });
});

describe('bootable identity guests', () => {
  it('each boot from their own disk alone, print their identity and the checksum of their data, and serve it on TCP given a NIC', async () => {
    const imageSum = (d: BootableGuestDisk) => sha256(fs.readFileSync(d.path));
    const before = [imageSum(alpha), imageSum(beta)];
    const port = await freePort();
    const [a, b] = await Promise.all([
      bootGuestDisk(scratch, alpha.path),
      bootGuestDisk(scratch, beta.path, { httpForward: { port, guestAddress: '10.0.2.16' } }),
    ]);

    expect(a.identity).toEqual({ name: 'alpha', sum: sha256(alphaData) });
    expect(alpha.sum).toBe(sha256(alphaData));
    expect(b.identity).toEqual({ name: 'beta', sum: beta.sum });
    expect(beta.sum).toBe(sha256(guestData('beta', 2 * 1024 * 1024)));
    expect(beta.sum).not.toBe(alpha.sum);
    expect(a.isAlive() && b.isAlive()).toBe(true);
    // With a NIC, the guest serves its identity line on TCP port 80 (a health signal); without one, no network.
    expect(fs.readFileSync(b.serialLog, 'utf8')).toContain('FERRY-GUEST-NET address=10.0.2.16/24 port=80');
    expect(await httpGet(`http://127.0.0.1:${port}/`)).toBe(`FERRY-GUEST name=beta sum=${beta.sum}\n`);
    expect(fs.readFileSync(a.serialLog, 'utf8')).not.toContain('FERRY-GUEST-NET');

    await Promise.all([a.stop(), b.stop()]);
    expect(a.isAlive() || b.isAlive()).toBe(false);
    // Booting never writes to the disk: a restored disk boots the same way twice.
    expect([imageSum(alpha), imageSum(beta)]).toEqual(before);
  });

  it('reports where the data lies in the image', () => {
    const fd = fs.openSync(alpha.path, 'r');
    const inImage = Buffer.alloc(alpha.dataLength);
    fs.readSync(fd, inImage, 0, inImage.length, alpha.dataOffset);
    fs.closeSync(fd);
    expect(inImage.equals(alphaData)).toBe(true);
  });

  it('a flipped byte in the data area of a copy changes the checksum the guest prints', async () => {
    const damaged = scratch.path('alpha-damaged.raw');
    fs.copyFileSync(alpha.path, damaged);
    const at = alpha.dataOffset + 1234567;
    const fd = fs.openSync(damaged, 'r+');
    const byte = Buffer.alloc(1);
    fs.readSync(fd, byte, 0, 1, at);
    byte[0] = byte[0]! ^ 0x01;
    fs.writeSync(fd, byte, 0, 1, at);
    fs.closeSync(fd);
    const expected = Buffer.from(alphaData);
    expected[1234567] = expected[1234567]! ^ 0x01;

    const guest = await bootGuestDisk(scratch, damaged);

    expect(guest.identity.name).toBe('alpha');
    expect(guest.identity.sum).not.toBe(alpha.sum);
    expect(guest.identity.sum).toBe(sha256(expected));
  });

  it('builds a fleet of guests that all differ, from the cached boot partition', async () => {
    const names = ['web01', 'db01', 'mail01', 'dns01'];
    const fleet = await Promise.all(names.map((n) => buildBootableGuest(scratch.path(`${n}.raw`), n)));
    expect(new Set(fleet.map((g) => g.sum)).size).toBe(4);
    for (const g of fleet) expect(g.sum).toBe(sha256(guestData(g.name, 2 * 1024 * 1024)));
  });

  it('refuses a name that cannot be an identity or a malformed address, with one clear line', async () => {
    await expect(buildBootableGuest(scratch.path('bad.raw'), 'bad name')).rejects.toThrow(/guest name 'bad name' must be/);
    await expect(buildBootableGuest(scratch.path('bad.raw'), 'ok', undefined, { address: '10.0.2.16' })).rejects.toThrow(
      /FERRY_BOOTDISK_ADDRESS must look like 10\.0\.2\.15\/24, got '10\.0\.2\.16'/,
    );
    expect(fs.existsSync(scratch.path('bad.raw'))).toBe(false);
  });

  it('parses only a complete identity line', () => {
    const sum = 'ab'.repeat(32);
    expect(parseGuestIdentity(`noise\nFERRY-GUEST name=web01 sum=${sum}\r\nFERRY-GUEST-READY name=web01\n`)).toEqual({ name: 'web01', sum });
    expect(parseGuestIdentity(`FERRY-GUEST name=web01 sum=${sum.slice(0, 40)}`)).toBeUndefined();
  });
});
