// `health` and `health_timeout` in ferry.conf's [guest."PATTERN"] tables and
// hosts.toml's guest rules: the three kinds of check, the timeout, and one
// line per mistake naming file, line and key.
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/configError';
import { loadFerryConfig, parseFerryConfig, settingsForGuest } from '../../src/config/ferryConfig';
import { parseSiteHosts } from '../../src/site/hostsFile';

const FILE = '/etc/ferry/ferry.conf';

function errorOf(parse: () => unknown): string {
  try {
    parse();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).exitCode).toBe(7);
    expect((err as Error).message).not.toContain('\n');
    return (err as Error).message;
  }
  throw new Error('expected the file to be refused');
}

describe('health in ferry.conf', () => {
  const config = parseFerryConfig([
    '[guest."db*"]',
    'health = { tcp = "10.0.0.5:5432" }',
    'health_timeout = "90s"',
    '[guest."web*"]',
    'health = { serial = "/login: *$/m" }',
    '[guest."web02"]',
    'health = { command = ["curl", "-fs", "http://web02/"] }',
    'health_timeout = "1h"',
  ].join('\n'), FILE);

  it('each kind of check becomes a typed check for the guests it matches, with its timeout', () => {
    expect(settingsForGuest(config, 'db01')).toMatchObject({ health: { kind: 'tcp', host: '10.0.0.5', port: 5432 }, healthTimeoutMs: 90_000 });
    expect(settingsForGuest(config, 'web01').health).toEqual({ kind: 'serial', pattern: '/login: *$/m' });
    expect(settingsForGuest(config, 'web01').healthTimeoutMs).toBeUndefined();
    expect(settingsForGuest(config, 'web02')).toMatchObject({ health: { kind: 'command', argv: ['curl', '-fs', 'http://web02/'] }, healthTimeoutMs: 3_600_000 });
  });

  it('docs/ferry.conf.example shows a serial check', () => {
    const example = loadFerryConfig(path.join(__dirname, '..', '..', 'docs', 'ferry.conf.example'));
    expect(settingsForGuest(example, 'app01')).toMatchObject({ health: { kind: 'serial', pattern: 'login:' }, healthTimeoutMs: 180_000 });
  });

  it('a guest no rule gives a check has none', () => {
    expect(settingsForGuest(config, 'mail01').health).toBeUndefined();
  });

  it('an IPv6 target is written in brackets', () => {
    const v6 = parseFerryConfig('[guest."x"]\nhealth = { tcp = "[fd00::5]:22" }', FILE);
    expect(settingsForGuest(v6, 'x').health).toEqual({ kind: 'tcp', host: 'fd00::5', port: 22 });
  });

  const mistakes: [string, string][] = [
    ['health = "login:"', `${FILE}:3: key 'guest.web.health': expected one of { tcp = "HOST:PORT" }, { serial = "login:" } or { command = ["pg_isready", "-h", "db01"] }, got a string "login:"`],
    ['health = { port = "x" }', `${FILE}:3: key 'guest.web.health.port': unknown key; expected one of tcp, serial, command`],
    ['health = { tcp = "a:1", serial = "x" }', `${FILE}:3: key 'guest.web.health': expected one of { tcp = "HOST:PORT" }, { serial = "login:" } or { command = ["pg_isready", "-h", "db01"] }: exactly one of them, got tcp and serial`],
    ['health = {}', `${FILE}:3: key 'guest.web.health': expected one of { tcp = "HOST:PORT" }, { serial = "login:" } or { command = ["pg_isready", "-h", "db01"] }: exactly one of them, got an empty table`],
    ['health = { tcp = "10.0.0.5" }', `${FILE}:3: key 'guest.web.health.tcp': expected HOST:PORT such as "10.0.0.5:5432" or "[fd00::5]:22", got "10.0.0.5"`],
    ['health = { tcp = "db:70000" }', `${FILE}:3: key 'guest.web.health.tcp': expected a port from 1 to 65535, got 70000`],
    ['health = { serial = "/(unclosed/" }', `${FILE}:3: key 'guest.web.health.serial': expected a text or a valid /regular expression/flags (flags i m s u), but "/(unclosed/": Invalid regular expression: /(unclosed/: Unterminated group`],
    ['health = { command = [] }', `${FILE}:3: key 'guest.web.health.command': expected an array of strings (a command and its arguments, no shell), e.g. ["ssh", "{name}", "sync"] with at least one element, got an empty array`],
    ['health = { command = "pg_isready" }', `${FILE}:3: key 'guest.web.health.command': expected an array of strings (a command and its arguments, no shell), e.g. ["ssh", "{name}", "sync"], got a string "pg_isready"`],
    ['health_timeout = "5 minutes"', `${FILE}:3: key 'guest.web.health_timeout': expected a duration above zero and at most a day, such as "90s", "5m" or "1h", got "5 minutes"`],
    ['health_timeout = "0s"', `${FILE}:3: key 'guest.web.health_timeout': expected a duration above zero and at most a day, such as "90s", "5m" or "1h", got "0s"`],
    ['health_timeout = 300', `${FILE}:3: key 'guest.web.health_timeout': expected a string, got an integer 300`],
    ['helth = { tcp = "a:1" }', `${FILE}:3: key 'guest.web.helth': unknown key; expected one of quiesce, pre_hook, post_hook, snapshot, boot_group, boot_priority, keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_within, keep_tags, health, health_timeout (did you mean 'health'?)`],
  ];
  it.each(mistakes)('%s is refused in one line naming file, line and key', (line, message) => {
    expect(errorOf(() => parseFerryConfig(`# guests\n[guest."web"]\n${line}\n`, FILE))).toBe(message);
  });
});

describe('health in hosts.toml guest rules', () => {
  const HOSTS = [
    '[[host]]', 'name = "new01"', 'hypervisor = "qemu"', 'memory = "8G"', 'cpus = 4',
    '[[host.pool]]', 'name = "images"', 'type = "dir"', 'path = "/srv/images"',
  ].join('\n');

  it('a rule carries its check and timeout beside pin and anti_affinity', () => {
    const site = parseSiteHosts(`${HOSTS}\n[guest."db*"]\npin = "new01"\nhealth = { command = ["pg_isready", "-h", "db01"] }\nhealth_timeout = "10m"\n`, '/etc/ferry/hosts.toml');
    expect(site.rules).toEqual([{ pattern: 'db*', line: 10, pin: 'new01', health: { kind: 'command', argv: ['pg_isready', '-h', 'db01'] }, healthTimeoutMs: 600_000 }]);
  });

  it('a bad check is one line naming file, line and key', () => {
    expect(errorOf(() => parseSiteHosts(`${HOSTS}\n[guest."db*"]\nhealth = { tcp = "db01" }\n`, '/etc/ferry/hosts.toml')))
      .toBe(`/etc/ferry/hosts.toml:11: key 'guest."db*".health.tcp': expected HOST:PORT such as "10.0.0.5:5432" or "[fd00::5]:22", got "db01"`);
  });
});
