import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ExecFileCommandRunner } from '../../src/hypervisor/commandRunner';
import { InputError } from '../../src/errors';
import type { HostDefinition } from '../../src/site/hostsFile';
import { measurePool } from '../../src/site/poolCapacity';
import { useScratch } from '../support';

const scratch = useScratch('pool-capacity');
const host: HostDefinition = { name: 'new01', address: { kind: 'local' }, hypervisor: 'qemu', memoryBytes: 1 << 30, cpus: 2, cpuOvercommit: 1, bridges: {}, configDir: '/etc/xen', accel: 'kvm', pools: [] };

describe('measuring a dir pool', () => {
  it('reports the free bytes of the file system holding the directory, counted as sparse', async () => {
    const dir = scratch.mkdir('pool');
    const capacity = await measurePool(new ExecFileCommandRunner(), host, { name: 'images', type: 'dir', path: dir });
    const st = fs.statfsSync(dir);
    expect(capacity).toMatchObject({ host: 'new01', pool: 'images', sparse: true });
    // df and statfs read the same counters a moment apart: equal up to what others wrote meanwhile.
    expect(Math.abs(capacity.freeBytes - st.bavail * st.bsize)).toBeLessThan(256 * 1024 * 1024);
  });

  it('says which pool of which host is missing, and what to do', async () => {
    const missing = scratch.path('no-such-pool');
    const err = await measurePool(new ExecFileCommandRunner(), host, { name: 'images', type: 'dir', path: missing }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toBe(
      `pool images of host new01: cannot measure ${missing} (df: ${missing}: No such file or directory); create the directory on new01 or fix its path in the hosts file`,
    );
  });
});
