// ferry.conf: a valid file becomes a typed config with documented defaults;
// every kind of mistake is one line naming file, line, key and what is expected.
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/configError';
import {
  DEFAULT_CONCURRENCY, isGuestSelected, loadFerryConfig, parseFerryConfig, settingsForGuest, staticDriverGuests,
} from '../../src/config/ferryConfig';
import { matchesGlob } from '../../src/config/glob';
import { useScratch } from '../support/scratch';

const FILE = '/etc/ferry/ferry.conf';
const EXAMPLE = path.join(__dirname, '..', '..', 'docs', 'ferry.conf.example');
const scratch = useScratch('ferry-config');

/** The error a config text gives, as the one line the CLI prints. */
function errorOf(text: string): string {
  try {
    parseFerryConfig(text, FILE);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).exitCode).toBe(7);
    expect((err as Error).message).not.toContain('\n');
    return (err as Error).message;
  }
  throw new Error('expected the config to be refused');
}

describe('a valid ferry.conf', () => {
  it('docs/ferry.conf.example parses into the typed config it documents', () => {
    const config = loadFerryConfig(EXAMPLE);
    expect(config).toMatchObject({
      repository: '/mnt/usb/ferry',
      passwordFile: '/etc/ferry/passphrase',
      concurrency: 2,
      include: ['*'],
      exclude: ['test-*'],
      xen: { configDir: '/etc/xen' },
      libvirt: { uri: 'qemu:///system' },
      qemu: { qmpSockets: ['/run/qemu/app01.qmp', '/run/qemu/app02.qmp'] },
    });
    expect(config.staticGuests).toEqual([
      { name: 'legacy01', disks: ['/srv/images/legacy01.img'], config: '/srv/images/legacy01.cfg' },
      {
        name: 'appliance',
        disks: [{ path: '/srv/images/appliance-root.img', device: 'sda' }, '/srv/images/appliance-data.img'],
        hooks: { pre: ['ssh', 'appliance', 'fsfreeze', '-f', '/srv'], post: ['ssh', 'appliance', 'fsfreeze', '-u', '/srv'] },
      },
    ]);
    expect(settingsForGuest(config, 'db01')).toEqual({
      quiesce: 'fsfreeze',
      hooks: { pre: ['ssh', '{name}', 'mysql', '-e', 'FLUSH TABLES'], post: ['logger', 'ferry: {name} released'] },
      snapshot: 'lvm',
      bootGroup: 0,
      bootPriority: 10,
      retention: { last: 3, daily: 30, weekly: 4, monthly: 6, within: { years: 0, months: 0, days: 2, hours: 0, text: '2d' }, tags: ['keep'] },
    });
  });

  it('docs/ferry.conf.example documents snapshot = "pause" and "shutdown"', () => {
    const config = loadFerryConfig(EXAMPLE);
    expect(settingsForGuest(config, 'files01')).toMatchObject({ quiesce: 'pause', snapshot: 'pause' });
    expect(settingsForGuest(config, 'oldweb3')).toMatchObject({ snapshot: 'shutdown' });
  });

  it('an empty file means the documented defaults', () => {
    const config = parseFerryConfig('', FILE);
    expect(config).toEqual({ file: FILE, concurrency: DEFAULT_CONCURRENCY, include: ['*'], exclude: [], staticGuests: [], guestRules: [] });
    expect(settingsForGuest(config, 'anything')).toEqual({ hooks: {}, bootGroup: 0, bootPriority: 0 });
  });

  it('an empty driver table turns the driver on with its defaults', () => {
    expect(parseFerryConfig('[xen]\n[libvirt]\n', FILE)).toMatchObject({ xen: { configDir: '/etc/xen' }, libvirt: { uri: 'qemu:///system' } });
  });

  it('relative paths are relative to the config file; s3: locations stay as written', () => {
    const config = parseFerryConfig('repository = "repo"\npassword_file = "pw"\n[[static.guest]]\nname = "a"\ndisks = ["img/a.img"]\n', '/srv/ferry/ferry.conf');
    expect(config.repository).toBe('/srv/ferry/repo');
    expect(config.passwordFile).toBe('/srv/ferry/pw');
    expect(config.staticGuests[0]!.disks).toEqual(['/srv/ferry/img/a.img']);
    expect(parseFerryConfig('repository = "s3:https://127.0.0.1:7480/ferry"', FILE).repository).toBe('s3:https://127.0.0.1:7480/ferry');
  });

  it('selects guests by include and exclude patterns, exclude winning', () => {
    const config = parseFerryConfig('include = ["web*", "db0[1-3]"]\nexclude = ["web-test?"]\n', FILE);
    expect(['web01', 'web-test1', 'db02', 'db04', 'mail'].filter((n) => isGuestSelected(config, n))).toEqual(['web01', 'db02']);
    expect(matchesGlob('x.y', 'x?y')).toBe(true);
    expect(matchesGlob('xay', 'x.y')).toBe(false); // `.` is literal
  });

  it('per-guest settings: patterns in file order, then the exact name, whatever order the tables are written in', () => {
    const config = parseFerryConfig([
      '[guest."web01"]', 'boot_priority = 1',
      '[guest."*"]', 'quiesce = "pause"', 'boot_group = 2',
      '[guest."web*"]', 'quiesce = "none"', 'boot_priority = 5',
    ].join('\n'), FILE);
    expect(settingsForGuest(config, 'web01')).toMatchObject({ quiesce: 'none', bootGroup: 2, bootPriority: 1 });
    expect(settingsForGuest(config, 'web02')).toMatchObject({ quiesce: 'none', bootGroup: 2, bootPriority: 5 });
    expect(settingsForGuest(config, 'db01')).toMatchObject({ quiesce: 'pause', bootGroup: 2, bootPriority: 0 });
  });

  it('a static guest without hooks of its own takes those of matching [guest] tables', () => {
    const config = parseFerryConfig([
      '[[static.guest]]', 'name = "old01"', 'disks = ["/a.img"]',
      '[[static.guest]]', 'name = "old02"', 'disks = ["/b.img"]', 'pre_hook = ["own"]',
      '[guest."old*"]', 'pre_hook = ["ssh", "{name}", "sync"]',
    ].join('\n'), FILE);
    expect(staticDriverGuests(config).map((g) => g.hooks)).toEqual([{ pre: ['ssh', '{name}', 'sync'] }, { pre: ['own'] }]);
  });
});

describe('mistakes in ferry.conf', () => {
  it('a TOML syntax error names the line and column', () => {
    expect(errorOf('concurrency = 2\n[libvirt\nuri = "x"\n')).toMatch(new RegExp(`^${FILE}:2: TOML syntax error at column \\d+: \\S`));
    expect(errorOf('concurrency = 2\nrepository = "/mnt/usb\n')).toMatch(new RegExp(`^${FILE}:2: TOML syntax error at column \\d+: `));
  });

  it('an unknown key names its line and the keys that are allowed, with a suggestion', () => {
    expect(errorOf('concurrency = 2\n\nconcurency = 3\n')).toBe(
      `${FILE}:3: key 'concurency': unknown key; expected one of repository, password_file, concurrency, include, exclude, xen, libvirt, qemu, static, guest, retention, memory_limit, nightly (did you mean 'concurrency'?)`,
    );
    expect(errorOf('[libvirt]\n# the daemon\nurl = "qemu:///system"\n')).toBe(`${FILE}:3: key 'libvirt.url': unknown key; expected one of uri (did you mean 'uri'?)`);
  });

  it('a wrong type says what was expected and what was found', () => {
    expect(errorOf('repository = "/r"\nconcurrency = "4"\n')).toBe(`${FILE}:2: key 'concurrency': expected an integer from 1 to 256, got a string "4"`);
    expect(errorOf('[qemu]\nqmp_sockets = "/run/q.qmp"\n')).toBe(`${FILE}:2: key 'qemu.qmp_sockets': expected an array of strings, got a string "/run/q.qmp"`);
    expect(errorOf('include = ["web*", 3]\n')).toBe(`${FILE}:1: key 'include': expected an array of strings, got an integer 3 at position 1`);
    expect(errorOf('xen = "yes"\n')).toBe(`${FILE}:1: key 'xen': expected a table, got a string "yes"`);
  });

  it('a bad value lists the allowed values', () => {
    expect(errorOf('[guest."web*"]\nquiesce = "freeze"\n')).toBe(`${FILE}:2: key 'guest."web*".quiesce': expected one of "pause", "fsfreeze", "none", got "freeze"`);
    expect(errorOf('[guest."db01"]\nsnapshot = "zfs"\n')).toMatch(`${FILE}:2: key 'guest.db01.snapshot': expected one of "lvm", "btrfs", "reflink", "qemu-live", "libvirt-backup", "none", "pause", "shutdown", got "zfs"`);
    expect(errorOf('concurrency = 0\n')).toBe(`${FILE}:1: key 'concurrency': expected an integer from 1 to 256, got 0`);
    expect(errorOf('[guest."*"]\nboot_group = -1\n')).toBe(`${FILE}:2: key 'guest."*".boot_group': expected an integer from 0 to 1000000, got -1`);
    expect(errorOf('exclude = ["web[0-9"]\n')).toBe(`${FILE}:1: key 'exclude': expected guest name patterns, but "web[0-9": '[' without a closing ']'`);
  });

  it('a hook must be an argv array, not a shell string', () => {
    expect(errorOf('[guest."db*"]\n\npre_hook = "ssh db01 sync"\n')).toBe(
      `${FILE}:3: key 'guest."db*".pre_hook': expected an array of strings (a command and its arguments, no shell), e.g. ["ssh", "{name}", "sync"], got a string "ssh db01 sync"`,
    );
    expect(errorOf('[guest."db*"]\npost_hook = []\n')).toMatch(`${FILE}:2: key 'guest."db*".post_hook': expected an array of strings (a command and its arguments, no shell), e.g. ["ssh", "{name}", "sync"] with at least one element, got an empty array`);
  });

  it('mistakes in the second [[static.guest]] point at that guest, past multi-line values', () => {
    const text = [
      '[[static.guest]]', // 1
      'name = "a"', // 2
      'disks = [', // 3
      '  "/a.img",', // 4
      '  "/b.img = not a key",', // 5
      ']', // 6
      'config = """', // 7
      'disks = "inside a string"', // 8
      '"""', // 9
      '[[static.guest]]', // 10
      'name = "b"', // 11
      'disks = "/c.img"', // 12
    ].join('\n');
    expect(errorOf(text)).toBe(`${FILE}:12: key 'static.guest[1].disks': expected a non-empty array of disk paths (or { path = "…", device = "…" } tables), got a string "/c.img"`);
  });

  it('a missing required key names the table it belongs in', () => {
    expect(errorOf('repository = "/r"\n\n[[static.guest]]\ndisks = ["/a.img"]\n')).toBe(
      `${FILE}:3: key 'static.guest[0]': missing key name: every [[static.guest]] needs name = "…"`,
    );
    expect(errorOf('[qemu]\n')).toMatch(`${FILE}:1: key 'qemu': missing key qmp_sockets`);
  });

  it('two static guests with one name are refused at the second', () => {
    expect(errorOf('[[static.guest]]\nname = "a"\ndisks = ["/a"]\n[[static.guest]]\nname = "a"\ndisks = ["/b"]\n')).toBe(
      `${FILE}:5: key 'static.guest[1].name': expected a name not used by another [[static.guest]], but "a" is already static.guest[0]`,
    );
  });

  it('a disk table with a bad device name points at its disks key', () => {
    expect(errorOf('[[static.guest]]\nname = "a"\ndisks = [{ path = "/a.img", device = "xvd a" }]\n')).toBe(
      `${FILE}:3: key 'static.guest[0].disks[0].device': expected a device name of letters, digits and . _ - (e.g. "xvda"), got "xvd a"`,
    );
  });

  it('a config file that cannot be read says so and what to do', () => {
    const missing = scratch.path('nope.conf');
    expect(() => loadFerryConfig(missing)).toThrow(`${missing}: cannot read the config file: no such file or directory (ENOENT); give an existing file with --config`);
  });
});
