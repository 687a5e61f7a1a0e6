// HypervisorDriver for Xen's xl toolstack. Running guests come from
// `xl list` (state) and `xl list -l` (libxl config: the authoritative disk
// list, including hot-plugged disks); shut-off guests come from the config
// files in /etc/xen. Quiesce is `xl pause` / `xl unpause`.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HypervisorError, InputError, UsageError, describeSystemError } from '../../errors';
import type { GuestHooks, GuestInfo, HoldGuard, HypervisorDriver, LiveCopyAccess, QuiesceHandle, QuiesceOptions, ShutdownHandle } from '../driver';
import { type CommandRunner, runChecked } from '../commandRunner';
import { runGuestHook } from '../hooks';
import { hooksOnly, nothingToRelease, onceSuccessful } from '../quiesce';
import { type ConfiguredGuest, guestFromConfig } from './guestConfig';
import { parseXlConfig } from './xlConfig';
import { parseXlList, parseXlListLong } from './xlList';

/**
 * What libxl logs when `xl unpause` finds the domain not paused (Xen's pause
 * count is already zero): the watchdog ran before `xl pause` took effect.
 * Taken from libxl's source (LOGED "Unpausing domain" with EINVAL), not recorded on real Xen.
 */
export const XL_NOT_PAUSED = /Unpausing domain: Invalid argument/;

export interface XenDriverOptions {
  runner: CommandRunner;
  /** Where domain config files live; every `*.cfg` in it is read. Default /etc/xen. */
  configDir?: string;
  /** The xl command. Default `xl`. */
  xl?: string;
}

export class XenDriver implements HypervisorDriver {
  readonly kind = 'xen';
  private readonly runner: CommandRunner;
  private readonly configDir: string;
  private readonly xl: string;

  constructor(options: XenDriverOptions) {
    this.runner = options.runner;
    this.configDir = options.configDir ?? '/etc/xen';
    this.xl = options.xl ?? 'xl';
  }

  /** xl has no live copy job: the generic providers copy Xen disks. */
  liveCopy(): LiveCopyAccess | undefined {
    return undefined;
  }

  async listGuests(): Promise<GuestInfo[]> {
    const domains = parseXlList((await runChecked(this.runner, this.xl, ['list'])).stdout)
      .filter((d) => d.domid !== 0); // Domain-0 is the host itself
    const details = parseXlListLong((await runChecked(this.runner, this.xl, ['list', '-l'])).stdout);
    const configured = await this.readConfigFiles();

    const guests: GuestInfo[] = [];
    for (const domain of domains) {
      const live = details.find((d) => d.domid === domain.domid) ?? details.find((d) => d.name === domain.name);
      const fromFile = configured.get(domain.name);
      configured.delete(domain.name);
      if (!live && !fromFile) {
        throw new HypervisorError(
          `domain ${domain.name} (domid ${domain.domid}) is running but neither xl list -l nor ${this.configDir}/*.cfg describes its disks`,
        );
      }
      const base: ConfiguredGuest = live
        ? {
            name: domain.name,
            ...(live.vcpus !== undefined ? { vcpus: live.vcpus } : {}),
            ...(live.memoryMiB !== undefined ? { memoryMiB: live.memoryMiB } : {}),
            ...(live.maxMemoryMiB !== undefined ? { maxMemoryMiB: live.maxMemoryMiB } : {}),
            nics: live.nics,
            disks: live.disks,
            ...(fromFile?.config ? { config: fromFile.config } : {}),
          }
        : withoutPath(fromFile!);
      guests.push({ ...base, id: domain.domid, state: domain.paused ? 'paused' : 'running' });
    }
    for (const guest of configured.values()) guests.push({ ...withoutPath(guest), state: 'shutoff' });
    return guests;
  }

  async quiesce(guest: GuestInfo, hooks: GuestHooks = {}, guard?: HoldGuard, options: QuiesceOptions = {}): Promise<QuiesceHandle> {
    if (guest.state === 'shutoff') return nothingToRelease(guest.name);
    if (options.how === 'fsfreeze') {
      throw new UsageError(
        `quiesce = "fsfreeze" for Xen guest ${guest.name}: xl has no guest agent channel to freeze file systems; ` +
          'use quiesce = "pause", or pre_hook/post_hook such as ["ssh", "{name}", "fsfreeze", "-f", "/"]',
      );
    }
    if (options.how === 'none') return hooksOnly(this.runner, guest.name, hooks);
    // Ask again right now: a guest someone else paused must stay paused after the backup.
    const [current] = parseXlList((await runChecked(this.runner, this.xl, ['list', guest.name])).stdout);
    if (!current) throw new HypervisorError(`xl list ${guest.name} printed no domain`);
    if (current.paused) return nothingToRelease(guest.name);

    if (hooks.pre) await runGuestHook(this.runner, hooks.pre, guest.name, 'pre');
    guard?.holding({ argv: [this.xl, 'unpause', guest.name], alreadyReleased: XL_NOT_PAUSED });
    await runChecked(this.runner, this.xl, ['pause', guest.name]);

    const unpause = onceSuccessful(async () => { await runChecked(this.runner, this.xl, ['unpause', guest.name]); });
    let postHookStarted = false;
    return {
      guest: guest.name,
      quiesced: true,
      releaseArgv: [this.xl, 'unpause', guest.name],
      release: onceSuccessful(async () => {
        await unpause();
        if (hooks.post && !postHookStarted) {
          postHookStarted = true;
          await runGuestHook(this.runner, hooks.post, guest.name, 'post');
        }
      }),
    };
  }

  /**
   * `xl shutdown -w NAME` (a clean shutdown through the PV control interface,
   * waiting until the domain has shut down); the handle runs `xl create CFG`
   * with the guest's config file in the config directory. Refused before
   * anything happens when no config file defines the guest (it could not be
   * started again) or the guest is paused (it could not shut down).
   */
  async shutDown(guest: GuestInfo, guard?: HoldGuard): Promise<ShutdownHandle> {
    const cfg = (await this.readConfigFiles()).get(guest.name)?.path;
    if (!cfg) {
      throw new HypervisorError(
        `guest ${guest.name}: no config file in ${this.configDir} defines it, so after a shutdown ferry could not start it again; ` +
          'put its cfg there (or set [xen] config_dir), or use snapshot = "pause"',
      );
    }
    const [current] = parseXlList((await runChecked(this.runner, this.xl, ['list', guest.name])).stdout);
    if (!current) throw new HypervisorError(`xl list ${guest.name} printed no domain`);
    if (current.paused) throw new HypervisorError(`guest ${guest.name} is paused: it cannot shut down for its backup; unpause it or use snapshot = "pause"`);
    const startArgv = [this.xl, 'create', cfg];
    // Armed before the shutdown: a ferry killed from here on leaves the watchdog to start the guest (it retries while the domain still exists).
    // The watchdog waits until the domain is gone (xl destroys it a moment after the shutdown, or
    // much later for a slow guest), then creates it again.
    guard?.holding({ argv: startArgv, waitUntil: { argv: [this.xl, 'list', guest.name], output: /invalid domain identifier/ } });
    await runChecked(this.runner, this.xl, ['shutdown', '-w', guest.name]);
    return {
      guest: guest.name,
      startArgv,
      start: onceSuccessful(async () => { await runChecked(this.runner, this.xl, ['create', cfg]); }),
    };
  }

  /** Guests defined by `<configDir>/*.cfg`, by name, with the file's path. A missing directory means none. */
  private async readConfigFiles(): Promise<Map<string, ConfiguredGuest & { path: string }>> {
    let files: string[];
    try {
      files = (await readdir(this.configDir)).filter((f) => f.endsWith('.cfg')).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
      throw new InputError(`cannot read ${this.configDir}: ${describeSystemError(err)}`, { cause: err });
    }
    const byName = new Map<string, ConfiguredGuest & { path: string }>();
    const fileOf = new Map<string, string>();
    for (const file of files) {
      const path = join(this.configDir, file);
      const guest = guestFromConfig(parseXlConfig(await readFile(path, 'utf8'), path));
      const earlier = fileOf.get(guest.name);
      if (earlier) throw new InputError(`${path}: guest name ${guest.name} is already defined in ${earlier}`);
      fileOf.set(guest.name, path);
      byName.set(guest.name, { ...guest, path });
    }
    return byName;
  }
}

function withoutPath(guest: ConfiguredGuest & { path: string }): ConfiguredGuest {
  const { path: _path, ...rest } = guest;
  return rest;
}
