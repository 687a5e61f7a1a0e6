// Which health check proves a restored guest up, and running it (src/health)
// where the guest's signals are: the hosts file's `[guest."PATTERN"]` rules
// first (a later matching rule overrides an earlier one, exact names last),
// then ferry.conf's settings for the guest. TCP and command checks run on
// this machine; a serial check reads the console log the QEMU launcher
// writes on the guest's host, or the one a restored libvirt domain logs its
// serial console to (the rewritten XML's <log file=>), through ssh and
// `tail -F` for a remote host; a Xen guest's console is read with
// `xl console NAME` on its host.
import { matchesGlob } from '../config/glob';
import { HypervisorError } from '../errors';
import { type HealthCheck, DEFAULT_HEALTH_TIMEOUT_MS, describeHealthCheck } from '../health/healthCheck';
import { type SerialSource, waitForHealth } from '../health/waitForHealth';
import { type CommandRunner, describeCommand } from '../hypervisor/commandRunner';
import { qemuRunFiles } from './guestStart';
import type { HostDefinition, SiteHosts } from './hostsFile';
import type { HealthWaiter } from './siteBoot';
import { SshCommandRunner } from './sshCommandRunner';

export interface GuestHealthSetting {
  check: HealthCheck;
  timeoutMs?: number;
}

/** The guest's health setting from the hosts file's rules, else from `fallback` (ferry.conf), else none. */
export function healthSettingFor(site: SiteHosts, guest: string, fallback?: (guest: string) => GuestHealthSetting | undefined): GuestHealthSetting | undefined {
  let check: HealthCheck | undefined;
  let timeoutMs: number | undefined;
  for (const rule of site.rules) {
    if (!matchesGlob(guest, rule.pattern)) continue;
    if (rule.health) check = rule.health;
    if (rule.healthTimeoutMs !== undefined) timeoutMs = rule.healthTimeoutMs;
  }
  if (!check) return fallback?.(guest);
  return { check, ...(timeoutMs !== undefined ? { timeoutMs } : {}) };
}

/** Where a serial check reads guest `name`'s console on `host`, if ferry knows. */
function serialSource(host: HostDefinition, name: string, timeoutMs: number, local: CommandRunner, sshConfig?: string): SerialSource | undefined {
  if (host.hypervisor === 'xen') {
    const xl = ['xl', 'console', name];
    return { kind: 'command', argv: host.address.kind === 'local' ? xl : ['ssh', ...new SshCommandRunner(host.address, local, sshConfig).sshArgs(), describeCommand(xl[0]!, xl.slice(1))] };
  }
  const log = qemuRunFiles(`${host.configDir}/run`, name).serialLog;
  if (host.address.kind === 'local') return { kind: 'file', path: log };
  // From the first byte, following the file across QEMU reopening it; `timeout` ends it on
  // the host even if ssh's end goes unnoticed there (tail of a quiet log never writes).
  const seconds = String(Math.ceil(timeoutMs / 1000) + 5);
  return { kind: 'command', argv: ['ssh', ...new SshCommandRunner(host.address, local, sshConfig).sshArgs(), describeCommand('timeout', [seconds, 'tail', '-c', '+1', '-F', '--', log])] };
}

/** The check as site restore's boot phase waits for it: passes, or throws saying why not. */
export function healthWaiter(setting: GuestHealthSetting, host: HostDefinition, name: string, local: CommandRunner, sshConfig?: string): HealthWaiter {
  const timeoutMs = setting.timeoutMs ?? DEFAULT_HEALTH_TIMEOUT_MS;
  const serial = setting.check.kind === 'serial' ? serialSource(host, name, timeoutMs, local, sshConfig) : undefined;
  return {
    description: describeHealthCheck(setting.check),
    async wait() {
      const result = await waitForHealth(setting.check, { timeoutMs, ...(serial ? { serial } : {}) });
      if (result.status === 'passed') return;
      if (result.status === 'timed-out') throw new HypervisorError(`${result.check} did not pass within ${Math.round(timeoutMs / 1000)} s: ${result.reason}`);
      throw new HypervisorError(`${result.check} failed: ${result.reason}`);
    },
  };
}
