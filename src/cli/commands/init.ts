import { Command } from 'commander';
import { Repository } from '../../repo/repository';
import { DEFAULT_KDF } from '../../crypto/keySlot';
import { DEFAULT_CHUNKER, describeChunker, parseChunkerSpec, parseSize } from '../../dedupe/chunkerParams';
import { UsageError } from '../../errors';
import { obtainPassword } from '../password';
import { openBackendAt, repoLocation, RepoOptions } from '../session';

export interface KdfOptions {
  kdfMemory?: string;
  kdfOps?: string;
}

export function kdfFromOptions(opts: KdfOptions) {
  const memlimit = opts.kdfMemory ? parseSize(opts.kdfMemory, '--kdf-memory') : DEFAULT_KDF.memlimit;
  const opslimit = opts.kdfOps ? Number(opts.kdfOps) : DEFAULT_KDF.opslimit;
  if (memlimit < 8192 || !Number.isInteger(opslimit) || opslimit < 1) {
    throw new UsageError('--kdf-memory must be at least 8K and --kdf-ops a whole number of at least 1');
  }
  return { memlimit, opslimit };
}

export function registerInit(program: Command): void {
  program
    .command('init')
    .description('create a new, empty repository')
    .option('--chunker <spec>', 'chunking: fastcdc:SIZE or fixed:SIZE', DEFAULT_CHUNKER)
    .option('--pack-size <size>', 'target pack file size (kept far below 2 GiB for FAT drives)', '32M')
    .option('--compression <level>', 'zstd level for chunks', '3')
    .option('--kdf-memory <size>', 'Argon2id memory for this key slot', '64M')
    .option('--kdf-ops <n>', 'Argon2id passes for this key slot', '3')
    .action(async (_opts: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as RepoOptions & KdfOptions & { chunker: string; packSize: string; compression: string };
      const chunker = parseChunkerSpec(opts.chunker);
      const packSize = parseSize(opts.packSize, '--pack-size');
      if (packSize < 1024 * 1024 || packSize > 1024 * 1024 * 1024) throw new UsageError('--pack-size must be between 1M and 1024M');
      const level = Number(opts.compression);
      if (!Number.isInteger(level) || level < 1 || level > 19) throw new UsageError('--compression must be a zstd level from 1 to 19');
      const backend = openBackendAt(repoLocation(opts));
      try {
        const secret = await obtainPassword(opts, true);
        const repo = await Repository.init(backend, secret, {
          chunker, packSize, compressionLevel: level, kdf: kdfFromOptions(opts), secretKind: 'passphrase',
        });
        console.log(`created repository ${repo.repositoryId.toString('hex').slice(0, 8)} at ${repo.location} (chunker ${describeChunker(chunker)})`);
      } finally {
        await backend.close();
      }
    });
}
