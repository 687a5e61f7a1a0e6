// Where the passphrase comes from, in order: --password-file, FERRY_PASSWORD_FILE,
// FERRY_PASSWORD, then a prompt when stdin is a terminal (cron has none).
import * as fs from 'node:fs';
import { UsageError, describeSystemError } from '../errors';

export interface PasswordOptions {
  passwordFile?: string;
  /** Given by the command itself (site restore-local reads it from its stdin): used before any other source. */
  passphrase?: Buffer;
}

export function readSecretFile(file: string, what: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    throw new UsageError(`${what} ${file}: ${describeSystemError(err)}`);
  }
  // A trailing newline is editor noise, not part of the passphrase.
  const text = bytes.toString('utf8').replace(/\r?\n$/, '');
  if (text.length === 0) throw new UsageError(`${what} ${file}: is empty; put the passphrase (or key) in it`);
  return Buffer.from(text, 'utf8');
}

/** Whether a passphrase was given without asking (flag or environment). */
export function passwordGiven(opts: PasswordOptions): boolean {
  return Boolean(opts.passwordFile || process.env.FERRY_PASSWORD_FILE || process.env.FERRY_PASSWORD !== undefined);
}

/** The passphrase from --password-file, FERRY_PASSWORD(_FILE) or the terminal; a new one (`ask: 'new'`) is asked twice. */
export async function obtainPassword(opts: PasswordOptions, ask: 'existing' | 'new' = 'existing'): Promise<Buffer> {
  if (opts.passphrase) return opts.passphrase;
  if (opts.passwordFile) return readSecretFile(opts.passwordFile, '--password-file');
  if (process.env.FERRY_PASSWORD_FILE) return readSecretFile(process.env.FERRY_PASSWORD_FILE, 'FERRY_PASSWORD_FILE');
  if (process.env.FERRY_PASSWORD !== undefined) {
    if (process.env.FERRY_PASSWORD === '') throw new UsageError('FERRY_PASSWORD is set but empty; set a passphrase');
    return Buffer.from(process.env.FERRY_PASSWORD, 'utf8');
  }
  if (!process.stdin.isTTY) {
    throw new UsageError('no passphrase: set FERRY_PASSWORD or FERRY_PASSWORD_FILE, or pass --password-file (no terminal to ask on)');
  }
  const first = await promptHidden('Repository passphrase: ');
  if (first.length === 0) throw new UsageError('empty passphrase; a repository needs one');
  if (ask === 'new' && !(await promptHidden('Repeat passphrase: ')).equals(first)) {
    throw new UsageError('the two passphrases differ; nothing was changed');
  }
  return first;
}

/** Read a line from the terminal without echoing it. */
export function promptHidden(question: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    process.stderr.write(question);
    stdin.setRawMode(true);
    stdin.resume();
    const chunks: number[] = [];
    const onData = (data: Buffer) => {
      for (const byte of data) {
        if (byte === 0x0d || byte === 0x0a) {
          finish();
          resolve(Buffer.from(chunks));
          return;
        }
        if (byte === 0x03) {
          finish();
          reject(new UsageError('interrupted at the passphrase prompt'));
          return;
        }
        if (byte === 0x7f || byte === 0x08) chunks.pop();
        else chunks.push(byte);
      }
    };
    const finish = () => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    stdin.on('data', onData);
  });
}
