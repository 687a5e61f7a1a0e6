// What "healthy" means for one guest after it boots (issue 7 §3, §4): a TCP
// port that accepts, a text or regular expression on its serial console, or
// a command that exits 0. Plain data, so a site plan can carry it as JSON;
// the text forms here are those of ferry.conf and hosts.toml:
//
//   health = { tcp = "10.0.0.5:5432" }       HOST:PORT ([v6]:PORT)
//   health = { serial = "login:" }           a text on the console; "/regex/flags" is a regular expression
//   health = { command = ["pg_isready", "-h", "db01"] }
//   health_timeout = "5m"                    ms, s, m, h; default 5m

import { parseDuration } from '../units/duration';

export type HealthCheck =
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'serial'; pattern: string }
  | { kind: 'command'; argv: string[] };

export const HEALTH_KINDS = ['tcp', 'serial', 'command'] as const;
export const DEFAULT_HEALTH_TIMEOUT_MS = 5 * 60_000;
const MAX_HEALTH_TIMEOUT_MS = 24 * 3_600_000;

/** `HOST:PORT` → its parts, or what is wrong with it. */
export function parseTcpTarget(text: string): { host: string; port: number } | { problem: string } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9._-]+)):(\d{1,5})$/.exec(text.trim());
  if (!m) return { problem: `expected HOST:PORT such as "10.0.0.5:5432" or "[fd00::5]:22", got ${JSON.stringify(text)}` };
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return { problem: `expected a port from 1 to 65535, got ${port}` };
  return { host: m[1] ?? m[2]!, port };
}

/** A serial pattern as a RegExp: `/…/flags` as written, any other text literally. */
export function serialRegExp(pattern: string): RegExp {
  const m = /^\/(.+)\/([imsu]*)$/s.exec(pattern);
  if (m) return new RegExp(m[1]!, m[2]);
  return new RegExp(pattern.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'));
}

/** Why a serial pattern cannot be used (a `/regex/` that does not compile), or undefined. */
export function serialPatternProblem(pattern: string): string | undefined {
  if (pattern === '') return 'expected a non-empty text or /regular expression/';
  try {
    serialRegExp(pattern);
    return undefined;
  } catch (err) {
    return `expected a text or a valid /regular expression/flags (flags i m s u), but ${JSON.stringify(pattern)}: ${(err as Error).message}`;
  }
}

/** `"90s"`, `"5m"`, `"1h"`, `"500ms"` → milliseconds, or undefined when it is none of these (or 0, or over a day). */
export function parseHealthTimeout(text: string): number | undefined {
  const ms = parseDuration(text);
  return ms !== undefined && ms > 0 && ms <= MAX_HEALTH_TIMEOUT_MS ? ms : undefined;
}

/** The check in the words of the config: `tcp 10.0.0.5:5432`, `serial "login:"`, `command pg_isready -h db01`. */
export function describeHealthCheck(check: HealthCheck): string {
  switch (check.kind) {
    case 'tcp': return `tcp ${check.host.includes(':') ? `[${check.host}]` : check.host}:${check.port}`;
    case 'serial': return `serial ${JSON.stringify(check.pattern)}`;
    case 'command': return `command ${check.argv.join(' ')}`;
  }
}
