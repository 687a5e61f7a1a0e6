// ferry's own config file, /etc/ferry/ferry.conf (or `--config PATH`), in
// TOML, parsed by smol-toml and checked here key by key. Every mistake is one
// line: `FILE:LINE: key 'x': expected …` (syntax errors come from smol-toml
// with line and column). docs/ferry.conf.example shows every key.
//
// Keys and defaults:
//   repository     string   repository location (path, s3:…); none: --repo / FERRY_REPO
//   password_file  string   none: --password-file / FERRY_PASSWORD(_FILE) / prompt
//   concurrency    integer  2; guests backed up at once (1…256)
//   memory_limit   string   "160M"; peak memory of every command that reads this file: backup --all, nightly, drill, site restore (K, M, G; at least 96M); --memory wins
//   include        [glob]   ["*"]; guest names to back up with --all
//   exclude        [glob]   []; wins over include
//   [xen]                   present = the xl driver is used
//     config_dir   string   "/etc/xen"
//   [libvirt]               present = the virsh driver is used
//     uri          string   "qemu:///system"
//   [qemu]                  present = guests behind QMP sockets are used
//     qmp_sockets  [string] required, at least one
//   [[static.guest]]        one per guest described by hand
//     name         string   required
//     disks        [string | {path, device}] required, at least one
//     config       string   the guest's hypervisor config file, kept in the restore point
//     pre_hook, post_hook   [string] argv, `{name}` replaced; a hook makes the guest count as running
//   [guest."PATTERN"]       per-guest settings for every guest whose name matches PATTERN
//     quiesce      "pause" | "fsfreeze" | "none"   default: the driver's own (pause; libvirt
//                  and qemu use fsfreeze when a guest agent answers)
//     pre_hook, post_hook   [string] argv run around the quiesce, `{name}` replaced; default none
//     snapshot     "lvm" | "btrfs" | "reflink" | "qemu-live" | "libvirt-backup" | "none"; default: automatic
//                  | "pause" (disks read in place, the guest paused throughout) | "shutdown" (read while
//                  shut down, then started again with its config); never chosen automatically
//     boot_group   integer ≥ 0; 0. Site restore boots group 0 first, then 1, …
//     boot_priority integer; 0. Lower boots first within a group
//     keep_*       as in [retention]; a guest's own keys replace those of [retention] (0 turns a rule off)
//     health       { tcp = "HOST:PORT" } | { serial = "text" or "/regex/" } | { command = [argv] }; none.
//                  What proves the guest up after a site restore or a drill (src/health)
//     health_timeout  string  "90s", "5m", "1h"; 5m. How long the health check is retried
//   [retention]             the policy `ferry forget` applies when given no --keep-* option
//     keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly   integer ≥ 0
//     keep_within  string   a duration such as "14d", "2w", "6m", "1y" (back from a guest's newest point)
//     keep_tags    [string] points with one of these tags are kept
//   [nightly]               `ferry nightly`: read by src/nightly/nightlyConfig.ts (keys listed there)
//   When several [guest."…"] tables match a guest, patterns apply first in
//   file order (a later one overrides an earlier one's keys), then a table
//   naming the guest exactly overrides them all.
// Relative paths are taken relative to the config file's directory.
import { parseByteSize } from '../units/byteSize';
import type { GuestHooks } from '../hypervisor/driver';
import type { StaticDiskDefinition, StaticGuestDefinition } from '../hypervisor/static/staticDriver';
import { SNAPSHOT_KINDS, type SnapshotKind } from '../snapshot/choose';
import { type RetentionPolicy, parseRetentionDuration } from '../retention/retentionPolicy';
import type { HealthCheck } from '../health/healthCheck';
import { globProblem, isLiteralGlob, matchesGlob } from './glob';
import { type KeyPath, type Table, TomlChecker, describeValue, parseTomlDocument, readTomlFile } from './tomlChecker';

export const DEFAULT_CONFIG_PATH = '/etc/ferry/ferry.conf';
export const DEFAULT_CONCURRENCY = 2;
export const QUIESCE_MODES = ['pause', 'fsfreeze', 'none'] as const;
export type QuiesceMode = (typeof QUIESCE_MODES)[number];

export interface XenConfig { configDir: string }
export interface LibvirtConfig { uri: string }
export interface QemuConfig { qmpSockets: string[] }

/** Per-guest settings as one `[guest."PATTERN"]` table writes them (only the keys it sets). */
export interface GuestRuleSettings {
  quiesce?: QuiesceMode;
  preHook?: string[];
  postHook?: string[];
  snapshot?: SnapshotKind;
  bootGroup?: number;
  bootPriority?: number;
  retention?: RetentionPolicy;
  health?: HealthCheck;
  healthTimeoutMs?: number;
}

export interface GuestRule {
  pattern: string;
  /** Line of the table header, for messages and ordering. */
  line: number;
  settings: GuestRuleSettings;
}

/** Everything that applies to one guest, defaults filled in. */
export interface GuestSettings {
  /** undefined: the driver's default. */
  quiesce?: QuiesceMode;
  hooks: GuestHooks;
  /** undefined: choose automatically per disk. */
  snapshot?: SnapshotKind;
  bootGroup: number;
  bootPriority: number;
  /** [retention] with the guest's own keep_* keys on top; undefined when neither sets any. */
  retention?: RetentionPolicy;
  /** What proves the guest up after a restore; undefined: none set. */
  health?: HealthCheck;
  /** How long to retry `health`; undefined: not set (callers use DEFAULT_HEALTH_TIMEOUT_MS). */
  healthTimeoutMs?: number;
}

export interface FerryConfig {
  /** The file it came from, as given. */
  file: string;
  repository?: string;
  passwordFile?: string;
  concurrency: number;
  include: string[];
  exclude: string[];
  xen?: XenConfig;
  libvirt?: LibvirtConfig;
  qemu?: QemuConfig;
  staticGuests: StaticGuestDefinition[];
  /** In the order they apply (see the comment at the top). */
  guestRules: GuestRule[];
  retention?: RetentionPolicy;
  /** `memory_limit`, bytes: the memory budget of the data path (workers/memoryBudget.ts). */
  memoryLimit?: number;
}


const TOP_KEYS = ['repository', 'password_file', 'concurrency', 'include', 'exclude', 'xen', 'libvirt', 'qemu', 'static', 'guest', 'retention', 'memory_limit',
  // [nightly] is checked by src/nightly/nightlyConfig.ts (config/ does not import nightly/).
  'nightly'];

/** The smallest memory budget ferry can keep (one worker, smallest buffers); workers/memoryBudget.ts. */
export const MIN_MEMORY_LIMIT = 96 * 1024 * 1024;
/** `160M`, `1G`, `98304K` → bytes; undefined when not a size of at least MIN_MEMORY_LIMIT. */
export function parseMemoryLimit(text: string): number | undefined {
  const bytes = parseByteSize(text);
  return bytes !== undefined && bytes >= MIN_MEMORY_LIMIT ? bytes : undefined;
}
const RETENTION_KEYS = ['keep_last', 'keep_hourly', 'keep_daily', 'keep_weekly', 'keep_monthly', 'keep_yearly', 'keep_within', 'keep_tags'];
const RULE_KEYS = ['quiesce', 'pre_hook', 'post_hook', 'snapshot', 'boot_group', 'boot_priority', ...RETENTION_KEYS, 'health', 'health_timeout'];
const STATIC_GUEST_KEYS = ['name', 'disks', 'config', 'pre_hook', 'post_hook'];

/** Reads and checks a config file. */
export function loadFerryConfig(file: string = DEFAULT_CONFIG_PATH): FerryConfig {
  return parseFerryConfig(readTomlFile(file, 'config file', 'give an existing file with --config'), file);
}

/** Checks config text; `file` names it in messages and anchors relative paths. */
export function parseFerryConfig(text: string, file: string): FerryConfig {
  return new Checker(text, file).config(parseTomlDocument(text, file));
}

/** Whether `--all` backs up the guest: it matches an include pattern and no exclude pattern. */
export function isGuestSelected(config: FerryConfig, name: string): boolean {
  return config.include.some((p) => matchesGlob(name, p)) && !config.exclude.some((p) => matchesGlob(name, p));
}

/** The settings for one guest, from every `[guest."…"]` table that matches it. */
export function settingsForGuest(config: FerryConfig, name: string): GuestSettings {
  const merged: GuestRuleSettings = {};
  let retention: RetentionPolicy | undefined = config.retention;
  for (const rule of config.guestRules) {
    if (!matchesGlob(name, rule.pattern)) continue;
    Object.assign(merged, rule.settings);
    if (rule.settings.retention) retention = { ...retention, ...rule.settings.retention };
  }
  const hooks: GuestHooks = {};
  if (merged.preHook) hooks.pre = merged.preHook;
  if (merged.postHook) hooks.post = merged.postHook;
  const settings: GuestSettings = { hooks, bootGroup: merged.bootGroup ?? 0, bootPriority: merged.bootPriority ?? 0 };
  if (merged.quiesce) settings.quiesce = merged.quiesce;
  if (merged.snapshot) settings.snapshot = merged.snapshot;
  if (retention) settings.retention = retention;
  if (merged.health) settings.health = merged.health;
  if (merged.healthTimeoutMs !== undefined) settings.healthTimeoutMs = merged.healthTimeoutMs;
  return settings;
}

/**
 * The `[[static.guest]]` definitions for the StaticDriver, each with the
 * hooks of the `[guest."…"]` tables that match it when it has none of its
 * own: a static guest with hooks is held by them, so it must know them when
 * it is listed.
 */
export function staticDriverGuests(config: FerryConfig): StaticGuestDefinition[] {
  return config.staticGuests.map((g) => {
    if (g.hooks) return g;
    const { hooks } = settingsForGuest(config, g.name);
    return hooks.pre || hooks.post ? { ...g, hooks } : g;
  });
}

class Checker extends TomlChecker {

  config(doc: Table): FerryConfig {
    this.onlyKeys(doc, [], TOP_KEYS);
    const config: FerryConfig = {
      file: this.file,
      concurrency: DEFAULT_CONCURRENCY,
      include: ['*'],
      exclude: [],
      staticGuests: [],
      guestRules: [],
    };
    if (doc.repository !== undefined) config.repository = this.location(this.string(doc.repository, ['repository']));
    if (doc.password_file !== undefined) config.passwordFile = this.path(this.string(doc.password_file, ['password_file']));
    if (doc.concurrency !== undefined) config.concurrency = this.integer(doc.concurrency, ['concurrency'], 1, 256);
    if (doc.memory_limit !== undefined) {
      const text = this.string(doc.memory_limit, ['memory_limit']);
      config.memoryLimit = parseMemoryLimit(text) ?? this.fail(['memory_limit'], `'${text}' is not a memory size of at least 96M; use K, M or G, e.g. "160M"`);
    }
    if (doc.include !== undefined) config.include = this.patterns(doc.include, ['include']);
    if (doc.exclude !== undefined) config.exclude = this.patterns(doc.exclude, ['exclude']);

    if (doc.xen !== undefined) {
      const xen = this.table(doc.xen, ['xen']);
      this.onlyKeys(xen, ['xen'], ['config_dir']);
      config.xen = { configDir: xen.config_dir === undefined ? '/etc/xen' : this.path(this.string(xen.config_dir, ['xen', 'config_dir'])) };
    }
    if (doc.libvirt !== undefined) {
      const libvirt = this.table(doc.libvirt, ['libvirt']);
      this.onlyKeys(libvirt, ['libvirt'], ['uri']);
      config.libvirt = { uri: libvirt.uri === undefined ? 'qemu:///system' : this.string(libvirt.uri, ['libvirt', 'uri']) };
    }
    if (doc.qemu !== undefined) {
      const qemu = this.table(doc.qemu, ['qemu']);
      this.onlyKeys(qemu, ['qemu'], ['qmp_sockets']);
      if (qemu.qmp_sockets === undefined) this.fail(['qemu'], 'missing key qmp_sockets: list the QMP socket paths of the guests, e.g. qmp_sockets = ["/run/qemu/web01.qmp"]');
      config.qemu = { qmpSockets: this.stringList(qemu.qmp_sockets, ['qemu', 'qmp_sockets'], { nonEmpty: true }).map((p) => this.path(p)) };
    }
    if (doc.static !== undefined) config.staticGuests = this.staticGuests(doc.static);
    if (doc.guest !== undefined) config.guestRules = this.guestRules(doc.guest);
    if (doc.retention !== undefined) {
      const t = this.table(doc.retention, ['retention']);
      this.onlyKeys(t, ['retention'], RETENTION_KEYS);
      config.retention = this.retention(t, ['retention']);
    }
    return config;
  }

  private staticGuests(value: unknown): StaticGuestDefinition[] {
    const table = this.table(value, ['static']);
    this.onlyKeys(table, ['static'], ['guest']);
    if (table.guest === undefined) return [];
    if (!Array.isArray(table.guest)) this.fail(['static', 'guest'], `expected [[static.guest]] tables, got ${describeValue(table.guest)}`);
    const seen = new Map<string, number>();
    return (table.guest as unknown[]).map((entry, i) => {
      const at: KeyPath = ['static', 'guest', i];
      const g = this.table(entry, at);
      this.onlyKeys(g, at, STATIC_GUEST_KEYS);
      if (g.name === undefined) this.fail(at, 'missing key name: every [[static.guest]] needs name = "…"');
      if (g.disks === undefined) this.fail(at, 'missing key disks: list the guest\'s disk images, e.g. disks = ["/srv/vm/web01.img"]');
      const name = this.guestName(g.name, [...at, 'name']);
      const earlier = seen.get(name);
      if (earlier !== undefined) this.fail([...at, 'name'], `expected a name not used by another [[static.guest]], but ${JSON.stringify(name)} is already static.guest[${earlier}]`);
      seen.set(name, i);
      const def: StaticGuestDefinition = { name, disks: this.disks(g.disks, [...at, 'disks']) };
      if (g.config !== undefined) def.config = this.path(this.string(g.config, [...at, 'config']));
      const hooks = this.hooks(g, at);
      if (hooks) def.hooks = hooks;
      return def;
    });
  }

  private disks(value: unknown, at: KeyPath): (string | StaticDiskDefinition)[] {
    if (!Array.isArray(value) || value.length === 0) {
      this.fail(at, `expected a non-empty array of disk paths (or { path = "…", device = "…" } tables), got ${describeValue(value)}`);
    }
    return value.map((d, i) => {
      if (typeof d === 'string') return this.path(this.nonEmpty(d, [...at, i]));
      const t = this.table(d, [...at, i], 'a disk path or a { path = "…", device = "…" } table');
      this.onlyKeys(t, [...at, i], ['path', 'device']);
      if (t.path === undefined) this.fail([...at, i], 'missing key path in the disk table');
      const disk: StaticDiskDefinition = { path: this.path(this.string(t.path, [...at, i, 'path'])) };
      if (t.device !== undefined) {
        const device = this.string(t.device, [...at, i, 'device']);
        if (!/^[A-Za-z0-9._-]+$/.test(device)) this.fail([...at, i, 'device'], `expected a device name of letters, digits and . _ - (e.g. "xvda"), got ${JSON.stringify(device)}`);
        disk.device = device;
      }
      return disk;
    });
  }

  private guestRules(value: unknown): GuestRule[] {
    const table = this.table(value, ['guest'], 'tables [guest."PATTERN"], e.g. [guest."web*"]');
    const rules = Object.entries(table).map(([pattern, body]): GuestRule => {
      const at: KeyPath = ['guest', pattern];
      const problem = globProblem(pattern);
      if (problem) this.fail(at, `expected a guest name or pattern, but ${problem}`);
      const t = this.table(body, at, `a table [guest.${JSON.stringify(pattern)}] of per-guest settings`);
      this.onlyKeys(t, at, RULE_KEYS);
      const settings: GuestRuleSettings = {};
      if (t.quiesce !== undefined) settings.quiesce = this.oneOf(t.quiesce, [...at, 'quiesce'], QUIESCE_MODES);
      if (t.snapshot !== undefined) settings.snapshot = this.oneOf(t.snapshot, [...at, 'snapshot'], SNAPSHOT_KINDS);
      if (t.boot_group !== undefined) settings.bootGroup = this.integer(t.boot_group, [...at, 'boot_group'], 0, 1_000_000);
      if (t.boot_priority !== undefined) settings.bootPriority = this.integer(t.boot_priority, [...at, 'boot_priority'], -1_000_000, 1_000_000);
      if (RETENTION_KEYS.some((k) => t[k] !== undefined)) settings.retention = this.retention(t, at);
      if (t.health !== undefined) settings.health = this.healthCheck(t.health, [...at, 'health']);
      if (t.health_timeout !== undefined) settings.healthTimeoutMs = this.healthTimeout(t.health_timeout, [...at, 'health_timeout']);
      const hooks = this.hooks(t, at);
      if (hooks?.pre) settings.preHook = [...hooks.pre];
      if (hooks?.post) settings.postHook = [...hooks.post];
      return { pattern, line: this.lines.lineOf(at) ?? 0, settings };
    });
    // Patterns in file order, then exact names: the documented precedence.
    const byLine = (a: GuestRule, b: GuestRule) => a.line - b.line;
    return [...rules.filter((r) => !isLiteralGlob(r.pattern)).sort(byLine), ...rules.filter((r) => isLiteralGlob(r.pattern)).sort(byLine)];
  }

  /** The keep_* keys of a table (only those it sets). */
  private retention(t: Table, at: KeyPath): RetentionPolicy {
    const policy: RetentionPolicy = {};
    const counts = [['keep_last', 'last'], ['keep_hourly', 'hourly'], ['keep_daily', 'daily'], ['keep_weekly', 'weekly'], ['keep_monthly', 'monthly'], ['keep_yearly', 'yearly']] as const;
    for (const [key, rule] of counts) if (t[key] !== undefined) policy[rule] = this.integer(t[key], [...at, key], 0, 1_000_000);
    if (t.keep_within !== undefined) {
      const text = this.string(t.keep_within, [...at, 'keep_within']);
      const within = parseRetentionDuration(text);
      if (!within) this.fail([...at, 'keep_within'], `expected a duration such as "14d", "2w", "6m" or "1y", got ${JSON.stringify(text)}`);
      policy.within = within;
    }
    if (t.keep_tags !== undefined) policy.tags = this.stringList(t.keep_tags, [...at, 'keep_tags']);
    return policy;
  }

  private hooks(t: Table, at: KeyPath): GuestHooks | undefined {
    const hooks: GuestHooks = {};
    for (const [key, which] of [['pre_hook', 'pre'], ['post_hook', 'post']] as const) {
      if (t[key] === undefined) continue;
      const argv = this.stringList(t[key], [...at, key], { nonEmpty: true, argv: true });
      if (argv[0] === '') this.fail([...at, key], 'expected a command as the first element, got an empty string');
      hooks[which] = argv;
    }
    return hooks.pre || hooks.post ? hooks : undefined;
  }
}
