// How much room each storage pool of a target host has, measured on that host
// (through its CommandRunner: local, or over ssh) before planning.
//   dir pool:        `df` of the directory; disk files are sparse, so a disk takes its data bytes
//   lvm pool:        `vgs` free bytes of the volume group; a thick volume takes its whole size
//   lvm thin pool:   the thin pool's size less its used share (`lvs data_percent`); a thin volume takes its data bytes
import { InputError } from '../errors';
import { type CommandRunner, runChecked } from '../hypervisor/commandRunner';
import { VGS_ARGS, parseVgsReport } from '../snapshot/lvmReport';
import type { HostDefinition, PoolDefinition } from './hostsFile';
import type { PoolCapacity } from './placement';

export async function measurePool(runner: CommandRunner, host: HostDefinition, pool: PoolDefinition): Promise<PoolCapacity> {
  const where = `pool ${pool.name} of host ${host.name}`;
  if (pool.type === 'dir') {
    const df = await runner.run('df', ['-B1', '--output=avail', '--', pool.path]);
    if (df.code !== 0) {
      throw new InputError(`${where}: cannot measure ${pool.path} (${df.stderr.trim().split('\n').pop() || `df exit ${df.code}`}); create the directory on ${host.name} or fix its path in the hosts file`);
    }
    const free = Number(df.stdout.trim().split('\n').pop());
    if (!Number.isSafeInteger(free)) throw new InputError(`${where}: df printed ${JSON.stringify(df.stdout.trim())}, expected a byte count`);
    return { host: host.name, pool: pool.name, freeBytes: free, sparse: true };
  }
  if (pool.thinPool !== undefined) {
    const lvs = await runChecked(runner, 'lvs', ['--reportformat', 'json', '-o', 'lv_name,lv_size,data_percent', '--units', 'b', `${pool.volumeGroup}/${pool.thinPool}`]);
    return { host: host.name, pool: pool.name, freeBytes: thinPoolFree(lvs.stdout, where), sparse: true };
  }
  const vgs = await runChecked(runner, 'vgs', [...VGS_ARGS, pool.volumeGroup]);
  const vg = parseVgsReport(vgs.stdout).find((v) => v.name === pool.volumeGroup);
  if (!vg) throw new InputError(`${where}: volume group ${pool.volumeGroup} does not exist on ${host.name}; create it or fix volume_group in the hosts file`);
  return { host: host.name, pool: pool.name, freeBytes: vg.freeBytes, sparse: false };
}

function thinPoolFree(stdout: string, where: string): number {
  const row = (JSON.parse(stdout) as { report?: { lv?: Record<string, string>[] }[] }).report?.[0]?.lv?.[0];
  const size = Number(/^(\d+)B?$/.exec(row?.lv_size ?? '')?.[1]);
  const used = Number(row?.data_percent);
  if (!row || !Number.isFinite(size) || row.data_percent === undefined || row.data_percent === '' || !Number.isFinite(used)) {
    throw new InputError(`${where}: lvm does not say how full the thin pool is (data_percent ${JSON.stringify(row?.data_percent ?? null)}); is device-mapper loaded on that host?`);
  }
  return Math.floor(size * (1 - used / 100));
}
