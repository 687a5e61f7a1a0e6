// Fresh "hypervisor hosts" on this machine for multi-host tests (TESTBED.md,
// "Network and hosts"): each host is a network namespace joined to a bridge in
// the default namespace by a veth pair, with its own address, its own
// hostname (a UTS namespace) and its own sshd (config, host key, pid file,
// port 22 on its address). A per-set client key and a generated ssh config
// make `ssh -F <configFile> new01 true` work without prompts.
//
// The namespaces share the file system: every host gets its own root
// directory (`root`, with a `pool` directory for its dir storage pool).
//
// Everything is torn down at the scratch's clean-up, also when a test failed.
// Names carry the owning process's pid (`ferryhost-<pid>_<n>-<host>`, bridge
// `fhb<pid36>_<n>`, veths `fhv<pid36>_<n>h<i>`), so a later setup removes what
// a killed run left behind, and never touches a live run's hosts.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Scratch } from './scratch';
import { mustRun, runCommand } from './system';

export const HOST_NAMESPACE_PREFIX = 'ferryhost-';
const BRIDGE_PREFIX = 'fhb';
const VETH_PREFIX = 'fhv';
/** Host sets are 10.213.<k>.0/24; the bridge (this machine) is .1, hosts .11, .12, ... */
const SUBNET_BASE = '10.213';
const LOCK_FILE = '/run/ferry-test-hosts.lock';

export interface SshHost {
  /** The name tests use: the ssh config's Host and the host's hostname. */
  name: string;
  /** IPv4 address of the host's eth0 (sshd listens on port 22 there). */
  address: string;
  /** `ssh://root@<address>`, for hosts.toml. */
  url: string;
  /** Network namespace holding the host's network and its processes. */
  namespace: string;
  /** The host's own directory tree (the namespaces share one file system). */
  root: string;
  /** An empty directory for the host's dir storage pool, inside `root`. */
  pool: string;
  sshdPidFile: string;
  sshdLog: string;
}

export interface SshHostSet {
  hosts: SshHost[];
  /** Ssh client config naming every host (User root, key, known hosts, BatchMode). */
  configFile: string;
  /** The client's private key (ed25519, authorised on every host as root). */
  identityFile: string;
  knownHostsFile: string;
  /** Arguments that make the system ssh use this set: `['-F', configFile]`. */
  sshArgs: string[];
  /** Address of this machine on the hosts' bridge (reachable from every host). */
  gatewayAddress: string;
  host(name: string): SshHost;
  /** Runs `command` (one shell string, as ssh does) on `host` through ssh. */
  ssh(host: string, command: string, options?: { input?: string | Buffer; timeoutMs?: number }): Promise<string>;
  /** Removes everything (idempotent; also runs at the scratch's clean-up). */
  teardown(): Promise<void>;
}

let setsMadeByThisProcess = 0;

/**
 * Whether `pid` runs. A zombie counts as gone: PID 1 on the test machines
 * does not always reap orphans, so `kill -0` alone would call them alive.
 */
export function processIsRunning(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) S ..." where comm may hold spaces and parentheses.
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function namespaces(): Promise<string[]> {
  const out = await mustRun('ip', ['netns', 'list']);
  // Lines are "name" or "name (id: N)".
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n !== '');
}

async function linkNames(): Promise<string[]> {
  const out = await mustRun('ip', ['-o', 'link', 'show']);
  // "12: fhb1a2b_1: <...>" or "13: fhv1a2b_1h1@if2: <...>"
  return [...out.matchAll(/^\d+:\s+([^:@\s]+)/gm)].map((m) => m[1]!);
}

/** Kills every process in `namespace` (sshd, and whatever tests started there), then deletes it. */
async function removeNamespace(namespace: string): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const r = await runCommand('ip', ['netns', 'pids', namespace]);
    const pids = r.stdout.split('\n').map(Number).filter((p) => p > 0);
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, attempt < 20 ? 'SIGTERM' : 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await new Promise((res) => setTimeout(res, 100));
  }
  const del = await runCommand('ip', ['netns', 'delete', namespace]);
  if (del.code !== 0 && (await namespaces()).includes(namespace)) {
    throw new Error(`ip netns delete ${namespace} failed: ${del.stderr.trim()}`);
  }
}

async function removeLink(name: string): Promise<void> {
  const r = await runCommand('ip', ['link', 'delete', name]);
  if (r.code !== 0 && (await linkNames()).includes(name)) throw new Error(`ip link delete ${name} failed: ${r.stderr.trim()}`);
}

/**
 * Removes host namespaces, bridges and veths whose owning process is gone (a
 * test run that was killed before its clean-up). Hosts of live processes stay.
 * Returns what it removed.
 */
export async function removeLeftoverHosts(): Promise<string[]> {
  const removed: string[] = [];
  for (const ns of await namespaces()) {
    const m = /^ferryhost-(\d+)_\d+-/.exec(ns);
    if (m && !processIsRunning(Number(m[1]))) {
      await removeNamespace(ns);
      removed.push(ns);
    }
  }
  for (const link of await linkNames()) {
    const m = new RegExp(`^(?:${BRIDGE_PREFIX}|${VETH_PREFIX})([0-9a-z]+)_`).exec(link);
    if (m && !processIsRunning(parseInt(m[1]!, 36))) {
      await removeLink(link);
      removed.push(link);
    }
  }
  return removed;
}

/** A /24 under 10.213 that no interface and no route on this machine uses yet. */
async function freeSubnet(): Promise<string> {
  const used = (await mustRun('ip', ['-o', '-4', 'addr', 'show'])) + (await mustRun('ip', ['-4', 'route', 'show']));
  for (let i = 0; i < 254; i++) {
    const k = ((process.pid + i) % 254) + 1;
    const prefix = `${SUBNET_BASE}.${k}.`;
    if (!used.includes(prefix)) return `${SUBNET_BASE}.${k}`;
  }
  throw new Error(`no free /24 under ${SUBNET_BASE}.0.0/16 for test hosts`);
}

/** Runs `fn` holding an exclusive lock shared by all test runs on this machine. */
async function withHostLock<T>(fn: () => Promise<T>): Promise<T> {
  // flock(1) holds the lock for as long as its child (a `cat` reading a pipe we keep open) lives.
  const holder = spawn('flock', [LOCK_FILE, 'sh', '-c', 'echo locked; exec cat >/dev/null'], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      holder.once('error', reject);
      holder.once('exit', (code) => reject(new Error(`flock ${LOCK_FILE} exited with ${code} before taking the lock`)));
      holder.stdout.once('data', () => resolve());
    });
    return await fn();
  } finally {
    const exited = new Promise((res) => holder.once('close', res));
    holder.stdin.end();
    await exited;
  }
}

function sshdConfig(host: SshHost, dir: string, authorizedKeys: string): string {
  return [
    `# sshd for test host ${host.name} (tests/support/sshHosts.ts)`,
    'Port 22',
    `ListenAddress ${host.address}`,
    `HostKey ${path.join(dir, 'ssh_host_ed25519_key')}`,
    `PidFile ${host.sshdPidFile}`,
    `AuthorizedKeysFile ${authorizedKeys}`,
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    // The scratch tree lives under the world-writable /var/tmp, which StrictModes refuses.
    'StrictModes no',
    'PrintMotd no',
    'UseDNS no',
    'MaxStartups 100:30:200',
    'MaxSessions 100',
    'Subsystem sftp internal-sftp',
    '',
  ].join('\n');
}

function clientConfig(set: { hosts: SshHost[]; identityFile: string; knownHostsFile: string }): string {
  const lines = ['# ssh client config for test hosts (tests/support/sshHosts.ts)'];
  for (const h of set.hosts) lines.push(`Host ${h.name}`, `  HostName ${h.address}`);
  lines.push(
    'Host *',
    '  User root',
    `  IdentityFile ${set.identityFile}`,
    '  IdentitiesOnly yes',
    `  UserKnownHostsFile ${set.knownHostsFile}`,
    '  GlobalKnownHostsFile /dev/null',
    '  StrictHostKeyChecking yes',
    '  BatchMode yes',
    '  ConnectTimeout 20',
    '  LogLevel ERROR',
    '',
  );
  return lines.join('\n');
}

/**
 * Starts one fresh host per name (`['new01', 'new02']`), each reachable by ssh
 * as root, and returns once `ssh <host> true` works on every one. Leftovers of
 * killed runs are removed first. Torn down at `scratch`'s clean-up.
 */
export async function startSshHosts(scratch: Scratch, names: string[], options: { timeoutMs?: number } = {}): Promise<SshHostSet> {
  if (names.length === 0 || names.length > 200) throw new Error(`startSshHosts: between 1 and 200 hosts, got ${names.length}`);
  for (const n of names) {
    if (!/^[a-z][a-z0-9-]{0,30}$/.test(n)) throw new Error(`host name '${n}' must be lower-case letters, digits and '-'`);
  }
  if (new Set(names).size !== names.length) throw new Error(`host names repeat: ${names.join(', ')}`);
  for (const tool of ['/usr/sbin/sshd', '/usr/bin/ssh', '/usr/bin/ssh-keygen']) {
    if (!fs.existsSync(tool)) throw new Error(`${tool} is missing (run: bash scripts/install-test-deps.sh)`);
  }

  const tag = `${process.pid}_${++setsMadeByThisProcess}`;
  const linkTag = `${process.pid.toString(36)}_${setsMadeByThisProcess}`;
  const bridge = `${BRIDGE_PREFIX}${linkTag}`;
  const dir = scratch.mkdir(`ssh-hosts-${setsMadeByThisProcess}`);
  const identityFile = path.join(dir, 'id_ed25519');
  const knownHostsFile = path.join(dir, 'known_hosts');
  const configFile = path.join(dir, 'ssh_config');
  const authorizedKeys = path.join(dir, 'authorized_keys');
  await mustRun('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `ferry-test-${tag}`, '-f', identityFile]);
  fs.copyFileSync(`${identityFile}.pub`, authorizedKeys);
  const emptyBashrc = path.join(dir, 'root-bashrc');
  fs.writeFileSync(emptyBashrc, '');

  const made = { namespaces: [] as string[], links: [] as string[] };
  let tornDown = false;
  const teardown = async (): Promise<void> => {
    if (tornDown) return;
    tornDown = true;
    const errors: unknown[] = [];
    for (const ns of made.namespaces) await removeNamespace(ns).catch((e: unknown) => errors.push(e));
    for (const link of made.links) await removeLink(link).catch((e: unknown) => errors.push(e));
    if (errors.length > 0) throw new AggregateError(errors, `tearing down test hosts ${tag} failed`);
  };
  // Registered before anything exists, so a half-made set is removed too.
  scratch.defer(teardown);

  let subnet = '';
  await withHostLock(async () => {
    await removeLeftoverHosts();
    subnet = await freeSubnet();
    await mustRun('ip', ['link', 'add', bridge, 'type', 'bridge']);
    made.links.push(bridge);
    // Claims the subnet at once, so a concurrent setup sees it as used.
    await mustRun('ip', ['addr', 'add', `${subnet}.1/24`, 'dev', bridge]);
    await mustRun('ip', ['link', 'set', bridge, 'up']);
  });

  const hosts: SshHost[] = [];
  fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const knownHosts: string[] = [];
  for (const [i, name] of names.entries()) {
    const namespace = `${HOST_NAMESPACE_PREFIX}${tag}-${name}`;
    const veth = `${VETH_PREFIX}${linkTag}h${i + 1}`;
    const hostDir = scratch.mkdir(`ssh-hosts-${setsMadeByThisProcess}`, name);
    const root = scratch.mkdir(`ssh-hosts-${setsMadeByThisProcess}`, name, 'root');
    const host: SshHost = {
      name,
      address: `${subnet}.${11 + i}`,
      url: `ssh://root@${subnet}.${11 + i}`,
      namespace,
      root,
      pool: scratch.mkdir(`ssh-hosts-${setsMadeByThisProcess}`, name, 'root', 'pool'),
      sshdPidFile: path.join(hostDir, 'sshd.pid'),
      sshdLog: path.join(hostDir, 'sshd.log'),
    };
    await mustRun('ip', ['netns', 'add', namespace]);
    made.namespaces.push(namespace);
    await mustRun('ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', `${veth}p`]);
    made.links.push(veth);
    await mustRun('ip', ['link', 'set', veth, 'master', bridge, 'up']);
    await mustRun('ip', ['link', 'set', `${veth}p`, 'netns', namespace]);
    const inNs = (args: string[]) => mustRun('ip', ['netns', 'exec', namespace, ...args]);
    await inNs(['ip', 'link', 'set', 'lo', 'up']);
    await inNs(['ip', 'link', 'set', `${veth}p`, 'name', 'eth0']);
    await inNs(['ip', 'addr', 'add', `${host.address}/24`, 'dev', 'eth0']);
    // No default route: a host reaches only its set's subnet (this machine is .1).
    await inNs(['ip', 'link', 'set', 'eth0', 'up']);

    const keyFile = path.join(hostDir, 'ssh_host_ed25519_key');
    await mustRun('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${name}-host-key`, '-f', keyFile]);
    const [keyType, keyText] = fs.readFileSync(`${keyFile}.pub`, 'utf8').trim().split(/\s+/);
    knownHosts.push(`${name},${host.address} ${keyType} ${keyText}`);
    const sshdConfigFile = path.join(hostDir, 'sshd_config');
    fs.writeFileSync(sshdConfigFile, sshdConfig(host, hostDir, authorizedKeys));
    // Its own UTS namespace gives the host its own hostname; sshd daemonises
    // and writes its pid file once it listens. In its own mount namespace,
    // root's ~/.bashrc is empty, as on a fresh host: bash sources it for
    // every command sshd runs, and this machine's (pyenv init) costs ~0.5 s
    // per command, most of a site restore's time in these tests.
    await inNs([
      'unshare', '--uts', '--mount', 'sh', '-c',
      'hostname "$1" && { [ ! -f /root/.bashrc ] || mount --bind "$4" /root/.bashrc; } && exec /usr/sbin/sshd -f "$2" -E "$3"',
      'sh', name, sshdConfigFile, host.sshdLog, emptyBashrc,
    ]);
    hosts.push(host);
  }
  fs.writeFileSync(knownHostsFile, knownHosts.join('\n') + '\n');

  const set: SshHostSet = {
    hosts,
    configFile,
    identityFile,
    knownHostsFile,
    sshArgs: ['-F', configFile],
    gatewayAddress: `${subnet}.1`,
    host(name) {
      const h = hosts.find((x) => x.name === name);
      if (!h) throw new Error(`no test host '${name}' (have ${hosts.map((x) => x.name).join(', ')})`);
      return h;
    },
    ssh(host, command, opts = {}) {
      set.host(host);
      return mustRun('ssh', ['-F', configFile, host, command], { input: opts.input, timeoutMs: opts.timeoutMs ?? 120_000 });
    },
    teardown,
  };
  fs.writeFileSync(configFile, clientConfig(set));

  // Ready when ssh works end to end (sshd may still be starting on a loaded machine).
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  for (const h of hosts) {
    for (;;) {
      const r = await runCommand('ssh', ['-F', configFile, h.name, 'true'], { timeoutMs: 30_000 });
      if (r.code === 0) break;
      if (Date.now() > deadline) {
        const log = fs.existsSync(h.sshdLog) ? fs.readFileSync(h.sshdLog, 'utf8').slice(-500) : '(no sshd log)';
        throw new Error(`test host ${h.name} (${h.address}) not reachable by ssh: ${r.stderr.trim()}; sshd log: ${log}`);
      }
      await new Promise((res) => setTimeout(res, 100));
    }
  }
  return set;
}
