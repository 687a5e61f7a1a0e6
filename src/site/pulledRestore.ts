// `ferry site restore --pull`: a remote host reads its own guests straight
// from the repository (S3, or a shared mount), so the controller's network
// and CPU are not the bottleneck. The controller runs ferry on the host over
// ssh (`site restore-local --plan -`) and hands it, on stdin and so only
// inside ssh, one line of JSON: the part of the plan for that host, the host
// as a local one, the repository as that host reaches it, and the passphrase
// (never on a command line or in an environment that ps shows). Stdin stays
// open: its end tells the remote run that its controller is gone.
//
// The remote run restores with the same rules as any restore (siteRestore.ts:
// journal, resume, seeds, refusals), keeping its journal on that host, and
// writes the configs there; its log lines come back on stderr, its report as
// one line of JSON on stdout, and the controller merges it into the site
// report. Starting the guests stays with the controller: boot groups span
// hosts, and only the controller sees them all.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { InputError, LockedError, describeSystemError } from '../errors';
import { type CommandRunner, describeCommand } from '../hypervisor/commandRunner';
import { childEnvironment } from '../hypervisor/childEnvironment';
import { processAlive } from '../host/processAlive';
import type { HostDefinition } from './hostsFile';
import type { PlannedGuest, SitePlan } from './sitePlan';
import type { GuestRestoreReport, SiteRestoreOptions } from './siteRestore';
import { SshCommandRunner } from './sshCommandRunner';
import type { MacPolicy } from './guestRewrite';

export const PULL_REQUEST_FORMAT = 'ferry-site-pull-request';
export const PULL_REPORT_FORMAT = 'ferry-site-pull-report';
export const PULL_VERSION = 1;
/** Far above any plan for one host; a stream without a newline by then is not a request. */
const MAX_REQUEST_BYTES = 64 * 1024 * 1024;

/** What the controller sends a host's ferry on stdin (one line of JSON). */
export interface PullRequest {
  format: typeof PULL_REQUEST_FORMAT;
  version: typeof PULL_VERSION;
  /** The repository as the host reaches it. */
  repository: string;
  /** Hex id of the controller's repository: the host must find the same one there. */
  repositoryId: string;
  /** Base64; it exists only in the controller's memory, the ssh channel and the remote process. */
  passphrase: string;
  /** The host's definition, its address made `local`: on the host, every path is its own. */
  host: HostDefinition;
  /** The plan, only this host's guests. */
  plan: SitePlan;
  existing: SiteRestoreOptions['existing'];
  macs: MacPolicy;
  dryRun: boolean;
  /** Guests an earlier run of this plan started (the controller's start journal): running there is expected. */
  startedByThisPlan: string[];
}

/** A guest's report as the remote run gives it, and where that host read it from. */
export interface PulledGuestRestoreReport extends GuestRestoreReport {
  /** The repository the host read this guest from itself (--pull); the controller sent none of its data. */
  pulledFrom: string;
}

export interface PullSettings {
  /** The controller's repository location: what a host without `repository` is told to read. */
  repository: string;
  repositoryId: string;
  passphrase: Buffer;
  existing: SiteRestoreOptions['existing'];
  macs: MacPolicy;
  dryRun: boolean;
  /** This machine's runner (SshCommandRunner wraps it). */
  local: CommandRunner;
  /** ssh client config (`ssh -F`), as for every other ssh command of the restore. */
  sshConfig?: string;
  /** Whether this controller started `guest` on `host` in an earlier run of `plan` (StartJournal). */
  startedByThisPlan: (host: string, guest: PlannedGuest) => boolean;
  log: (line: string) => void;
}

/** The command line that runs the remote side on `host` (its shell reads it). */
export function remoteCommand(host: HostDefinition): string {
  return `${host.ferryCommand ?? 'ferry'} site restore-local --plan -`;
}

/**
 * Restores `guests` on the ssh host `host` by running ferry there. Never
 * throws for a failure of that host: every guest of it then fails with one
 * line saying what happened and what to do; the other hosts go on.
 */
export async function pullHost(host: HostDefinition, guests: PlannedGuest[], plan: SitePlan, settings: PullSettings): Promise<GuestRestoreReport[]> {
  if (host.address.kind !== 'ssh') throw new Error('pullHost: only for ssh hosts');
  const repository = host.repository ?? settings.repository;
  const sshArgs = new SshCommandRunner(host.address, settings.local, settings.sshConfig).sshArgs();
  const command = remoteCommand(host);
  const request: PullRequest = {
    format: PULL_REQUEST_FORMAT,
    version: PULL_VERSION,
    repository,
    repositoryId: settings.repositoryId,
    passphrase: settings.passphrase.toString('base64'),
    host: { ...host, address: { kind: 'local' } },
    plan: { ...plan, guests, unplaced: [] },
    existing: settings.existing,
    macs: settings.macs,
    dryRun: settings.dryRun,
    startedByThisPlan: guests.filter((g) => settings.startedByThisPlan(host.name, g)).map((g) => g.guest),
  };
  const names = guests.map((g) => g.guest).join(', ');
  settings.log(`${host.name}: ${settings.dryRun ? 'would run' : 'running'} ${describeCommand('ssh', [...sshArgs, command])} for ${names}, reading ${repository} there (the plan and the passphrase on its stdin)`);
  const outcome = await runRemote(sshArgs, command, `${JSON.stringify(request)}\n`, (line) => settings.log(line.startsWith(`${host.name}: `) ? line : `${host.name}: ${line}`));
  const failAll = (reason: string): GuestRestoreReport[] => guests.map((g) => failedGuest(g, reason));
  if (outcome.spawnError) return failAll(`cannot start ssh for host ${host.name}: ${outcome.spawnError}; restore without --pull after fixing ssh`);
  const last = outcome.lastStderrLine || 'no message';
  // The remote shell's own statuses: 127 no such command, 126 not executable.
  if ((outcome.code === 127 || outcome.code === 126) && !outcome.report) {
    return failAll(`host ${host.name} has no ferry to run (${last}): install ferry there, or set ferry = "/path/to/ferry" for it in ${host.name}'s [[host]] of the hosts file, or restore without --pull`);
  }
  if (outcome.code === 255 && !outcome.report) {
    return failAll(`cannot reach host ${host.name} over ssh (${last}); check that \`ssh ${host.address.destination}\` works without a prompt, or leave the host out of the plan`);
  }
  if (!outcome.report) {
    return failAll(`ferry on host ${host.name} stopped before it restored anything (exit ${outcome.code ?? outcome.signal}: ${last}); fix that there (it reads the repository as ${repository}: set repository = "…" for it in the hosts file if it reaches it elsewhere), or restore without --pull`);
  }
  const reports = outcome.report;
  return guests.map((g) => {
    const r = reports.find((x) => x.guest === g.guest);
    return r ? { ...r, pulledFrom: repository } : failedGuest(g, `ferry on host ${host.name} reported nothing for ${g.guest} (exit ${outcome.code ?? outcome.signal}: ${last}); run again`);
  });
}

interface RemoteOutcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  spawnError?: string;
  lastStderrLine: string;
  report?: GuestRestoreReport[];
}

function runRemote(sshArgs: string[], command: string, request: string, log: (line: string) => void): Promise<RemoteOutcome> {
  return new Promise((resolve) => {
    const child = spawn('ssh', [...sshArgs, command], { stdio: 'pipe', env: childEnvironment({ LC_ALL: 'C' }) });
    let stdout = '';
    let pending = '';
    let lastStderrLine = '';
    let spawnError: string | undefined;
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString('utf8'); });
    child.stderr.on('data', (d: Buffer) => {
      pending += d.toString('utf8');
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        if (line.trim() === '') continue;
        lastStderrLine = line.trim();
        log(line);
      }
    });
    // The remote end may be gone before it read the request (no ferry there): its exit says why.
    child.stdin.on('error', () => undefined);
    let settled = false;
    child.on('error', (err) => {
      spawnError = describeSystemError(err);
      // ssh never started (no 'close' follows then).
      if (child.pid === undefined && !settled) {
        settled = true;
        resolve({ code: null, signal: null, lastStderrLine, spawnError });
      }
    });
    child.on('close', (code, signal) => {
      if (settled) return;
      settled = true;
      if (pending.trim() !== '') {
        lastStderrLine = pending.trim();
        log(pending);
      }
      resolve({ code, signal, lastStderrLine, ...(spawnError ? { spawnError } : {}), ...parseReport(stdout) });
    });
    // Stdin is left open: its end is how the remote run learns that this controller is gone.
    child.stdin.write(request);
    child.on('exit', () => child.stdin.end());
  });
}

function parseReport(stdout: string): { report?: GuestRestoreReport[] } {
  const line = stdout.split('\n').reverse().find((l) => l.startsWith('{'));
  if (!line) return {};
  try {
    const doc = JSON.parse(line) as { format?: unknown; reports?: unknown };
    return doc.format === PULL_REPORT_FORMAT && Array.isArray(doc.reports) ? { report: doc.reports as GuestRestoreReport[] } : {};
  } catch {
    return {};
  }
}

function failedGuest(g: PlannedGuest, error: string): GuestRestoreReport {
  return { guest: g.guest, host: g.host, restorePoint: g.restorePoint, ok: false, error, disks: [], configFiles: [], notes: [], writtenBytes: 0, durationMs: 0, bootGroup: g.bootGroup };
}

/** The request a controller sent, checked: anything else is refused in one line. */
export function parsePullRequest(text: string): PullRequest {
  let doc: Partial<PullRequest>;
  try {
    doc = JSON.parse(text) as Partial<PullRequest>;
  } catch (err) {
    throw new InputError(`site restore-local: stdin is not a request of 'ferry site restore --pull' (${err instanceof Error ? err.message : String(err)}); this command is run by that one over ssh`);
  }
  if (doc.format !== PULL_REQUEST_FORMAT || doc.version !== PULL_VERSION) {
    throw new InputError(`site restore-local: stdin is not a version ${PULL_VERSION} request of 'ferry site restore --pull'; use the same ferry version on the controller and this host`);
  }
  if (typeof doc.repository !== 'string' || typeof doc.repositoryId !== 'string' || typeof doc.passphrase !== 'string' || !doc.host || !doc.plan || !Array.isArray(doc.plan.guests) || !Array.isArray(doc.startedByThisPlan)) {
    throw new InputError("site restore-local: the request lacks its repository, passphrase, host or plan; use the same ferry version on the controller and this host");
  }
  return doc as PullRequest;
}

/** Reads the request line from `input`; resolves with it, and leaves the stream open (its end means the controller left). */
export function readRequestLine(input: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (d: Buffer | string) => {
      text += d.toString();
      const nl = text.indexOf('\n');
      if (nl >= 0) {
        done();
        resolve(text.slice(0, nl));
      } else if (text.length > MAX_REQUEST_BYTES) {
        done();
        reject(new InputError('site restore-local: no request line on stdin within 64 MiB; this command is run by `ferry site restore --pull` over ssh'));
      }
    };
    const onEnd = () => {
      done();
      reject(new InputError('site restore-local: stdin ended before a whole request; this command is run by `ferry site restore --pull` over ssh'));
    };
    const done = () => {
      input.off('data', onData);
      input.off('end', onEnd);
    };
    input.on('data', onData);
    input.on('end', onEnd);
  });
}

/**
 * One remote run per host at a time: a run whose controller was killed stops
 * when its stdin ends, and a re-run waits for that (up to `waitMs`) rather than
 * write the same partial disks beside it. Returns the release.
 */
export async function holdHostRunLock(dir: string, opts: { waitMs: number }): Promise<() => void> {
  const file = path.join(dir, 'restore-local.pid');
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new InputError(`cannot create the site restore journal directory ${dir}: ${describeSystemError(err)}`, { cause: err });
  }
  const deadline = Date.now() + opts.waitMs;
  for (;;) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: 'wx', mode: 0o600 });
      return () => fs.rmSync(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new InputError(`cannot write ${file}: ${describeSystemError(err)}`, { cause: err });
    }
    const holder = Number(readOrEmpty(file));
    if (!(holder > 0) || !processAlive(holder)) {
      fs.rmSync(file, { force: true }); // its run was killed
      continue;
    }
    if (Date.now() > deadline) {
      throw new LockedError(`another 'ferry site restore-local' (pid ${holder}) is restoring on this host; wait for it to finish, or stop it, and run again`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The holder's pid as written; '' when the file went meanwhile (its holder released it). */
function readOrEmpty(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw new InputError(`cannot read ${file}: ${describeSystemError(err)}`, { cause: err });
  }
}
