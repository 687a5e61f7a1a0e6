// Asking a target host's hypervisor whether a guest of a name runs there, and
// starting a restored guest from the config site restore wrote for it:
//
//   xen       runs: `xl list` names it (any state)      start: xl create <dir>/<name>.cfg
//   libvirt   runs: `virsh domstate` says it is active  start: virsh define <dir>/<name>.xml; virsh start <name>
//   qemu      runs: a QEMU process with `-name <name>`, or holding the launcher's QMP socket (ps)
//             start: sh <dir>/<name>.sh (the launcher daemonizes QEMU)
//
// Every command goes through the host's CommandRunner (this machine, or ssh).
// A host without the hypervisor's tool (exit 127, or no such program here)
// runs no guest of that hypervisor; starting one there then fails with that.
import { HypervisorError } from '../errors';
import { type CommandResult, type CommandRunner, describeCommand, lastErrorLine } from '../hypervisor/commandRunner';
import { parseXlList } from '../hypervisor/xen/xlList';
import { DEFAULT_LIBVIRT_URI, isNoSuchDomain, parseDomState, virshErrorText } from '../hypervisor/libvirt/virsh';
import type { HostDefinition } from './hostsFile';

/** Exit status of a shell (and of `env`) that cannot find the program. */
const NOT_FOUND = 127;
/** libvirt states of a domain that is not running (anything else counts as running: paused, blocked, in shutdown, pmsuspended). */
const LIBVIRT_INACTIVE = new Set(['shut off', 'crashed']);

export type GuestPresence =
  | { runs: false }
  | { runs: true; how: string };

/** Runs `cmd`; a program missing on that host gives undefined instead of an error. */
async function runTool(runner: CommandRunner, cmd: string, args: readonly string[]): Promise<CommandResult | undefined> {
  try {
    const r = await runner.run(cmd, args, { timeoutMs: 60_000 });
    return r.code === NOT_FOUND ? undefined : r;
  } catch (err) {
    // This machine's runner rejects a program it cannot find.
    if (err instanceof HypervisorError && (err.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') return undefined;
    throw err;
  }
}

function failure(host: HostDefinition, cmd: string, args: readonly string[], r: CommandResult): HypervisorError {
  return new HypervisorError(`${host.name}: ${describeCommand(cmd, args)} failed (exit ${r.code}): ${lastErrorLine(r.stderr) || lastErrorLine(r.stdout) || 'no message'}`);
}

/** The QEMU launcher's files for `guest` in `runDir` (qemuLaunch names them so). */
export function qemuRunFiles(runDir: string, guest: string): { qmpSocket: string; serialLog: string; pidFile: string } {
  return { qmpSocket: `${runDir}/${guest}.qmp`, serialLog: `${runDir}/${guest}.serial`, pidFile: `${runDir}/${guest}.pid` };
}

/**
 * Whether a QEMU in `ps -eo pid=,args=` output is guest `name` (its `-name`,
 * as QEMU or libvirt passes it: `NAME`, `NAME,…`, `guest=NAME,…`) or holds
 * the QMP socket `qmpSocket`. Arguments are space-joined by ps, so names and
 * paths with spaces are not matched (ferry's launchers allow none).
 */
export function qemuProcessesOf(psOutput: string, name: string, qmpSocket: string): number[] {
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const byName = new RegExp(`(?:^|\\s)-name\\s+(?:guest=)?${esc(name)}(?:,|\\s|$)`);
  const bySocket = new RegExp(`(?:^|\\s|,)(?:unix:|path=)${esc(qmpSocket)}(?:,|\\s|$)`);
  const pids: number[] = [];
  for (const line of psOutput.split('\n')) {
    const m = /^\s*(\d+)\s+(\S+)(.*)$/.exec(line);
    if (!m || !/(^|\/)qemu[^/\s]*$/.test(m[2]!)) continue;
    if (byName.test(m[3]!) || bySocket.test(m[3]!)) pids.push(Number(m[1]));
  }
  return pids;
}

/** Asks `host`'s hypervisor whether guest `name` runs there. Throws when it cannot tell. */
export async function guestPresence(runner: CommandRunner, host: HostDefinition, name: string): Promise<GuestPresence> {
  if (host.hypervisor === 'xen') {
    const r = await runTool(runner, 'xl', ['list']);
    if (!r) return { runs: false };
    if (r.code !== 0) throw failure(host, 'xl', ['list'], r);
    const domain = parseXlList(r.stdout).find((d) => d.name === name);
    return domain ? { runs: true, how: `xl list: domain ${domain.domid}, state ${domain.stateLetters}` } : { runs: false };
  }
  if (host.hypervisor === 'libvirt') {
    const state = await libvirtDomainState(runner, host, name);
    return state === undefined || LIBVIRT_INACTIVE.has(state) ? { runs: false } : { runs: true, how: `virsh domstate: ${state}` };
  }
  const r = await runTool(runner, 'ps', ['-eo', 'pid=,args=']);
  if (!r) throw new HypervisorError(`${host.name}: ps is missing, so ferry cannot tell whether guest ${name} runs there; install procps`);
  if (r.code !== 0) throw failure(host, 'ps', ['-eo', 'pid=,args='], r);
  const pids = qemuProcessesOf(r.stdout, name, qemuRunFiles(`${host.configDir}/run`, name).qmpSocket);
  return pids.length > 0 ? { runs: true, how: `QEMU process ${pids.join(', ')}` } : { runs: false };
}

/**
 * The state of the libvirt domain `name` on `host` (`virsh domstate`: running,
 * shut off, ...), or undefined when libvirt has no domain of that name (or the
 * host no virsh). A shut-off domain is still defined there: `virsh define`
 * would replace it without a word.
 */
export async function libvirtDomainState(runner: CommandRunner, host: HostDefinition, name: string): Promise<string | undefined> {
  const args = ['-c', DEFAULT_LIBVIRT_URI, 'domstate', name];
  const r = await runTool(runner, 'virsh', args);
  if (!r) return undefined;
  if (r.code !== 0) {
    if (isNoSuchDomain(virshErrorText(r))) return undefined;
    throw failure(host, 'virsh', args, r);
  }
  return parseDomState(r.stdout, `virsh domstate ${name}`);
}

/** The commands that start guest `name` from its config file `config` on `host`, in order. */
export function startCommands(host: HostDefinition, name: string, config: string): Array<{ cmd: string; args: string[] }> {
  if (host.hypervisor === 'xen') return [{ cmd: 'xl', args: ['create', config] }];
  if (host.hypervisor === 'libvirt') {
    return [
      { cmd: 'virsh', args: ['-c', DEFAULT_LIBVIRT_URI, 'define', config] },
      { cmd: 'virsh', args: ['-c', DEFAULT_LIBVIRT_URI, 'start', name] },
    ];
  }
  return [{ cmd: 'sh', args: [config] }];
}

/** Starts the guest: each command must succeed; the first that fails says why, in its tool's words. */
export async function startGuest(runner: CommandRunner, host: HostDefinition, name: string, config: string): Promise<void> {
  for (const { cmd, args } of startCommands(host, name, config)) {
    let r: CommandResult;
    try {
      r = await runner.run(cmd, args, { timeoutMs: 120_000 });
    } catch (err) {
      if (err instanceof HypervisorError) throw new HypervisorError(`${host.name}: ${err.message}; install the ${host.hypervisor} tools on that host`, { cause: err });
      throw err;
    }
    if (r.code !== 0) throw failure(host, cmd, args, r);
  }
}
