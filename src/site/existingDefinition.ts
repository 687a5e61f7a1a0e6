// A target host that already knows a guest of the planned name, although it
// does not run there (a running one is refused before this, guestStart.ts
// guestPresence): `virsh define` replaces a shut-off libvirt domain of the
// same name without a word, and an xl cfg at the path site restore writes
// would be replaced by the restored one. Either would throw away a machine
// someone defined there, so the restore of that guest is refused before
// anything is written, unless it was this plan's own earlier run that left
// the definition (its journals say so), or the restore was asked to replace
// what is there (--force, --seed).
//
//   libvirt   `virsh domstate NAME` knows the domain (any state)
//   xen       <config dir>/<NAME>.cfg exists (xl keeps no definitions: a
//             domain in `xl list` runs, and is refused as running)
//   qemu      nothing to ask: the launcher script is ferry's own file, and
//             an existing one is refused when the config is written
import { describeCommand } from '../hypervisor/commandRunner';
import type { CommandRunner } from '../hypervisor/commandRunner';
import { libvirtDomainState } from './guestStart';
import type { HostDefinition } from './hostsFile';

export interface DefinitionQuery {
  guest: string;
  /** Whether an earlier run of this plan wrote this guest's disks or set out to start it: then what is there is its own. */
  leftByThisPlan: () => boolean;
}

/**
 * The one line that says why guest `query.guest` must not be restored onto
 * `host` (a definition of that name there is not this plan's), or undefined
 * when nothing is in the way. Throws a FerryError when the host cannot tell.
 */
export async function definitionInTheWay(runner: CommandRunner, host: HostDefinition, query: DefinitionQuery): Promise<string | undefined> {
  const name = query.guest;
  if (host.hypervisor === 'libvirt') {
    const state = await libvirtDomainState(runner, host, name);
    if (state === undefined || query.leftByThisPlan()) return undefined;
    return `host ${host.name} already has a libvirt domain named ${name} (${state}), which virsh define would replace; nothing was written or defined for ${name}: ` +
      `remove it there (${describeCommand('virsh', ['undefine', name])}), leave ${name} out of the plan (site plan --guest), or restore with --force to replace it`;
  }
  if (host.hypervisor === 'xen') {
    const cfg = `${host.configDir.replace(/\/+$/, '')}/${name}.cfg`;
    if ((await runner.run('test', ['-e', cfg])).code !== 0 || query.leftByThisPlan()) return undefined;
    return `host ${host.name} already has an xl config for domain ${name} at ${cfg}; nothing was written or created for ${name}: ` +
      `move that file away, leave ${name} out of the plan (site plan --guest), or restore with --force to replace it`;
  }
  return undefined;
}
