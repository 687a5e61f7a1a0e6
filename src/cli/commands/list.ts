import { Command } from 'commander';
import { withRepository, RepoOptions } from '../session';
import { formatBytes, table } from '../format';
import { GuestSpec, RestorePointSummary } from '../../repo/restorePoint';
import { reviewListing, seenRestorePoints } from '../restorePointRecord';

function summary(rp: Omit<RestorePointSummary, 'disks'> & { disks: readonly unknown[] }) {
  return {
    id: rp.id,
    guest: rp.guest,
    time: rp.time,
    hostname: rp.hostname,
    tags: rp.tags,
    disks: rp.disks.length,
    logicalBytes: rp.stats.logicalBytes,
    newBytes: rp.stats.newBytes,
  };
}

export function registerList(program: Command): void {
  program
    .command('list')
    .description('list restore points')
    .option('--guest <name>', 'only this guest')
    .option('--json', 'print JSON')
    .action(async (opts: { guest?: string; json?: boolean }, cmd: Command) => {
      const ropts = cmd.optsWithGlobals() as RepoOptions;
      await withRepository(ropts, 'none', 'list', async (repo) => {
        const listing = await repo.listAllRestorePoints();
        reviewListing(repo, ropts, listing);
        const all = listing.points.filter((rp) => !opts.guest || rp.guest === opts.guest);
        if (opts.json) {
          // A damaged point's guest is unknown, so it is listed whatever --guest says; it has no other fields.
          console.log(JSON.stringify([...all.map(summary), ...listing.damaged.map((d) => ({ id: d.id, damaged: true, problem: d.problem }))]));
          return;
        }
        console.log(
          table([
            ['id', 'guest', 'time', 'disks', 'logical', 'new', 'tags'],
            ...all.map((rp) => [
              rp.id.slice(0, 8), rp.guest, rp.time.replace(/\.\d+Z$/, 'Z'), String(rp.disks.length),
              formatBytes(rp.stats.logicalBytes), formatBytes(rp.stats.newBytes), rp.tags.join(','),
            ]),
          ]),
        );
      });
    });

  program
    .command('show <id>')
    .description('show one restore point (id, unique prefix, or latest)')
    .option('--guest <name>', 'with latest: the latest of this guest')
    .option('--json', 'print JSON')
    .action(async (ref: string, opts: { guest?: string; json?: boolean }, cmd: Command) => {
      const ropts = cmd.optsWithGlobals() as RepoOptions;
      await withRepository(ropts, 'none', 'show', async (repo) => {
        const seen = seenRestorePoints(repo, ropts);
        const rp = await repo.findRestorePoint(ref, opts.guest, { about: (id) => seen.about(id) });
        const disks = rp.disks.map((d, i) => ({ number: i, name: d.name, sourcePath: d.sourcePath, size: d.size, dataBytes: d.dataBytes }));
        if (opts.json) {
          console.log(JSON.stringify({ ...summary(rp), disks, config: rp.config?.fileName, spec: rp.spec, stats: rp.stats }));
          return;
        }
        console.log(`restore point ${rp.id}\nguest:  ${rp.guest}\ntime:   ${rp.time}\nhost:   ${rp.hostname}\ntags:   ${rp.tags.join(', ') || '-'}`);
        console.log(`config: ${rp.config?.fileName ?? '-'}`);
        console.log(`stored: ${formatBytes(rp.stats.newBytes)} new of ${formatBytes(rp.stats.logicalBytes)} logical (${formatBytes(rp.stats.readBytes)} read)`);
        if (rp.stats.pauseMs !== undefined || rp.stats.downMs !== undefined) {
          console.log(`guest:  paused ${rp.stats.pauseMs ?? 0} ms${rp.stats.downMs !== undefined ? `, shut down ${rp.stats.downMs} ms` : ''} for this backup`);
        }
        if (rp.spec) for (const line of specLines(rp.spec)) console.log(line);
        const specDisk = (name: string) => rp.spec?.disks.find((d) => d.name === name);
        console.log(
          table([
            ['disk', 'name', 'size', 'data', 'device', 'origin', 'format', 'storage', 'read from'],
            ...disks.map((d) => {
              const s = specDisk(d.name);
              return [String(d.number), d.name, formatBytes(d.size), formatBytes(d.dataBytes), s?.device ?? '-', s?.origin ?? '-', s?.format ?? '-', s?.storage ?? '-', d.sourcePath];
            }),
          ]),
        );
      });
    });
}

/** The machine a restore point describes (`ferry show`), for people. */
function specLines(spec: GuestSpec): string[] {
  const memory = spec.memoryMiB === undefined ? 'memory unknown' : `${spec.memoryMiB} MiB${spec.maxMemoryMiB !== undefined && spec.maxMemoryMiB !== spec.memoryMiB ? ` (max ${spec.maxMemoryMiB} MiB)` : ''}`;
  const lines = [
    `machine: ${spec.hypervisor ?? 'unknown hypervisor'}, ${spec.vcpus === undefined ? 'vCPUs unknown' : `${spec.vcpus} vCPU(s)`}, ${memory}; boot group ${spec.bootGroup}, priority ${spec.bootPriority}`,
  ];
  for (const n of spec.nics) {
    const where = n.bridge ? `bridge ${n.bridge}` : n.network ? `network ${n.network}` : 'no bridge';
    lines.push(`nic:     ${n.mac ?? 'no MAC'}, ${where}${n.model ? `, ${n.model}` : ''}`);
  }
  return lines;
}
