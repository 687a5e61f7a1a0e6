import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { repeatable } from '../options';
import { writeFileAtomically } from '../../restore/atomicFile';
import { loadIndexForReading, withPool, withRepository, RepoOptions, warnDamagedIndex } from '../session';
import { type ProgressFlags, ProgressLine, progressOutput } from '../progress';
import { formatBytes, formatDuration } from '../format';
import { exportTar } from '../../tar/exportTar';
import { importTar } from '../../tar/importTar';
import { withFlagNames } from '../flagNames';
import { InputError, UsageError, describeSystemError } from '../../errors';

interface ExportOptions {
  guest?: string;
  output?: string;
  force?: boolean;
}

interface ImportOptions {
  guest?: string;
  tag: string[];
  tmpDir?: string;
  json?: boolean;
}

export function registerTar(program: Command): void {
  program
    .command('export-tar <id>')
    .description('write a restore point (ID, or latest with --guest) as a plain tar: config, raw disk images, ferry-export.json, SHA256SUMS')
    .option('--guest <name>', 'with latest: the latest restore point of this guest')
    .option('-o, --output <file>', 'write the tar to this file instead of stdout')
    .option('--force', 'overwrite --output if it exists')
    .action(async (ref: string, opts: ExportOptions, cmd: Command) => {
      if (!opts.output && process.stdout.isTTY) {
        throw new UsageError('export-tar: stdout is a terminal; redirect it (> guest.tar) or give --output FILE');
      }
      if (opts.output && fs.existsSync(opts.output) && !opts.force) {
        throw new InputError(`--output ${opts.output}: already exists; choose another name or add --force`);
      }
      const exportGlobals = cmd.optsWithGlobals() as RepoOptions & ProgressFlags;
      await withRepository(exportGlobals, 'shared', 'export-tar', async (repo) => {
        await loadIndexForReading(repo);
        const rp = await repo.findRestorePoint(ref, opts.guest);
        const progress = new ProgressLine(`export ${rp.guest}`, progressOutput(exportGlobals));
        const onProgress = (p: { doneBytes: number; totalBytes: number }) => progress.update(p.doneBytes, p.totalBytes);
        const started = Date.now();
        await progress.around(async () => {
          if (!opts.output) {
            await exportTar(repo, rp, process.stdout, onProgress);
          } else {
            // A failed export never leaves a tar that looks complete.
            await writeFileAtomically(path.resolve(opts.output), async (temp) => {
              const out = fs.createWriteStream(temp, { flags: 'r+' });
              try {
                await exportTar(repo, rp, out, onProgress);
                await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
              } catch (err) {
                out.destroy();
                throw err;
              }
            });
          }
        });
        const bytes = rp.disks.reduce((n, d) => n + d.size, 0);
        process.stderr.write(`exported restore point ${rp.id.slice(0, 8)} (${rp.guest}, ${rp.disks.length} disk(s), ${formatBytes(bytes)}) in ${formatDuration(Date.now() - started)}\n`);
      });
    });

  program
    .command('import-tar [file]')
    .description('read a tar made by export-tar (from FILE or stdin) into the repository as a new restore point')
    .option('--guest <name>', "store it under this guest name instead of the export's")
    .option('--tag <tag>', 'tag the restore point (repeatable); it is always tagged imported', repeatable, [] as string[])
    .option('--tmp-dir <dir>', 'where the disks are unpacked as sparse temporary files (default $TMPDIR or /tmp)')
    .option('--json', 'print the result as JSON')
    .action(async (file: string | undefined, opts: ImportOptions, cmd: Command) => {
      if (!file && process.stdin.isTTY) throw new UsageError('import-tar: stdin is a terminal; give a FILE or pipe the tar in (< guest.tar)');
      if (file) {
        if (!fs.existsSync(file)) throw new InputError(`import-tar ${file}: no such file; give the tar made by ferry export-tar`);
        try {
          fs.closeSync(fs.openSync(file, 'r'));
        } catch (err) {
          throw new InputError(`import-tar ${file}: ${describeSystemError(err)}; give a readable tar made by ferry export-tar`);
        }
      }
      const importGlobals = cmd.optsWithGlobals() as RepoOptions & ProgressFlags;
      await withRepository(importGlobals, 'shared', 'import-tar', async (repo) => {
        // Opened only now: a stream opened before the repository failed to open would report its error to nobody.
        const input: NodeJS.ReadableStream & import('node:stream').Readable = file ? fs.createReadStream(file) : process.stdin;
        await repo.loadIndex(warnDamagedIndex);
        await repo.indexOrphanPacks({ keep: 'index-file' });
        const progress = new ProgressLine('import', progressOutput({ ...importGlobals, json: opts.json }));
        const result = await progress.around(() => withPool(repo, (pool) =>
          withFlagNames({ 'guest name': '--guest', 'temporary directory': '--tmp-dir' }, () =>
            importTar(repo, pool, input, {
              guest: opts.guest,
              tags: opts.tag,
              tmpDir: opts.tmpDir,
              onProgress: (p) => progress.update(p.doneBytes, p.totalBytes || p.doneBytes, [p.phase]),
            }),
          ),
        ));
        const rp = result.restorePoint;
        if (opts.json) {
          console.log(JSON.stringify({ id: result.id, guest: rp.guest, time: rp.time, tags: rp.tags, disks: rp.disks.map((d) => ({ name: d.name, size: d.size, dataBytes: d.dataBytes })), ...rp.stats }));
        } else {
          console.log(result.id);
          console.error(`imported restore point ${result.id.slice(0, 8)}: ${rp.guest} from ${rp.time}, ${rp.disks.length} disk(s), ${formatBytes(rp.stats.newBytes)} newly stored`);
        }
      });
    });
}
