import { Command } from 'commander';
import { Repository } from '../../repo/repository';
import { DEFAULT_KDF, KdfParams, KDF_BOUNDS, isWeakKdf, kdfProblem } from '../../crypto/keySlot';
import { DEFAULT_CHUNKER, describeChunker, parseChunkerSpec, parseSize } from '../../dedupe/chunkerParams';
import { UsageError } from '../../errors';
import { obtainPassword } from '../password';
import { openBackendAt, repoLocation, RepoOptions } from '../session';
import { initCopyTarget } from '../../sync/copyTarget';

export interface KdfOptions {
  kdfMemory?: string;
  kdfOps?: string;
}

export function kdfFromOptions(opts: KdfOptions): KdfParams {
  const memlimit = opts.kdfMemory ? parseSize(opts.kdfMemory, '--kdf-memory') : DEFAULT_KDF.memlimit;
  const opslimit = opts.kdfOps ? Number(opts.kdfOps) : DEFAULT_KDF.opslimit;
  // The bounds every ferry opens slots within: a slot outside them would be skipped on open.
  if (kdfProblem({ memlimit, opslimit })) {
    throw new UsageError(
      `--kdf-memory must be from 8K to ${KDF_BOUNDS.maxMemlimit / 1024 ** 2}M and --kdf-ops a whole number from ${KDF_BOUNDS.minOpslimit} to ${KDF_BOUNDS.maxOpslimit}`,
    );
  }
  return { memlimit, opslimit };
}

/** One stderr line when a new key slot is cheaper to brute-force than the default (after it is made: failures stay one line). */
export function warnIfWeakKdf(kdf: KdfParams): void {
  if (!isWeakKdf(kdf)) return;
  process.stderr.write(
    `ferry: warning: the key slot uses Argon2id ${formatKdfMemory(kdf.memlimit)} / ${kdf.opslimit} pass${kdf.opslimit === 1 ? '' : 'es'}, ` +
      `under the recommended ${formatKdfMemory(DEFAULT_KDF.memlimit)} / ${DEFAULT_KDF.opslimit}: a copy of keys/ is that much cheaper to brute-force\n`,
  );
}

function formatKdfMemory(bytes: number): string {
  return bytes >= 1024 ** 2 ? `${bytes / 1024 ** 2} MiB` : `${bytes / 1024} KiB`;
}

export function registerInit(program: Command): void {
  program
    .command('init')
    .description('create a new, empty repository')
    .option('--chunker <spec>', 'chunking: fastcdc:SIZE or fixed:SIZE', DEFAULT_CHUNKER)
    .option('--pack-size <size>', 'target pack file size, at most 1024M (FAT32 drives take files below 4 GiB)', '16M')
    .option('--compression <level>', 'zstd level for chunks', '3')
    .option('--kdf-memory <size>', 'Argon2id memory for this key slot', '64M')
    .option('--kdf-ops <n>', 'Argon2id passes for this key slot', '3')
    .option('--from <source>', 'make a copy target of SOURCE for ferry sync: the same identity and key slots, no data')
    .action(async (_opts: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as RepoOptions & KdfOptions & { chunker: string; packSize: string; compression: string; from?: string };
      if (opts.from !== undefined) {
        await initFrom(opts.from, repoLocation(opts), opts);
        return;
      }
      const chunker = parseChunkerSpec(opts.chunker);
      const packSize = parseSize(opts.packSize, '--pack-size');
      if (packSize < 1024 * 1024 || packSize > 1024 * 1024 * 1024) throw new UsageError('--pack-size must be between 1M and 1024M');
      const level = Number(opts.compression);
      if (!Number.isInteger(level) || level < 1 || level > 19) throw new UsageError('--compression must be a zstd level from 1 to 19');
      const kdf = kdfFromOptions(opts);
      const backend = openBackendAt(repoLocation(opts), opts);
      try {
        const secret = await obtainPassword(opts, 'new');
        const repo = await Repository.init(backend, secret, {
          chunker, packSize, compressionLevel: level, kdf, secretKind: 'passphrase',
        });
        console.log(`created repository ${repo.repositoryId.toString('hex').slice(0, 8)} at ${repo.location} (chunker ${describeChunker(chunker)})`);
        warnIfWeakKdf(kdf);
      } finally {
        await backend.close();
      }
    });
}

/** `init --from SRC`: copy SRC's config and key slots as they are; the passphrases stay SRC's. */
async function initFrom(sourceLocation: string, targetLocation: string, opts: RepoOptions): Promise<void> {
  const source = openBackendAt(sourceLocation, { ...opts, objectLockDays: undefined, objectLockMode: undefined });
  try {
    const target = openBackendAt(targetLocation, { ...opts, cache: false });
    try {
      const { repositoryId, keySlots } = await initCopyTarget(source, target);
      console.log(
        `created copy target of repository ${repositoryId.toString('hex').slice(0, 8)} at ${target.location} (${keySlots} key slot(s) from ${source.location}); fill it with 'ferry sync ${sourceLocation} ${targetLocation}'`,
      );
    } finally {
      await target.close();
    }
  } finally {
    await source.close();
  }
}
