// Telling someone: the JSON report POSTed to a webhook (retried with backoff:
// a chat server restarting at 2 a.m. must not swallow the night's news) and/or
// the human report on a command's stdin (mail). A failed notification is
// reported; it changes nothing that was done.
import { spawn } from 'node:child_process';
import { childEnvironment } from '../hypervisor/childEnvironment';
import type { NotificationResult } from './report';

export interface WebhookOptions {
  /** Tries in all (default 4). */
  attempts?: number;
  /** Wait before the first retry; doubled for each next one (default 2 s). */
  firstDelayMs?: number;
  /** Per attempt (default 15 s). */
  timeoutMs?: number;
}

export async function postWebhook(url: string, body: string, opts: WebhookOptions = {}): Promise<NotificationResult> {
  const attempts = opts.attempts ?? 4;
  let delay = opts.firstDelayMs ?? 2000;
  let error = '';
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'ferry-nightly' },
        body,
        signal: AbortSignal.timeout(opts.timeoutMs ?? 15_000),
      });
      await res.arrayBuffer().catch(() => undefined); // drain, so the connection is released
      if (res.ok) return { kind: 'webhook', target: webhookName(url), ok: true, attempts: attempt };
      error = `HTTP ${res.status} ${res.statusText}`.trim();
    } catch (err) {
      const e = err as Error & { cause?: Error };
      error = e.cause?.message ?? e.message;
    }
    if (attempt < attempts) {
      await new Promise((r) => setTimeout(r, delay));
      delay *= 2;
    }
  }
  return { kind: 'webhook', target: webhookName(url), ok: false, attempts, error: `${error} (after ${attempts} attempts)` };
}

/** A webhook's URL as reports show it: scheme and host only, since tokens often live in the path or query. */
export function webhookName(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}/…`;
  } catch {
    return 'the webhook';
  }
}

/** Run `argv` with `text` on its stdin, without ferry's secrets in its environment. */
export function runNotifyCommand(argv: readonly string[], text: string, timeoutMs = 120_000): Promise<NotificationResult> {
  const target = argv.join(' ');
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'ignore', 'pipe'], env: childEnvironment() });
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 2000) stderr += d.toString();
    });
    child.stdin.on('error', () => undefined); // a command that exits without reading: its exit status says enough
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ kind: 'command', target, ok: false, attempts: 1, error: err.message });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const why = signal ? `stopped by ${signal}` : `exit status ${code}`;
      const detail = stderr.trim().split('\n')[0];
      resolve(code === 0 ? { kind: 'command', target, ok: true, attempts: 1 } : { kind: 'command', target, ok: false, attempts: 1, error: `${why}${detail ? `: ${detail}` : ''}` });
    });
    child.stdin.end(text);
  });
}
