// hosts.toml: the fresh hosts a site restore places guests on, their storage
// pools, and placement rules. Checked key by key like ferry.conf: every
// mistake is one line, FILE:LINE: key '…': expected ….
//
//   ssh_config  string   an ssh client config file for every ssh host (`ssh -F`); none: ~/.ssh/config
//   [[host]]
//   name        string   required, unique
//   address     "local" | "ssh://[user@]host[:port]"; "local". ssh is the system
//               client, so ~/.ssh/config, the agent and known_hosts apply
//   hypervisor  "xen" | "libvirt" | "qemu"; required
//   memory      size ("256G") or bytes; required: what guests may use in total
//   cpus        integer; required
//   cpu_overcommit  number ≥ 1; 1: guests' vCPUs may add up to cpus × this
//   bridges     { old = "new" }; bridges not named are kept
//   accel       "kvm" | "tcg"; "kvm". qemu hosts: how the launchers site restore writes run guests
//               (an existing /dev/kvm is no proof that KVM works: say "tcg" where it does not)
//   config_dir  string   absolute; where restored guests' configs go: xen /etc/xen, libvirt
//               /etc/ferry/site/libvirt, qemu /etc/ferry/site/qemu (QMP sockets, serial logs in its run/)
//   ferry       string   (--pull) the command that runs ferry on that host, as its shell reads
//               it: a path, optionally with global options or variables; "ferry" (its PATH)
//   repository  string   (--pull; also top level, for every host) the repository as that host
//               reaches it ("s3:…", or the shared mount's path); default: the controller's --repo
//   [[host.pool]]            at least one per host
//     name      string   unique within the host
//     type      "lvm" | "dir"
//     volume_group  string   (lvm) required
//     thin_pool     string   (lvm) a thin pool LV in the group: volumes are thin
//     path          string   (dir) absolute path on that host; files are sparse
//   [guest."PATTERN"]        placement rules for guests whose name matches
//     pin            string   the host's name: the guest goes there or nowhere
//     anti_affinity  string   a group name: no two guests of one group on one host
//     health, health_timeout   as in ferry.conf's [guest."PATTERN"] (src/health)
import { globProblem, isLiteralGlob } from '../config/glob';
import type { HealthCheck } from '../health/healthCheck';
import { type KeyPath, type Table, TomlChecker, describeValue, parseTomlDocument, readTomlFile } from '../config/tomlChecker';

export const HOST_HYPERVISORS = ['xen', 'libvirt', 'qemu'] as const;
export type HostHypervisor = (typeof HOST_HYPERVISORS)[number];

export type HostAddress = { kind: 'local' } | { kind: 'ssh'; destination: string; port?: number };

export type PoolDefinition =
  | { name: string; type: 'lvm'; volumeGroup: string; thinPool?: string }
  | { name: string; type: 'dir'; path: string };

export interface HostDefinition {
  name: string;
  address: HostAddress;
  hypervisor: HostHypervisor;
  memoryBytes: number;
  cpus: number;
  cpuOvercommit: number;
  /** Where restored guests' configs are written on this host (absolute). */
  configDir: string;
  /** qemu hosts: the accelerator the launchers use. */
  accel: 'kvm' | 'tcg';
  /** Old bridge name → new one. */
  bridges: Record<string, string>;
  pools: PoolDefinition[];
  /** --pull: the command that runs ferry on this host (a shell command line); undefined: `ferry` from its PATH. */
  ferryCommand?: string;
  /** --pull: the repository as this host reaches it (its own `repository`, else the file's); undefined: the controller's. */
  repository?: string;
}

export interface PlacementRule {
  pattern: string;
  /** Line of the table header: rules apply in file order, exact names last. */
  line: number;
  pin?: string;
  antiAffinity?: string;
  health?: HealthCheck;
  healthTimeoutMs?: number;
}

export interface SiteHosts {
  file: string;
  /** Absolute path of the ssh client config to use (`ssh -F`), if the file names one. */
  sshConfig?: string;
  hosts: HostDefinition[];
  rules: PlacementRule[];
}

const TOP_KEYS = ['ssh_config', 'host', 'guest', 'repository'];
const HOST_KEYS = ['name', 'address', 'hypervisor', 'memory', 'cpus', 'cpu_overcommit', 'bridges', 'config_dir', 'accel', 'pool', 'ferry', 'repository'];
const DEFAULT_CONFIG_DIRS: Record<HostHypervisor, string> = { xen: '/etc/xen', libvirt: '/etc/ferry/site/libvirt', qemu: '/etc/ferry/site/qemu' };
const POOL_KEYS = ['name', 'type', 'volume_group', 'thin_pool', 'path'];
const RULE_KEYS = ['pin', 'anti_affinity', 'health', 'health_timeout'];
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export function loadSiteHosts(file: string): SiteHosts {
  return parseSiteHosts(readTomlFile(file, 'hosts file', 'give the hosts file with --hosts (see README, "Disaster recovery")'), file);
}

export function parseSiteHosts(text: string, file: string): SiteHosts {
  return new HostsChecker(text, file).siteHosts(parseTomlDocument(text, file));
}

class HostsChecker extends TomlChecker {
  siteHosts(doc: Table): SiteHosts {
    this.onlyKeys(doc, [], TOP_KEYS);
    if (!Array.isArray(doc.host) || doc.host.length === 0) {
      this.fail([], 'no [[host]] tables: describe at least one target host (name, hypervisor, memory, cpus, one [[host.pool]])');
    }
    const hosts = (doc.host as unknown[]).map((h, i) => this.host(h, ['host', i]));
    hosts.forEach((h, i) => {
      const first = hosts.findIndex((o) => o.name === h.name);
      if (first !== i) this.fail(['host', i, 'name'], `expected a name not used by another [[host]], but ${JSON.stringify(h.name)} is already host[${first}]`);
    });
    const repository = doc.repository === undefined ? undefined : this.repositoryLocation(doc.repository, ['repository']);
    for (const h of hosts) if (h.repository === undefined && repository !== undefined) h.repository = repository;
    const rules = doc.guest === undefined ? [] : this.rules(doc.guest, new Set(hosts.map((h) => h.name)));
    const site: SiteHosts = { file: this.file, hosts, rules };
    if (doc.ssh_config !== undefined) site.sshConfig = this.path(this.string(doc.ssh_config, ['ssh_config']));
    return site;
  }

  private host(value: unknown, at: KeyPath): HostDefinition {
    const t = this.table(value, at);
    this.onlyKeys(t, at, HOST_KEYS);
    for (const key of ['name', 'hypervisor', 'memory', 'cpus', 'pool']) {
      if (t[key] === undefined) this.fail(at, `missing key ${key}${key === 'pool' ? ': every host needs at least one [[host.pool]]' : ''}`);
    }
    const name = this.name(t.name, [...at, 'name']);
    const host: HostDefinition = {
      name,
      address: t.address === undefined ? { kind: 'local' } : this.address(this.string(t.address, [...at, 'address']), [...at, 'address']),
      hypervisor: this.oneOf(t.hypervisor, [...at, 'hypervisor'], HOST_HYPERVISORS),
      memoryBytes: this.byteSize(t.memory, [...at, 'memory']),
      cpus: this.integer(t.cpus, [...at, 'cpus'], 1, 100_000),
      cpuOvercommit: t.cpu_overcommit === undefined ? 1 : this.ratio(t.cpu_overcommit, [...at, 'cpu_overcommit']),
      bridges: t.bridges === undefined ? {} : this.bridges(t.bridges, [...at, 'bridges']),
      configDir: '',
      accel: t.accel === undefined ? 'kvm' : this.oneOf(t.accel, [...at, 'accel'], ['kvm', 'tcg'] as const),
      pools: [],
    };
    host.configDir = t.config_dir === undefined ? DEFAULT_CONFIG_DIRS[host.hypervisor] : this.absolutePath(t.config_dir, [...at, 'config_dir']);
    if (!Array.isArray(t.pool) || t.pool.length === 0) this.fail([...at, 'pool'], `expected [[host.pool]] tables, got ${describeValue(t.pool)}`);
    host.pools = (t.pool as unknown[]).map((p, i) => this.pool(p, [...at, 'pool', i]));
    if (t.ferry !== undefined) host.ferryCommand = this.string(t.ferry, [...at, 'ferry']);
    if (t.repository !== undefined) host.repository = this.repositoryLocation(t.repository, [...at, 'repository']);
    host.pools.forEach((p, i) => {
      if (host.pools.findIndex((o) => o.name === p.name) !== i) this.fail([...at, 'pool', i, 'name'], `expected a pool name not used by another pool of host ${name}, got ${JSON.stringify(p.name)}`);
    });
    return host;
  }

  private pool(value: unknown, at: KeyPath): PoolDefinition {
    const t = this.table(value, at);
    this.onlyKeys(t, at, POOL_KEYS);
    if (t.name === undefined) this.fail(at, 'missing key name');
    if (t.type === undefined) this.fail(at, 'missing key type: "lvm" (with volume_group) or "dir" (with path)');
    const name = this.name(t.name, [...at, 'name']);
    const type = this.oneOf(t.type, [...at, 'type'], ['lvm', 'dir'] as const);
    const other = type === 'lvm' ? ['path'] : ['volume_group', 'thin_pool'];
    for (const key of other) if (t[key] !== undefined) this.fail([...at, key], `not a key of a ${type} pool`);
    if (type === 'lvm') {
      if (t.volume_group === undefined) this.fail(at, 'missing key volume_group: the LVM volume group to create volumes in');
      const pool: PoolDefinition = { name, type, volumeGroup: this.name(t.volume_group, [...at, 'volume_group']) };
      if (t.thin_pool !== undefined) pool.thinPool = this.name(t.thin_pool, [...at, 'thin_pool']);
      return pool;
    }
    if (t.path === undefined) this.fail(at, 'missing key path: the directory on that host to create disk files in');
    return { name, type, path: this.absolutePath(t.path, [...at, 'path']) };
  }

  private rules(value: unknown, hostNames: ReadonlySet<string>): PlacementRule[] {
    const table = this.table(value, ['guest'], 'tables [guest."PATTERN"], e.g. [guest."db*"]');
    const rules = Object.entries(table).map(([pattern, body]): PlacementRule => {
      const at: KeyPath = ['guest', pattern];
      const problem = globProblem(pattern);
      if (problem) this.fail(at, `expected a guest name or pattern, but ${problem}`);
      const t = this.table(body, at);
      this.onlyKeys(t, at, RULE_KEYS);
      const rule: PlacementRule = { pattern, line: this.lines.lineOf(at) ?? 0 };
      if (t.pin !== undefined) {
        const pin = this.string(t.pin, [...at, 'pin']);
        if (!hostNames.has(pin)) this.fail([...at, 'pin'], `expected the name of a [[host]] (${[...hostNames].join(', ')}), got ${JSON.stringify(pin)}`);
        rule.pin = pin;
      }
      if (t.anti_affinity !== undefined) rule.antiAffinity = this.name(t.anti_affinity, [...at, 'anti_affinity']);
      if (t.health !== undefined) rule.health = this.healthCheck(t.health, [...at, 'health']);
      if (t.health_timeout !== undefined) rule.healthTimeoutMs = this.healthTimeout(t.health_timeout, [...at, 'health_timeout']);
      return rule;
    });
    const byLine = (a: PlacementRule, b: PlacementRule) => a.line - b.line;
    return [...rules.filter((r) => !isLiteralGlob(r.pattern)).sort(byLine), ...rules.filter((r) => isLiteralGlob(r.pattern)).sort(byLine)];
  }

  /** As the host reaches it: an s3: location, or an absolute path there (a relative one would be relative to wherever ssh lands). */
  private repositoryLocation(value: unknown, at: KeyPath): string {
    const location = this.string(value, at);
    if (!location.startsWith('s3:') && !location.startsWith('/')) this.fail(at, `expected an s3: location or an absolute path on that host, got ${JSON.stringify(location)}`);
    return location;
  }

  private absolutePath(value: unknown, at: KeyPath): string {
    const dir = this.string(value, at);
    if (!dir.startsWith('/')) this.fail(at, `expected an absolute path on the target host, got ${JSON.stringify(dir)}`);
    return dir.replace(/\/+$/, '') || '/';
  }

  private name(value: unknown, at: KeyPath): string {
    const s = this.string(value, at);
    if (!NAME.test(s)) this.fail(at, `expected a name of letters, digits and . _ - (not starting with . _ -), got ${JSON.stringify(s)}`);
    return s;
  }

  private address(text: string, at: KeyPath): HostAddress {
    if (text === 'local') return { kind: 'local' };
    const m = /^ssh:\/\/((?:[A-Za-z0-9._-]+@)?(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]))(?::(\d{1,5}))?\/?$/.exec(text);
    if (!m) this.fail(at, `expected "local" or "ssh://[user@]host[:port]", got ${JSON.stringify(text)}`);
    const destination = m[1]!.replace(/\[|\]/g, '');
    if (destination.startsWith('-') || destination.includes('@-')) this.fail(at, `expected a host name, got ${JSON.stringify(text)}`);
    const address: HostAddress = { kind: 'ssh', destination };
    if (m[2] !== undefined) {
      const port = Number(m[2]);
      if (port < 1 || port > 65535) this.fail(at, `expected a port from 1 to 65535, got ${port}`);
      address.port = port;
    }
    return address;
  }

  private bridges(value: unknown, at: KeyPath): Record<string, string> {
    const t = this.table(value, at, 'a table of old = "new" bridge names, e.g. { xenbr0 = "br-prod" }');
    const out: Record<string, string> = {};
    for (const [from, to] of Object.entries(t)) out[from] = this.name(to, [...at, from]);
    return out;
  }

  private ratio(value: unknown, at: KeyPath): number {
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 1 || value > 64) this.fail(at, `expected a number from 1 to 64, got ${describeValue(value)}`);
    return value;
  }

  /** `256G`, `1.5T`, `512M` (powers of 1024) or a whole number of bytes. */
  private byteSize(value: unknown, at: KeyPath): number {
    if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0) return value;
    const m = typeof value === 'string' ? /^(\d+(?:\.\d+)?)\s*([KMGTP])(?:i?B)?$/i.exec(value.trim()) : null;
    if (!m) this.fail(at, `expected a size such as "256G" or "1.5T", got ${describeValue(value)}`);
    const bytes = Math.floor(Number(m[1]) * 1024 ** ('KMGTP'.indexOf(m[2]!.toUpperCase()) + 1));
    if (!(bytes > 0) || !Number.isSafeInteger(bytes)) this.fail(at, `expected a size above zero, got ${JSON.stringify(value)}`);
    return bytes;
  }
}
