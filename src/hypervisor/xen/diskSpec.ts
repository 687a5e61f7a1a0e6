// Parser for one xl DISKSPEC string (docs/man/xl-disk-configuration.5),
// mirroring libxlu's flex lexer (tools/libs/util/libxlu_disk_l.l) rule by
// rule, and the defaults xlu_disk_parse applies afterwards. Positional
// parameters are `target, format, vdev, access`; `key=value` and flags may
// appear anywhere; `target=` eats the rest of the string (commas included)
// and so must come last; deprecated prefixes (`phy:`, `file:`, `tap:aio:`,
// `tap:qcow2:`, `raw:`, `iscsi:` ...) are accepted as xl accepts them.
import { InputError } from '../../errors';

export interface XlDiskSpec {
  /** Path or script argument, as written (xl prepends /dev for relative paths later). */
  target: string;
  /** `raw`, `qcow`, `qcow2`, `vhd`, `qed`, or `empty` for an empty CD drive. */
  format: string;
  vdev: string;
  readWrite: boolean;
  cdrom: boolean;
  /** Block script (e.g. `block-iscsi`): the target is then not a host path. */
  script?: string;
  backendType?: string;
  backendDomain?: string;
  /** Other recognised parameters and flags (discard, specification, colo-*, ...). */
  options: Record<string, string | boolean>;
}

/** A spec xl would refuse; the message reads like xl's. Bad input (exit 7) wherever it surfaces. */
export class DiskSpecError extends InputError {
  constructor(readonly reason: string, readonly near: string, readonly spec: string) {
    super(near ? `${reason}: near '${near}' in '${spec}'` : `${reason} in '${spec}'`);
  }
}

const FORMATS = new Set(['raw', 'qcow', 'qcow2', 'vhd', 'empty', 'qed']);
const BACKEND_TYPES = new Set(['phy', 'tap', 'qdisk', 'standalone']);
const SPECIFICATIONS = new Set(['xen', 'virtio']);
const STRING_KEYS = new Set(['backend', 'script', 'colo-host', 'colo-export', 'active-disk', 'hidden-disk']);
const FLAGS: Record<string, [string, boolean]> = {
  'direct-io-safe': ['direct-io-safe', true],
  discard: ['discard', true],
  'no-discard': ['discard', false],
  colo: ['colo', true],
  'no-colo': ['colo', false],
  trusted: ['trusted', true],
  untrusted: ['trusted', false],
};
// Prefixes from xend days: they name a format, a script, or nothing at all.
const FORMAT_PREFIX = /^(raw|qcow2?|vhd):/;
const SCRIPT_PREFIX = /^(iscsi|e?nbd|drbd):/;
const IGNORED_PREFIX = /^(tapdisk|tap2?|aio|ioemu|file|phy):/;
const UNKNOWN_PREFIX = /^[a-z][a-z0-9]*:(?=[^a-z0-9]|$)/;

/** The deprecated prefix (`phy:`, `tap:`, `qcow2:` …) `rest` starts with, as xl would take it; for tools that edit a spec in place. */
export function deprecatedDiskPrefix(rest: string): string | undefined {
  return (FORMAT_PREFIX.exec(rest) ?? SCRIPT_PREFIX.exec(rest) ?? IGNORED_PREFIX.exec(rest))?.[0];
}

/** Whether a comma-separated word of a spec is a flag (`cdrom`, `discard` …) rather than a positional parameter. */
export function isDiskSpecFlag(token: string): boolean {
  return token === 'cdrom' || Object.hasOwn(FLAGS, token);
}

export function parseDiskSpec(spec: string): XlDiskSpec {
  let target: string | undefined;
  let format: string | undefined;
  let vdev: string | undefined;
  let readWrite = true;
  let accessSet = false;
  let cdrom = false;
  let hadDeprecatedPrefix = false;
  let script: string | undefined;
  let backendType: string | undefined;
  let backendDomain: string | undefined;
  const options: Record<string, string | boolean> = {};

  const fail = (reason: string, near: string): never => { throw new DiskSpecError(reason, near, spec); };
  const setFormat = (value: string) => {
    const f = value === '' ? 'raw' : value;
    if (!FORMATS.has(f)) fail('unknown value for format', value);
    if (format !== undefined && format !== f) fail('format respecified', value);
    format = f;
  };
  const setAccess = (value: string) => {
    if (value === 'r' || value === 'ro') readWrite = false;
    else if (value === 'rw' || value === 'w' || value === '') readWrite = true;
    else fail('unknown value for access', value);
  };
  // xl refuses to overwrite a non-empty string value, but an empty one may be replaced.
  const saveOnce = (what: string, current: string | undefined, value: string): string => {
    if (current) fail(`${what} respecified`, value);
    return value;
  };
  // Deprecated `<vdev>:<devtype>` form, e.g. `hdc:cdrom`.
  const vdevAndDevtype = (value: string): boolean => {
    const colon = value.lastIndexOf(':');
    if (colon < 0) return false;
    vdev = saveOnce('vdev', vdev, value.slice(0, colon));
    const devtype = value.slice(colon + 1);
    if (devtype === 'cdrom') cdrom = true;
    else if (devtype === 'disk') cdrom = false;
    else fail('unknown deprecated type', devtype);
    return true;
  };

  let pos = 0;
  while (pos < spec.length) {
    const ws = /^[ \t\n]+/.exec(spec.slice(pos));
    if (ws) { pos += ws[0].length; continue; }
    const rest = spec.slice(pos);

    if (rest.startsWith('target=')) {
      target = saveOnce('target', target, rest.slice('target='.length).replace(/,$/, ''));
      break;
    }
    const prefix = FORMAT_PREFIX.exec(rest) ?? SCRIPT_PREFIX.exec(rest) ?? IGNORED_PREFIX.exec(rest);
    if (prefix) {
      hadDeprecatedPrefix = true;
      const word = prefix[1]!;
      if (FORMAT_PREFIX.test(prefix[0])) setFormat(word);
      else if (SCRIPT_PREFIX.test(prefix[0])) script = saveOnce('script', script, `block-${word}`);
      pos += prefix[0].length;
      continue;
    }
    const unknownPrefix = UNKNOWN_PREFIX.exec(rest);
    if (unknownPrefix) fail('unknown deprecated disk prefix', unknownPrefix[0]);

    const comma = rest.indexOf(',');
    const token = comma < 0 ? rest : rest.slice(0, comma);
    pos += comma < 0 ? rest.length : comma + 1;

    const keyValue = /^([a-z][-a-z0-9_]*)=(.*)$/.exec(token);
    if (keyValue) {
      const [, key, value] = keyValue as unknown as [string, string, string];
      if (key === 'format') setFormat(value);
      else if (key === 'access') setAccess(value);
      else if (key === 'vdev') vdev = saveOnce('vdev', vdev, value);
      else if (key === 'devtype') {
        if (value === 'cdrom') cdrom = true;
        else if (value === 'disk') cdrom = false;
        else fail('unknown value for type', token);
      } else if (key === 'backendtype') {
        if (!BACKEND_TYPES.has(value)) fail('unknown value for backendtype', value);
        backendType = value;
      } else if (key === 'specification') {
        if (!SPECIFICATIONS.has(value)) fail('unknown value for specification', value);
        options[key] = value;
      } else if (key === 'colo-port') {
        if (!(Number.parseInt(value, 10) > 0)) fail('unknown value for colo_port', value);
        options[key] = value;
      } else if (key === 'grant_usage' && (value === '0' || value === '1')) {
        options[key] = value === '1';
      } else if (STRING_KEYS.has(key)) {
        if (key === 'script') script = saveOnce('script', script, value);
        else if (key === 'backend') backendDomain = saveOnce('backend', backendDomain, value);
        else options[key] = saveOnce(key, options[key] as string | undefined, value);
      } else {
        fail('unknown parameter', token);
      }
      continue;
    }
    if (token === 'cdrom') { cdrom = true; continue; }
    const flag = FLAGS[token];
    if (flag) { options[flag[0]] = flag[1]; continue; }
    if (token.includes('=')) fail('bad disk syntax', rest);

    // Positional parameters fill target, format, vdev, access in that order.
    if (target === undefined) {
      target = token;
    } else if (!hadDeprecatedPrefix && format === undefined) {
      if (target === '' && vdevAndDevtype(token)) format = 'empty';
      else setFormat(token);
    } else if (vdev === undefined) {
      if (!vdevAndDevtype(token)) vdev = token;
    } else if (!accessSet) {
      accessSet = true;
      setAccess(token);
    } else {
      fail('too many positional parameters', token);
    }
  }

  if (!vdev) fail('no vdev specified', '');
  // As xlu_disk_parse: CD drives are removable and read-only; no medium means format `empty`.
  if (cdrom) {
    readWrite = false;
    if (!target) format = 'empty';
  }
  return {
    target: target ?? '',
    format: format ?? 'raw',
    vdev: vdev!,
    readWrite,
    cdrom,
    ...(script !== undefined ? { script } : {}),
    ...(backendType !== undefined ? { backendType } : {}),
    ...(backendDomain !== undefined ? { backendDomain } : {}),
    options,
  };
}
