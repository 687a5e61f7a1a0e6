import * as fs from 'node:fs';
import { Command } from 'commander';
import { randomBytes } from '../../crypto/aead';
import { InputError, UsageError, describeSystemError } from '../../errors';
import { obtainPassword, readSecretFile, promptHidden } from '../password';
import { withRepository, RepoOptions } from '../session';
import { table } from '../format';
import { KdfOptions, kdfFromOptions, warnIfWeakKdf } from './init';

export function registerKey(program: Command): void {
  const key = program.command('key').description('manage the passphrases and key files that open the repository');

  key
    .command('add')
    .description('add a passphrase or key file (no data is rewritten)')
    .option('--new-password-file <file>', 'read the new passphrase from this file')
    .option('--generate-key-file <file>', 'create a new random key file and add it')
    .option('--kdf-memory <size>', 'Argon2id memory for the new slot', '64M')
    .option('--kdf-ops <n>', 'Argon2id passes for the new slot', '3')
    .action(async (opts: KdfOptions & { newPasswordFile?: string; generateKeyFile?: string }, cmd: Command) => {
      const ropts = cmd.optsWithGlobals() as RepoOptions;
      if (opts.newPasswordFile && opts.generateKeyFile) throw new UsageError('key add: give --new-password-file or --generate-key-file, not both');
      const kdf = kdfFromOptions(opts);
      await withRepository(ropts, 'shared', 'key add', async (repo) => {
        let secret: Buffer;
        let kind: 'passphrase' | 'keyfile' = 'passphrase';
        if (opts.generateKeyFile) {
          if (fs.existsSync(opts.generateKeyFile)) throw new UsageError(`--generate-key-file ${opts.generateKeyFile}: already exists; choose a new path`);
          secret = Buffer.from(randomBytes(32).toString('base64'));
          try {
            fs.writeFileSync(opts.generateKeyFile, `${secret.toString()}\n`, { mode: 0o600, flag: 'wx' });
          } catch (err) {
            throw InputError.about(
              { parameter: '--generate-key-file', value: opts.generateKeyFile, detail: `cannot be created (${describeSystemError(err)}); give a new path in a writable directory` },
              { cause: err },
            );
          }
          kind = 'keyfile';
        } else if (opts.newPasswordFile) {
          secret = readSecretFile(opts.newPasswordFile, '--new-password-file');
        } else if (process.stdin.isTTY) {
          secret = await promptHidden('New passphrase: ');
          if (!(await promptHidden('Repeat new passphrase: ')).equals(secret)) throw new UsageError('the two passphrases differ; no key was added');
        } else {
          throw new UsageError('key add: give --new-password-file FILE or --generate-key-file FILE (no terminal to ask on)');
        }
        const id = await repo.addKeySlot(secret, kdf, kind);
        console.log(`added key ${id}`);
        warnIfWeakKdf(kdf);
      });
    });

  key
    .command('list')
    .description('list key slots')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      await withRepository(cmd.optsWithGlobals() as RepoOptions, 'none', 'key list', async (repo) => {
        const slots = await repo.listKeySlots();
        if (opts.json) {
          console.log(JSON.stringify(slots.map((s) => ({ id: s.id, kind: s.slot.kind, created: s.slot.created, current: s.current }))));
          return;
        }
        console.log(table([['', 'id', 'kind', 'created'], ...slots.map((s) => [s.current ? '*' : '', s.id, s.slot.kind, s.slot.created])]));
      });
    });

  key
    .command('remove <id>')
    .description('remove a key slot (never the last one)')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      await withRepository(cmd.optsWithGlobals() as RepoOptions, 'exclusive', 'key remove', async (repo) => {
        const removed = await repo.removeKeySlot(id);
        console.log(`removed key ${removed}`);
        process.stderr.write(removalCaveat(removed, repo.location));
      });
    });

  key
    .command('rotate')
    .description('a new data key for future backups; removes every other key slot (they hold only the old keys)')
    .action(async (_opts: unknown, cmd: Command) => {
      const ropts = cmd.optsWithGlobals() as RepoOptions;
      await withRepository(ropts, 'exclusive', 'key rotate', async (repo) => {
        const { slot, removed } = await repo.rotateDataKey(await obtainPassword(ropts));
        console.log(`rotated the data key of ${repo.location}: new key ${slot}; removed key(s) ${removed.join(', ')}`);
        process.stderr.write(
          `ferry: note: objects written from now on are sealed with the new key; those stored before keep the old one (nothing is rewritten), ` +
            `so a removed key still reads the data backed up before the rotation. Add other passphrases again with 'ferry key add'; ` +
            `'ferry sync' carries the new key to copy targets and removes the old ones there.\n`,
        );
      });
    });
}

/** What removing a key slot does not do; said every time, because people assume it does. */
function removalCaveat(slot: string, location: string): string {
  return (
    `ferry: note: key ${slot} is removed from ${location} only. Copies made before (a USB drive, an S3 copy made by 'ferry sync') ` +
    `still hold it and still open with its passphrase, until 'ferry sync' to them removes it there too or you run 'ferry key remove' on them.\n` +
    `ferry: note: the repository's master key is unchanged: whoever opened the repository with this key could have kept the master key ` +
    `and, with access to the storage, read later backups too. To shut them out of future backups, run 'ferry key rotate'.\n`
  );
}
