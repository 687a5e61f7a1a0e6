// HypervisorDriver for guests ferry's config file describes by hand
// (`[[static.guest]]`): shut-off guests, or guests of a hypervisor ferry has
// no driver for. Ferry cannot ask such a guest's state, so it assumes the
// safe thing: without hooks the guest is 'shutoff' (its disks are read in
// place or snapshotted if possible); with a pre/post hook the guest is
// 'running' and held still by the hooks (e.g. `ssh {name} fsfreeze -f /`),
// which makes the backup require a real snapshot of every disk.
import { readFileSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { InputError, describeSystemError } from '../../errors';
import type { CommandRunner } from '../commandRunner';
import type { GuestDisk, GuestHooks, GuestInfo, HoldGuard, HypervisorDriver, LiveCopyAccess, QuiesceHandle } from '../driver';
import { runGuestHook } from '../hooks';
import { nothingToRelease, onceSuccessful } from '../quiesce';

export interface StaticDiskDefinition {
  path: string;
  /** Name of the disk in the restore point; default `disk<N>` by position. */
  device?: string;
}

export interface StaticGuestDefinition {
  name: string;
  disks: (string | StaticDiskDefinition)[];
  /** The guest's hypervisor config file, kept in the restore point so a restore can recreate the guest. */
  config?: string;
  /** Commands that hold the guest still around its snapshots; argv arrays, `{name}` replaced. */
  hooks?: GuestHooks;
}

export interface StaticDriverOptions {
  guests: readonly StaticGuestDefinition[];
  /** Runs the hooks. */
  runner: CommandRunner;
}

const FORMAT_BY_EXTENSION: Record<string, string> = { '.qcow2': 'qcow2', '.vhd': 'vhd', '.vmdk': 'vmdk', '.vdi': 'vdi' };

export class StaticDriver implements HypervisorDriver {
  readonly kind = 'static';
  private readonly guests: readonly StaticGuestDefinition[];
  private readonly runner: CommandRunner;

  constructor(options: StaticDriverOptions) {
    const seen = new Set<string>();
    for (const g of options.guests) {
      if (seen.has(g.name)) throw new InputError(`static guest ${g.name} is defined twice: give each [[static.guest]] its own name`);
      seen.add(g.name);
    }
    this.guests = options.guests;
    this.runner = options.runner;
  }

  /** Guests described by hand: no hypervisor to copy their disks. */
  liveCopy(): LiveCopyAccess | undefined {
    return undefined;
  }

  async listGuests(): Promise<GuestInfo[]> {
    return this.guests.map((def) => {
      const disks: GuestDisk[] = def.disks.map((d, i) => {
        const { path, device } = typeof d === 'string' ? { path: d, device: undefined } : d;
        return { device: device ?? `disk${i}`, path, format: FORMAT_BY_EXTENSION[extname(path).toLowerCase()] ?? 'raw', readOnly: false };
      });
      const info: GuestInfo = { name: def.name, state: hasHooks(def.hooks) ? 'running' : 'shutoff', nics: [], disks };
      if (def.config !== undefined) info.config = readConfig(def);
      return info;
    });
  }

  /**
   * Runs the pre hook and returns a handle whose release runs the post hook.
   * `hooks` (the per-guest settings) win over the guest definition's own.
   */
  async quiesce(guest: GuestInfo, hooks?: GuestHooks, guard?: HoldGuard): Promise<QuiesceHandle> {
    const own = this.guests.find((g) => g.name === guest.name)?.hooks;
    const effective = hasHooks(hooks) ? hooks! : own;
    if (!hasHooks(effective)) return nothingToRelease(guest.name);
    const { pre, post } = effective!;
    const releaseArgv = post?.map((a) => a.split('{name}').join(guest.name));
    // The pre hook is what holds the guest (e.g. fsfreeze over ssh): the watchdog must exist before it runs.
    if (releaseArgv) guard?.holding({ argv: releaseArgv });
    if (pre) await runGuestHook(this.runner, pre, guest.name, 'pre'); // a failure aborts: nothing to release
    const handle: QuiesceHandle = {
      guest: guest.name,
      quiesced: true,
      release: onceSuccessful(async () => {
        if (post) await runGuestHook(this.runner, post, guest.name, 'post');
      }),
    };
    // The watchdog runs the post hook if ferry dies while the guest is held.
    return releaseArgv ? { ...handle, releaseArgv } : handle;
  }
}

function hasHooks(hooks: GuestHooks | undefined): boolean {
  return hooks !== undefined && (hooks.pre !== undefined || hooks.post !== undefined);
}

function readConfig(def: StaticGuestDefinition): { fileName: string; text: string } {
  try {
    return { fileName: basename(def.config!), text: readFileSync(def.config!, 'utf8') };
  } catch (err) {
    throw new InputError(
      `static guest ${def.name}: cannot read its config file ${def.config}: ${describeSystemError(err)}; fix config = in [[static.guest]] or remove it`,
      { cause: err },
    );
  }
}
