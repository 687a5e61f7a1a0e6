import { describe, expect, it } from 'vitest';
import type { HostDefinition } from '../../src/site/hostsFile';
import { type GuestToPlace, type PoolCapacity, placeGuests } from '../../src/site/placement';

const G = 1024 ** 3;

function host(name: string, memoryGiB: number, cpus: number, hypervisor: HostDefinition['hypervisor'] = 'xen'): HostDefinition {
  return { name, address: { kind: 'local' }, hypervisor, memoryBytes: memoryGiB * G, cpus, cpuOvercommit: 1, bridges: {}, configDir: '/etc/xen', accel: 'kvm', pools: [] };
}
function pool(hostName: string, name: string, freeGiB: number, sparse = false): PoolCapacity {
  return { host: hostName, pool: name, freeBytes: freeGiB * G, sparse };
}
function guest(name: string, memoryGiB: number, vcpus: number, diskGiB: number, dataGiB = diskGiB): GuestToPlace {
  return { name, hypervisor: 'xen', memoryBytes: memoryGiB * G, vcpus, disks: [{ name: `${name}-disk`, sizeBytes: diskGiB * G, dataBytes: dataGiB * G }] };
}

describe('placing guests on hosts', () => {
  it('spreads guests over hosts by load, within memory, vCPUs and pool space', () => {
    const hosts = [host('a', 64, 16), host('b', 64, 16)];
    const pools = [pool('a', 'vg0', 500), pool('b', 'vg0', 500)];
    const result = placeGuests([guest('web01', 8, 2, 20), guest('web02', 8, 2, 20), guest('db01', 32, 8, 100), guest('db02', 16, 4, 100)], hosts, pools, []);
    expect(result.unplaced).toEqual([]);
    const on = Object.fromEntries(result.placed.map((p) => [p.guest, p.host]));
    // Largest first, each to the host whose busier resource is lower afterwards:
    // db01 (32 GiB) → a; db02 (16 GiB) → b; web01, web02 (8 GiB each) → b, still below a's 50%.
    expect(on).toEqual({ db01: 'a', db02: 'b', web01: 'b', web02: 'b' });
    expect(result.placed.find((p) => p.guest === 'db01')!.disks).toEqual([{ disk: 'db01-disk', pool: 'vg0', countedBytes: 100 * G }]);
  });

  it('counts data bytes, not size, in sparse pools, and full size in thick ones', () => {
    const big = guest('files', 1, 1, 1000, 50); // 1000 GiB disk holding 50 GiB
    expect(placeGuests([big], [host('a', 8, 4)], [pool('a', 'thick', 200)], []).unplaced).toHaveLength(1);
    const sparse = placeGuests([big], [host('a', 8, 4)], [pool('a', 'thin', 200, true)], []);
    expect(sparse.placed).toEqual([{ guest: 'files', host: 'a', disks: [{ disk: 'files-disk', pool: 'thin', countedBytes: 50 * G }] }]);
  });

  it('says what does not fit where and by how much', () => {
    const result = placeGuests([guest('huge', 96, 4, 10)], [host('a', 64, 16), host('b', 32, 16)], [pool('a', 'vg0', 100), pool('b', 'vg0', 100)], []);
    expect(result.placed).toEqual([]);
    expect(result.unplaced).toEqual([
      { guest: 'huge', reasons: ['a: memory 96.0 GiB needed, 64.0 GiB left (short by 32.0 GiB)', 'b: memory 96.0 GiB needed, 32.0 GiB left (short by 64.0 GiB)'] },
    ]);
    const disk = placeGuests([guest('d', 1, 1, 300)], [host('a', 64, 16)], [pool('a', 'vg0', 100), pool('a', 'dir', 120, true)], []);
    expect(disk.unplaced[0]!.reasons).toEqual(['a: disk d-disk needs 300.0 GiB (300.0 GiB of data), no pool has room (vg0 100.0 GiB free; dir 120.0 GiB free, counts data bytes)']);
  });

  it('honours pins and anti-affinity groups', () => {
    const hosts = [host('a', 64, 16), host('b', 64, 16)];
    const pools = [pool('a', 'vg0', 500), pool('b', 'vg0', 500)];
    const rules = [
      { pattern: 'db*', line: 1, antiAffinity: 'db' },
      { pattern: 'web01', line: 2, pin: 'b' },
    ];
    const result = placeGuests([guest('db01', 4, 2, 10), guest('db02', 4, 2, 10), guest('db03', 4, 2, 10), guest('web01', 1, 1, 10)], hosts, pools, rules);
    const on = Object.fromEntries(result.placed.map((p) => [p.guest, p.host]));
    expect(on.web01).toBe('b');
    expect(new Set([on.db01, on.db02])).toEqual(new Set(['a', 'b']));
    expect(result.unplaced).toEqual([
      { guest: 'db03', reasons: ['a: anti_affinity "db": db01 is already there', 'b: anti_affinity "db": db02 is already there'] },
    ]);
  });

  it('keeps a guest on a host of its hypervisor, and an image-mode guest anywhere', () => {
    const hosts = [host('x', 64, 16, 'xen'), host('k', 64, 16, 'libvirt')];
    const pools = [pool('x', 'p', 100), pool('k', 'p', 100)];
    const kvm: GuestToPlace = { ...guest('kvm01', 4, 2, 10), hypervisor: 'libvirt' };
    const image: GuestToPlace = { ...guest('img01', 4, 2, 10), hypervisor: undefined };
    const result = placeGuests([kvm, image], hosts, pools, []);
    expect(result.placed.find((p) => p.guest === 'kvm01')!.host).toBe('k');
    expect(result.placed.find((p) => p.guest === 'img01')!.host).toBe('x');
    const nowhere = placeGuests([kvm], [host('x', 64, 16, 'xen')], [pool('x', 'p', 100)], []);
    expect(nowhere.unplaced[0]!.reasons).toEqual(['x: a libvirt guest, the host runs xen']);
  });

  it('takes pool space guest by guest: the second disk that would overfill a pool goes elsewhere', () => {
    const result = placeGuests([guest('g1', 1, 1, 60), guest('g2', 1, 1, 60)], [host('a', 64, 16)], [pool('a', 'p1', 100), pool('a', 'p2', 70)], []);
    expect(result.placed.map((p) => p.disks[0]!.pool).sort()).toEqual(['p1', 'p2']);
  });
});
