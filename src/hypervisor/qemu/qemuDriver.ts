// HypervisorDriver for guests run directly by QEMU, each reachable through
// its QMP socket (`-qmp unix:PATH,server=on,wait=off`); ferry is given the
// list of sockets (config or `--qmp-socket PATH`).
//
// Quiesce: when the guest has a QEMU guest agent channel (found in the QEMU
// command line: a virtserialport named org.qemu.guest_agent.0 on a unix
// socket chardev) and the agent answers, `guest-fsfreeze-freeze` (the guest
// keeps running, its file systems are consistent) and `guest-fsfreeze-thaw`;
// otherwise, or when the freeze fails, QMP `stop` / `cont`: the vCPUs halt,
// the block layer keeps working, so the disks are crash-consistent.
//
// A guest's id is its socket path: that is how quiesce and the qemu-live
// snapshot provider find the guest again.
import { readFile, readdir } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { HypervisorError } from '../../errors';
import { compiledScript } from '../../host/compiledScript';
import { type CommandRunner, ExecFileCommandRunner } from '../commandRunner';
import type { GuestHooks, GuestInfo, GuestNic, GuestState, HoldGuard, HypervisorDriver, LiveCopyAccess, QuiesceHandle, QuiesceOptions } from '../driver';
import { runGuestHook } from '../hooks';
import { hooksOnly, nothingToRelease, onceSuccessful } from '../quiesce';
import { queryDisks } from './qmpBlock';
import { QgaClient } from './qgaClient';
import { QmpClient, type QmpConnectOptions } from './qmpClient';

export interface QemuDriverOptions {
  /** QMP unix sockets, one per guest. */
  sockets: readonly string[];
  /** Runs the per-guest pre/post hooks. Default: real commands. */
  runner?: CommandRunner;
  qmp?: QmpConnectOptions;
  /** Freeze file systems through the guest agent when it answers. Default true; false always stops the guest. */
  useGuestAgent?: boolean;
  /** How long the guest agent may take to answer its sync and ping (default 5 s). */
  agentTimeoutMs?: number;
}

/** How a QEMU guest was held still. */
export type QemuQuiesceMode = 'fsfreeze' | 'pause' | 'none';

export interface QemuQuiesceHandle extends QuiesceHandle {
  readonly mode: QemuQuiesceMode;
}

// Freezing syncs every file system of the guest first: that can take a while on a busy guest.
const FREEZE_TIMEOUT_MS = 120_000;
const THAW_TIMEOUT_MS = 30_000;

interface QmpStatus {
  running: boolean;
  /** `running`, `paused`, `suspended`, `prelaunch`, `inmigrate`, `postmigrate`, `shutdown`, ... */
  status: string;
}

export class QemuDriver implements HypervisorDriver {
  readonly kind = 'qemu';
  readonly sockets: readonly string[];
  private readonly runner: CommandRunner;
  private readonly qmpOptions: QmpConnectOptions;
  private readonly useGuestAgent: boolean;
  private readonly agentTimeoutMs: number;
  /** QMP socket -> guest agent socket (or none), learnt from the QEMU command line by listGuests. */
  private readonly agentSockets = new Map<string, string | undefined>();

  constructor(options: QemuDriverOptions) {
    this.sockets = options.sockets.map((s) => resolve(s));
    this.runner = options.runner ?? new ExecFileCommandRunner();
    this.qmpOptions = options.qmp ?? {};
    this.useGuestAgent = options.useGuestAgent ?? true;
    this.agentTimeoutMs = options.agentTimeoutMs ?? 5000;
  }

  /**
   * One guest per socket. A socket that does not answer is an error naming
   * it: a guest the admin listed must not silently drop out of the backup.
   */
  /** QEMU's own copy jobs (blockdev-backup), over the same QMP sockets. */
  liveCopy(): LiveCopyAccess {
    return { via: 'qmp', sockets: this.sockets };
  }

  async listGuests(): Promise<GuestInfo[]> {
    const guests: GuestInfo[] = [];
    for (const socket of this.sockets) guests.push(await this.describe(socket));
    const seen = new Map<string, string>();
    for (const g of guests) {
      const other = seen.get(g.name);
      if (other) throw new HypervisorError(`QMP sockets ${other} and ${String(g.id)} both belong to a guest named ${g.name}: give each QEMU a unique -name`);
      seen.set(g.name, String(g.id));
    }
    return guests;
  }

  async quiesce(guest: GuestInfo, hooks: GuestHooks = {}, guard?: HoldGuard, options: QuiesceOptions = {}): Promise<QemuQuiesceHandle> {
    const socket = this.socketOf(guest);
    // Ask again right now: a guest someone else paused must stay paused after the backup.
    const status = await QmpClient.with(socket, (c) => c.execute<QmpStatus>('query-status'), this.qmpOptions);
    if (!status.running) return { ...nothingToRelease(guest.name), mode: 'none' };
    if (options.how === 'none') return { ...(await hooksOnly(this.runner, guest.name, hooks)), mode: 'none' };

    if (hooks.pre) await runGuestHook(this.runner, hooks.pre, guest.name, 'pre');

    // Known from listGuests; otherwise read the command line now (a /proc scan, before the pause starts).
    const wantAgent = options.how === 'fsfreeze' || (options.how === undefined && this.useGuestAgent);
    const agent = !wantAgent ? undefined
      : this.agentSockets.has(socket) ? this.agentSockets.get(socket) : agentSocketIn((await findQemuArgv(socket)) ?? []);
    let mode: QemuQuiesceMode = 'pause';
    // Thaw of unfrozen file systems and `cont` of a running guest succeed: the
    // watchdog may safely run either before the hold took effect.
    if (agent) guard?.holding({ argv: agentReleaseArgv(agent) });
    if (agent && (await this.freeze(agent))) mode = 'fsfreeze';
    if (options.how === 'fsfreeze' && mode !== 'fsfreeze') {
      if (hooks.post) await runGuestHook(this.runner, hooks.post, guest.name, 'post');
      throw new HypervisorError(
        agent
          ? `quiesce = "fsfreeze" for guest ${guest.name}: its guest agent (${agent}) did not answer or could not freeze; fix qemu-guest-agent in the guest or use quiesce = "pause"`
          : `quiesce = "fsfreeze" for guest ${guest.name}: its QEMU command line has no guest agent channel (a virtserialport named org.qemu.guest_agent.0 on a unix socket chardev); add one or use quiesce = "pause"`,
      );
    }
    if (mode === 'pause') {
      guard?.holding({ argv: qmpReleaseArgv(socket) });
      // Short connections only: QEMU serves one QMP client at a time, and the
      // snapshot provider and the watchdog's `cont` need the socket while the guest is stopped.
      await QmpClient.with(socket, (c) => c.execute('stop'), this.qmpOptions);
    }

    const undo = onceSuccessful(async () => {
      if (mode === 'fsfreeze') {
        await QgaClient.with(agent!, this.agentTimeoutMs, (c) => c.execute('guest-fsfreeze-thaw', undefined, THAW_TIMEOUT_MS));
      } else {
        await QmpClient.with(socket, (c) => c.execute('cont'), this.qmpOptions);
      }
    });
    let postHookStarted = false;
    return {
      guest: guest.name,
      quiesced: true,
      mode,
      releaseArgv: mode === 'fsfreeze' ? agentReleaseArgv(agent!) : qmpReleaseArgv(socket),
      release: onceSuccessful(async () => {
        await undo();
        if (hooks.post && !postHookStarted) {
          postHookStarted = true;
          await runGuestHook(this.runner, hooks.post, guest.name, 'post');
        }
      }),
    };
  }

  /** Freezes the guest's file systems through its agent; false (nothing frozen) when the agent does not answer or the freeze fails. */
  private async freeze(agent: string): Promise<boolean> {
    try {
      await QgaClient.with(agent, this.agentTimeoutMs, async (c) => {
        await c.execute('guest-ping', undefined, this.agentTimeoutMs);
        await c.execute<number>('guest-fsfreeze-freeze', undefined, FREEZE_TIMEOUT_MS);
      });
      return true;
    } catch {
      // A freeze that failed (or timed out) part way may have frozen some file
      // systems, or may still complete: thaw (the agent runs it after the freeze).
      await QgaClient.with(agent, this.agentTimeoutMs, (c) => c.execute('guest-fsfreeze-thaw', undefined, THAW_TIMEOUT_MS)).catch(() => undefined);
      return false;
    }
  }

  private socketOf(guest: GuestInfo): string {
    if (typeof guest.id === 'string' && this.sockets.includes(guest.id)) return guest.id;
    throw new HypervisorError(
      `guest ${guest.name} is not one of this QEMU driver's guests (id ${String(guest.id)}; sockets: ${this.sockets.join(', ')})`,
    );
  }

  private async describe(socket: string): Promise<GuestInfo> {
    return QmpClient.with(socket, async (c) => {
      const { name } = await c.execute<{ name?: string }>('query-name');
      const status = await c.execute<QmpStatus>('query-status');
      const cpus = await c.execute<unknown[]>('query-cpus-fast');
      const memory = await c.execute<{ 'base-memory': number }>('query-memory-size-summary');
      const disks = (await queryDisks(c)).map((d) => d.disk);
      const nics = await queryNics(c);
      const argv = await findQemuArgv(socket);
      this.agentSockets.set(socket, argv ? agentSocketIn(argv) : undefined);
      const guestName = name ?? basename(socket).replace(/\.(qmp|sock)$/, '');
      return {
        name: guestName,
        id: socket,
        state: stateOf(status),
        vcpus: cpus.length,
        memoryMiB: Math.round(memory['base-memory'] / (1024 * 1024)),
        nics,
        disks,
        // QEMU has no config file: its command line is the guest's definition.
        ...(argv ? { config: { fileName: `${guestName}.qemu-argv.json`, text: JSON.stringify(argv, null, 1) + '\n' } } : {}),
      };
    }, this.qmpOptions);
  }
}

function stateOf(status: QmpStatus): GuestState {
  // Everything that is not executing guest code (paused, suspended, migrating,
  // shut down but kept by -no-shutdown) is "paused" to ferry: the QEMU process exists.
  return status.running ? 'running' : 'paused';
}

async function queryNics(c: QmpClient): Promise<GuestNic[]> {
  try {
    const filters = await c.execute<{ 'main-mac'?: string }[]>('query-rx-filter');
    return filters.map((f) => (f['main-mac'] ? { mac: f['main-mac'] } : {}));
  } catch {
    return []; // a NIC model without rx-filter support: the MAC is then only in the command line
  }
}

/** The command line of the QEMU process serving `socket`, found in /proc; undefined when not visible (other host, hidepid). */
async function findQemuArgv(socket: string): Promise<string[] | undefined> {
  let pids: string[];
  try {
    pids = (await readdir('/proc')).filter((p) => /^\d+$/.test(p));
  } catch {
    return undefined;
  }
  for (const pid of pids) {
    let argv: string[];
    try {
      argv = (await readFile(join('/proc', pid, 'cmdline'), 'utf8')).split('\0');
      if (argv[argv.length - 1] === '') argv.pop(); // every argument ends with NUL
    } catch {
      continue;
    }
    if (!argv[0] || !/qemu/.test(basename(argv[0]))) continue;
    if (argv.some((a) => qmpSocketsIn(a).includes(socket))) return argv;
  }
  return undefined;
}

/** Socket paths in a `-qmp`/`-chardev` argument such as `unix:/run/a.qmp,server=on,wait=off` or `socket,id=m,path=/run/a.qmp`. */
function qmpSocketsIn(arg: string): string[] {
  const found: string[] = [];
  const unix = /^unix:([^,]+)/.exec(arg);
  if (unix?.[1]) found.push(resolve(unix[1]));
  const path = /(?:^|,)path=([^,]+)/.exec(arg);
  if (path?.[1]) found.push(resolve(path[1]));
  return found;
}

/**
 * argv that resumes the guest behind `socket` from a separate process (the
 * watchdog), with no ferry state: `node dist/hypervisor/qemu/qmpCommandMain.js SOCKET cont`.
 */
export function qmpReleaseArgv(socket: string): string[] {
  return [process.execPath, qmpCommandScript(), socket, 'cont'];
}

/** argv that thaws a guest's file systems through its agent socket, for the watchdog. */
export function agentReleaseArgv(agentSocket: string): string[] {
  return [process.execPath, qmpCommandScript(), '--agent', agentSocket, 'guest-fsfreeze-thaw'];
}

/**
 * The guest agent's host socket in a QEMU command line: the unix socket
 * chardev behind the virtserialport named org.qemu.guest_agent.0.
 */
export function agentSocketIn(argv: readonly string[]): string | undefined {
  const values = (flag: string) => argv.flatMap((a, i) => (a === flag && argv[i + 1] !== undefined ? [argv[i + 1]!] : []));
  const option = (spec: string, key: string) => spec.split(',').find((p) => p.startsWith(`${key}=`))?.slice(key.length + 1);
  const port = values('-device').find((d) => d.startsWith('virtserialport') && option(d, 'name') === 'org.qemu.guest_agent.0');
  const chardevId = port ? option(port, 'chardev') : undefined;
  if (!chardevId) return undefined;
  const chardev = values('-chardev').find((c) => c.startsWith('socket,') && option(c, 'id') === chardevId);
  const path = chardev ? option(chardev, 'path') : undefined;
  return path ? resolve(path) : undefined;
}

/** The compiled qmpCommandMain.js (also when this module runs from TypeScript sources under a test runner). */
export function qmpCommandScript(): string {
  return compiledScript('hypervisor/qemu/qmpCommandMain');
}
