// The [nightly] table of ferry.conf: what `ferry nightly` runs. Checked key by
// key as the rest of ferry.conf is (src/config/ferryConfig.ts): every mistake
// is one line, `FILE:LINE: key 'nightly.x': expected …`.
//
//   [nightly]
//     max_age          string   "26h"; a selected guest without a restore point this young is called out
//     prune_on         string   "sunday"; a weekday (local time), "daily" or "never"
//     check_read_data  string   "5%"; read this share of the packs each night, rotating (every pack
//                               within ceil(100/P) nights); "0%" checks the structure only
//     offsite          [string] []; copy targets (made with `ferry init --from`) synced after the checks
//     offsite_retention "follow" | "keep-all"; "follow": each copy, once synced, forgets by [retention]
//                               and is pruned on prune_on's nights, so a drive does not fill over the years;
//                               "keep-all": a copy only ever grows (an archive)
//     offsite_object_lock_days integer none; S3 Object Lock retention (days, 1…36500) of what the sync
//                               writes to each offsite copy on S3 (a local copy cannot hold a lock; the
//                               repository keeps its own: --object-lock-days, which also wins here)
//     offsite_object_lock_mode "COMPLIANCE" | "GOVERNANCE"; "COMPLIANCE"; with offsite_object_lock_days
//     limit_upload     string   none; bytes per second ("20M") to and from S3 all night (the repository
//     limit_download   string   and copies there): a sync over a shared uplink; --limit-upload/-download win
//     textfile         string   none; a Prometheus textfile-collector file, written atomically
//     notify_webhook   string   none; the JSON report is POSTed here (http/https), with retries
//     notify_command   [string] none; argv, the human report on its stdin (e.g. ["mail", "-s", "ferry", "root"])
//     notify_on        "failure" | "always"; "failure"
//     work_dir         string   "/var/tmp/ferry"; where hypervisor backup jobs write their copies
//     tags             [string] []; tags for the night's restore points
import { parseDuration } from '../units/duration';
import { type KeyPath, type Table, TomlChecker, parseTomlDocument } from '../config/tomlChecker';
import { parseSubsetSpec } from '../check/readDataSubset';
import { parseByteRate } from '../units/byteSize';

export const WEEKDAYS = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'] as const;
export type PruneDay = (typeof WEEKDAYS)[number] | 'daily' | 'never';
export const NOTIFY_ON = ['failure', 'always'] as const;
export const OFFSITE_RETENTION = ['follow', 'keep-all'] as const;
/** storage/backend.ts's OBJECT_LOCK_MODES (nightly/ does not import storage/; the CLI hands the mode on). */
const OBJECT_LOCK_MODES = ['COMPLIANCE', 'GOVERNANCE'] as const;

export interface NightlyConfig {
  /** Whether the file has a [nightly] table at all (the defaults below apply either way). */
  present: boolean;
  maxAgeMs: number;
  /** As written, for the report. */
  maxAgeText: string;
  pruneOn: PruneDay;
  /** Percentage of packs read each night (0: structure only). */
  checkReadDataPercent: number;
  offsite: string[];
  /** Whether an offsite copy forgets by [retention] and is pruned with the repository, or keeps every point. */
  offsiteRetention: (typeof OFFSITE_RETENTION)[number];
  textfile?: string;
  notifyWebhook?: string;
  notifyCommand?: string[];
  notifyOn: (typeof NOTIFY_ON)[number];
  workDir: string;
  tags: string[];
  /** S3 Object Lock retention of what the sync writes to the offsite copies on S3, in days. */
  offsiteObjectLockDays?: number;
  offsiteObjectLockMode?: (typeof OBJECT_LOCK_MODES)[number];
  /** Bandwidth caps, as written (`20M`): --limit-upload / --limit-download's reading. */
  limitUpload?: string;
  limitDownload?: string;
}

const NIGHTLY_KEYS = ['max_age', 'prune_on', 'check_read_data', 'offsite', 'offsite_retention', 'textfile', 'notify_webhook', 'notify_command', 'notify_on', 'work_dir', 'tags', 'offsite_object_lock_days', 'offsite_object_lock_mode', 'limit_upload', 'limit_download'];

/** `26h`, `2d`, `90m` → ms; undefined when it is not such a duration (or zero). */
export function parseAge(text: string): number | undefined {
  const ms = parseDuration(text);
  return ms !== undefined && ms > 0 ? ms : undefined;
}

/** The [nightly] settings of a ferry.conf text (already accepted by parseFerryConfig). */
export function parseNightlyConfig(text: string, file: string): NightlyConfig {
  return new NightlyChecker(text, file).nightly(parseTomlDocument(text, file));
}

class NightlyChecker extends TomlChecker {
  nightly(doc: Table): NightlyConfig {
    const config: NightlyConfig = {
      present: doc.nightly !== undefined,
      maxAgeMs: 26 * 3_600_000,
      maxAgeText: '26h',
      pruneOn: 'sunday',
      checkReadDataPercent: 5,
      offsite: [],
      offsiteRetention: 'follow',
      notifyOn: 'failure',
      workDir: '/var/tmp/ferry',
      tags: [],
    };
    if (doc.nightly === undefined) return config;
    const at: KeyPath = ['nightly'];
    const t = this.table(doc.nightly, at);
    this.onlyKeys(t, at, NIGHTLY_KEYS);
    if (t.max_age !== undefined) {
      const text = this.string(t.max_age, [...at, 'max_age']);
      const ms = parseAge(text);
      if (ms === undefined) this.fail([...at, 'max_age'], `expected a duration such as "26h", "2d" or "90m", got ${JSON.stringify(text)}`);
      config.maxAgeMs = ms;
      config.maxAgeText = text.trim();
    }
    if (t.prune_on !== undefined) config.pruneOn = this.oneOf(t.prune_on, [...at, 'prune_on'], [...WEEKDAYS, 'daily', 'never'] as const);
    if (t.check_read_data !== undefined) {
      const text = this.string(t.check_read_data, [...at, 'check_read_data']);
      const structureOnly = /^0+(\.0+)?%$/.test(text.trim());
      const spec = structureOnly ? undefined : parseSubsetSpec(text);
      if (!structureOnly && spec?.kind !== 'rotating') {
        this.fail([...at, 'check_read_data'], `expected a percentage from 0% to 100% such as "5%" (rotating over the nights), got ${JSON.stringify(text)}`);
      }
      config.checkReadDataPercent = spec?.kind === 'rotating' ? spec.percent : 0;
    }
    if (t.offsite !== undefined) config.offsite = this.stringList(t.offsite, [...at, 'offsite']).map((o, i) => this.location(this.nonEmpty(o, [...at, 'offsite', i])));
    if (t.offsite_retention !== undefined) config.offsiteRetention = this.oneOf(t.offsite_retention, [...at, 'offsite_retention'], OFFSITE_RETENTION);
    if (t.textfile !== undefined) config.textfile = this.path(this.string(t.textfile, [...at, 'textfile']));
    if (t.notify_webhook !== undefined) {
      const url = this.string(t.notify_webhook, [...at, 'notify_webhook']);
      if (!/^https?:\/\/[^\s/]+/.test(url)) this.fail([...at, 'notify_webhook'], `expected an http:// or https:// URL, got ${JSON.stringify(url)}`);
      config.notifyWebhook = url;
    }
    if (t.notify_command !== undefined) {
      const argv = this.stringList(t.notify_command, [...at, 'notify_command'], { nonEmpty: true, argv: true });
      if (argv[0] === '') this.fail([...at, 'notify_command'], 'expected a command as the first element, got an empty string');
      config.notifyCommand = argv;
    }
    if (t.notify_on !== undefined) config.notifyOn = this.oneOf(t.notify_on, [...at, 'notify_on'], NOTIFY_ON);
    if (t.work_dir !== undefined) config.workDir = this.path(this.string(t.work_dir, [...at, 'work_dir']));
    if (t.tags !== undefined) config.tags = this.stringList(t.tags, [...at, 'tags']);
    if (t.offsite_object_lock_days !== undefined) config.offsiteObjectLockDays = this.integer(t.offsite_object_lock_days, [...at, 'offsite_object_lock_days'], 1, 36500);
    if (t.offsite_object_lock_mode !== undefined) {
      const key: KeyPath = [...at, 'offsite_object_lock_mode'];
      if (t.offsite_object_lock_days === undefined) this.fail(key, 'set offsite_object_lock_days too; the mode is for the retention that sets');
      // Any case, as --object-lock-mode takes it.
      const text = this.string(t.offsite_object_lock_mode, key);
      const mode = OBJECT_LOCK_MODES.find((m) => m === text.toUpperCase());
      if (!mode) this.fail(key, `expected one of "COMPLIANCE", "GOVERNANCE", got ${JSON.stringify(text)}`);
      config.offsiteObjectLockMode = mode;
    }
    if (t.limit_upload !== undefined) config.limitUpload = this.rate(t.limit_upload, [...at, 'limit_upload']);
    if (t.limit_download !== undefined) config.limitDownload = this.rate(t.limit_download, [...at, 'limit_download']);
    return config;
  }

  private rate(value: unknown, at: KeyPath): string {
    const text = this.string(value, at);
    if (parseByteRate(text) === undefined) this.fail(at, `expected bytes per second such as "20M" or "500K", got ${JSON.stringify(text)}`);
    return text;
  }
}

/** Whether prune runs on the night starting at `now` (local time). */
export function pruneTonight(pruneOn: PruneDay, now: Date): boolean {
  if (pruneOn === 'daily') return true;
  if (pruneOn === 'never') return false;
  return WEEKDAYS[now.getDay()] === pruneOn;
}

/**
 * Whether an offsite copy that follows [retention] is pruned tonight: on prune nights, and also when its
 * last prune (this host's record) is more than a week old or unknown, since a USB drive may never be
 * mounted on prune_on's weekday. Never with prune_on = "never".
 */
export function copyPruneDue(pruneNight: boolean, pruneOn: PruneDay, lastPrune: string | undefined, now: Date): boolean {
  if (pruneNight) return true;
  if (pruneOn === 'never') return false;
  const last = lastPrune === undefined ? NaN : Date.parse(lastPrune);
  return !(now.getTime() - last <= 7 * 86_400_000);
}
