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
import type { GuestHooks, GuestInfo, GuestState, HoldGuard, HypervisorDriver, LiveCopyAccess, QuiesceHandle, QuiesceOptions, ShutdownHandle } from '../driver';

/** virsh resume of a guest that runs: someone (the watchdog, an admin) resumed it, or it was never suspended. */
const ALREADY_RUNNING = /domain is already running/;
import type { CommandRunner } from '../commandRunner';
import { runGuestHook } from '../hooks';
import { hooksOnly, nothingToRelease, onceSuccessful } from '../quiesce';
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
  /** How long a guest may take to shut down for a backup (snapshot = "shutdown"), in ms. Default 5 minutes. */
  shutdownTimeoutMs?: number;
  /** How often its state is asked while it shuts down, in ms. Default 1000. */
  shutdownPollMs?: number;
}

/** virsh start of a domain that runs: the watchdog (or an admin) started it already. */
const ALREADY_ACTIVE = /Domain is already active|domain is already running/;

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
  private readonly shutdownTimeoutMs: number;
  private readonly shutdownPollMs: number;

  constructor(options: LibvirtDriverOptions) {
    this.shutdownTimeoutMs = options.shutdownTimeoutMs ?? 300_000;
    this.shutdownPollMs = options.shutdownPollMs ?? 1000;
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

  async quiesce(guest: GuestInfo, hooks: GuestHooks = {}, guard?: HoldGuard, options: QuiesceOptions = {}): Promise<LibvirtQuiesceHandle> {
    if (guest.state === 'shutoff') return { ...nothingToRelease(guest.name), mode: 'none' };
    // Ask again right now: a guest someone else paused must stay paused after the backup.
    const now = toGuestState(parseDomState((await this.virsh.checked(['domstate', guest.name])).stdout, `virsh domstate ${guest.name}`));
    if (now !== 'running') return { ...nothingToRelease(guest.name), mode: 'none' };
    if (options.how === 'none') return { ...(await hooksOnly(this.virsh.runner, guest.name, hooks)), mode: 'none' };

    if (hooks.pre) await runGuestHook(this.virsh.runner, hooks.pre, guest.name, 'pre');

    let mode: LibvirtQuiesceMode = 'suspend';
    const tryFreeze = options.how === 'fsfreeze' || (options.how === undefined && this.useGuestAgent);
    if (tryFreeze && (await this.agentAnswers(guest.name))) {
      guard?.holding({ argv: this.virsh.argv(['domfsthaw', guest.name]) }); // thawing what is not frozen succeeds
      const frozen = await this.virsh.run(['domfsfreeze', guest.name]);
      if (frozen.code === 0) {
        mode = 'fsfreeze';
      } else {
        // A freeze that failed part way may have frozen some file systems: thaw before suspending.
        await this.virsh.run(['domfsthaw', guest.name]).catch(() => undefined);
        if (options.how === 'fsfreeze') {
          await this.postHookAfterFailedHold(guest.name, hooks);
          throw new HypervisorError(`quiesce = "fsfreeze" for guest ${guest.name}: ${this.virsh.failure(['domfsfreeze', guest.name], frozen).message}; fix the guest agent or use quiesce = "pause"`);
        }
      }
    } else if (options.how === 'fsfreeze') {
      await this.postHookAfterFailedHold(guest.name, hooks);
      throw new HypervisorError(
        `quiesce = "fsfreeze" for guest ${guest.name}: its QEMU guest agent does not answer (virsh qemu-agent-command guest-ping); ` +
          'install and start qemu-guest-agent in the guest with a guest agent channel, or use quiesce = "pause"',
      );
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

  /** The pre hook ran but no hold followed: its post hook must still run. */
  private async postHookAfterFailedHold(guest: string, hooks: GuestHooks): Promise<void> {
    if (hooks.post) await runGuestHook(this.virsh.runner, hooks.post, guest, 'post');
  }

  /**
   * `virsh shutdown` (ACPI power button or agent, as libvirt chooses), then
   * `domstate` every second until the domain is shut off; the handle runs
   * `virsh start`. Refused before anything happens for a transient domain
   * (libvirt forgets it when it stops) or one not running.
   */
  async shutDown(guest: GuestInfo, guard?: HoldGuard): Promise<ShutdownHandle> {
    const info = (await this.virsh.checked(['dominfo', guest.name])).stdout;
    if (!/^Persistent:\s+yes$/m.test(info)) {
      throw new HypervisorError(`guest ${guest.name} is a transient libvirt domain: once shut down it could not be started again; define it (virsh define) or use snapshot = "pause"`);
    }
    const now = toGuestState(parseDomState((await this.virsh.checked(['domstate', guest.name])).stdout, `virsh domstate ${guest.name}`));
    if (now !== 'running') throw new HypervisorError(`guest ${guest.name} is ${now}: it cannot shut down for its backup; resume it or use snapshot = "pause"`);
    const startArgs = ['start', guest.name];
    // No "already active counts as released" here: a guest still shutting down is active too. The
    // watchdog waits until libvirt says shut off (up to 30 min), then starts it.
    guard?.holding({ argv: this.virsh.argv(startArgs), waitUntil: { argv: this.virsh.argv(['domstate', guest.name]), output: /^shut off/m } });
    await this.virsh.checked(['shutdown', guest.name]);
    const deadline = Date.now() + this.shutdownTimeoutMs;
    for (;;) {
      const state = parseDomState((await this.virsh.checked(['domstate', guest.name])).stdout, `virsh domstate ${guest.name}`);
      if (state === 'shut off') break;
      if (Date.now() > deadline) {
        throw new HypervisorError(
          `guest ${guest.name} did not shut down within ${this.shutdownTimeoutMs / 1000} s of virsh shutdown (still ${state}); ` +
            'its disks were not read; make it react to the ACPI power button (acpid, systemd-logind) or its guest agent, or use snapshot = "pause"',
        );
      }
      await new Promise((r) => setTimeout(r, this.shutdownPollMs));
    }
    return {
      guest: guest.name,
      startArgv: this.virsh.argv(startArgs),
      start: onceSuccessful(async () => {
        const result = await this.virsh.run(startArgs);
        if (result.code === 0) return;
        const err = this.virsh.failure(startArgs, result);
        if (ALREADY_ACTIVE.test(err.reason)) return; // the watchdog or an admin started it
        throw err;
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
