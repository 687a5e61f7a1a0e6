// HypervisorDriver for KVM/QEMU guests managed by libvirtd, through
// `virsh -c URI`. Guests come from `virsh list --all --name`; each one's
// state from `domstate`, its disks, vcpus, memory and NICs from the live
// `dumpxml`, and its config (kept in the restore point) from
// `dumpxml --inactive`: the persistent definition a restore feeds to
// `virsh define`, without run-time additions such as aliases, the domain id,
// or devices hot-plugged for this boot only.
//
// Quiesce: when the QEMU guest agent answers a guest-ping, `domfsfreeze`
// (the guest keeps running; its file systems are consistent); otherwise, or
// when the freeze fails, `suspend` (crash-consistent). Release undoes
// whichever was done.
import { HypervisorError } from '../../errors';
import type { GuestHooks, GuestInfo, GuestState, HoldGuard, HypervisorDriver, LiveCopyAccess, QuiesceHandle } from '../driver';

/** virsh resume of a guest that runs: someone (the watchdog, an admin) resumed it, or it was never suspended. */
const ALREADY_RUNNING = /domain is already running/;
import type { CommandRunner } from '../commandRunner';
import { runGuestHook } from '../hooks';
import { nothingToRelease, onceSuccessful } from '../quiesce';
import { parseDomainXml } from './domainXml';
import { DEFAULT_LIBVIRT_URI, Virsh, VirshError, isNoSuchDomain, parseDomState, parseNameList } from './virsh';

export interface LibvirtDriverOptions {
  runner: CommandRunner;
  /** libvirt connection URI. Default `qemu:///system`. */
  uri?: string;
  /** The virsh command. Default `virsh`. */
  virsh?: string;
  /** Freeze file systems through the guest agent when it answers. Default true; false always suspends. */
  useGuestAgent?: boolean;
  /** How long the agent may take to answer guest-ping, in seconds. Default 5. */
  agentTimeoutSeconds?: number;
}

/** How a libvirt guest was held still. */
export type LibvirtQuiesceMode = 'fsfreeze' | 'suspend' | 'none';

export interface LibvirtQuiesceHandle extends QuiesceHandle {
  readonly mode: LibvirtQuiesceMode;
}

export class LibvirtDriver implements HypervisorDriver {
  readonly kind = 'libvirt';
  readonly virsh: Virsh;
  private readonly useGuestAgent: boolean;
  private readonly agentTimeoutSeconds: number;

  constructor(options: LibvirtDriverOptions) {
    this.virsh = new Virsh(options.runner, options.uri ?? DEFAULT_LIBVIRT_URI, options.virsh ?? 'virsh');
    this.useGuestAgent = options.useGuestAgent ?? true;
    this.agentTimeoutSeconds = options.agentTimeoutSeconds ?? 5;
    if (!(Number.isInteger(this.agentTimeoutSeconds) && this.agentTimeoutSeconds > 0)) {
      throw new HypervisorError(`guest agent timeout must be a whole number of seconds > 0, got ${options.agentTimeoutSeconds}`);
    }
  }

  get uri(): string {
    return this.virsh.uri;
  }

  /** libvirt's push backup (backup-begin), on this driver's connection. */
  liveCopy(): LiveCopyAccess {
    return { via: 'libvirt', runner: this.virsh.runner, uri: this.virsh.uri, virsh: this.virsh.command };
  }

  async listGuests(): Promise<GuestInfo[]> {
    const names = parseNameList((await this.virsh.checked(['list', '--all', '--name'])).stdout);
    const guests: GuestInfo[] = [];
    for (const name of names) {
      const guest = await this.describe(name);
      // A transient domain that went away between `list` and now is simply not a guest any more.
      if (guest) guests.push(guest);
    }
    return guests;
  }

  /** One guest, or undefined if no such domain exists (now). */
  async describe(name: string): Promise<GuestInfo | undefined> {
    const stateResult = await this.virsh.run(['domstate', name]);
    if (stateResult.code !== 0) {
      const err = this.virsh.failure(['domstate', name], stateResult);
      if (isNoSuchDomain(err.reason)) return undefined;
      throw err;
    }
    const state = toGuestState(parseDomState(stateResult.stdout, `virsh domstate ${name}`));
    const liveXml = (await this.virsh.checked(['dumpxml', name])).stdout;
    const live = parseDomainXml(liveXml, `virsh dumpxml ${name}`);
    // For a shut-off domain the live and the persistent definition are the same document.
    const configXml = state === 'shutoff' ? liveXml : (await this.virsh.checked(['dumpxml', '--inactive', name])).stdout;
    return {
      name: live.name,
      ...(live.id !== undefined && state !== 'shutoff' ? { id: live.id } : {}),
      state,
      ...(live.vcpus !== undefined ? { vcpus: live.vcpus } : {}),
      ...(live.memoryMiB !== undefined ? { memoryMiB: live.memoryMiB } : {}),
      ...(live.maxMemoryMiB !== undefined ? { maxMemoryMiB: live.maxMemoryMiB } : {}),
      nics: live.nics,
      // GuestDisk only: the libvirt details stay inside this driver and the backup provider.
      disks: live.disks.map(({ device, path, format, readOnly, cdrom }) => ({
        device, path, format, readOnly, ...(cdrom ? { cdrom } : {}),
      })),
      config: { fileName: `${live.name}.xml`, text: configXml },
    };
  }

  async quiesce(guest: GuestInfo, hooks: GuestHooks = {}, guard?: HoldGuard): Promise<LibvirtQuiesceHandle> {
    if (guest.state === 'shutoff') return { ...nothingToRelease(guest.name), mode: 'none' };
    // Ask again right now: a guest someone else paused must stay paused after the backup.
    const now = toGuestState(parseDomState((await this.virsh.checked(['domstate', guest.name])).stdout, `virsh domstate ${guest.name}`));
    if (now !== 'running') return { ...nothingToRelease(guest.name), mode: 'none' };

    if (hooks.pre) await runGuestHook(this.virsh.runner, hooks.pre, guest.name, 'pre');

    let mode: LibvirtQuiesceMode = 'suspend';
    if (this.useGuestAgent && (await this.agentAnswers(guest.name))) {
      guard?.holding({ argv: this.virsh.argv(['domfsthaw', guest.name]) }); // thawing what is not frozen succeeds
      const frozen = await this.virsh.run(['domfsfreeze', guest.name]);
      if (frozen.code === 0) {
        mode = 'fsfreeze';
      } else {
        // A freeze that failed part way may have frozen some file systems: thaw before suspending.
        await this.virsh.run(['domfsthaw', guest.name]).catch(() => undefined);
      }
    }
    if (mode === 'suspend') {
      guard?.holding({ argv: this.virsh.argv(['resume', guest.name]), alreadyReleased: ALREADY_RUNNING });
      await this.virsh.checked(['suspend', guest.name]);
    }

    const releaseArgs = mode === 'fsfreeze' ? ['domfsthaw', guest.name] : ['resume', guest.name];
    const undo = onceSuccessful(async () => {
      const result = await this.virsh.run(releaseArgs);
      if (result.code === 0) return;
      const err = this.virsh.failure(releaseArgs, result);
      // Someone (the watchdog, an admin) resumed it already: the goal is reached.
      if (mode === 'suspend' && ALREADY_RUNNING.test(err.reason)) return;
      throw err;
    });
    let postHookStarted = false;
    return {
      guest: guest.name,
      quiesced: true,
      mode,
      releaseArgv: this.virsh.argv(releaseArgs),
      release: onceSuccessful(async () => {
        await undo();
        if (hooks.post && !postHookStarted) {
          postHookStarted = true;
          await runGuestHook(this.virsh.runner, hooks.post, guest.name, 'post');
        }
      }),
    };
  }

  /** True when the QEMU guest agent of a running domain answers guest-ping in time. */
  private async agentAnswers(name: string): Promise<boolean> {
    const result = await this.virsh.run(
      ['qemu-agent-command', name, '--timeout', String(this.agentTimeoutSeconds), '{"execute":"guest-ping"}'],
      // virsh enforces --timeout itself; this only guards against a hung virsh.
      { timeoutMs: (this.agentTimeoutSeconds + 30) * 1000 },
    );
    return result.code === 0;
  }
}

/** libvirt's state words mapped onto ferry's three states. */
export function toGuestState(libvirtState: string): GuestState {
  switch (libvirtState) {
    case 'running':
    case 'idle':
    case 'blocked':
    case 'in shutdown':
      return 'running';
    case 'paused':
    case 'pmsuspended':
      // The guest's CPUs do not run, so its disks do not change: nothing to hold still.
      return 'paused';
    case 'shut off':
    case 'crashed':
      return 'shutoff';
    default:
      throw new HypervisorError(`virsh domstate printed an unknown state '${libvirtState}'`);
  }
}

export { VirshError };
