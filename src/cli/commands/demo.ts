import { Command } from 'commander';
import { runDemo } from '../../demo/demoFleet';
import { workerThreads } from '../session';

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('build a small demo fleet, back it up twice into a local repository, restore and verify a guest')
    .option('--dir <dir>', 'work directory (default: a new temporary directory)')
    .option('--keep', 'keep the work directory')
    .action(async (opts: { dir?: string; keep?: boolean }) => {
      await runDemo(opts.dir, Boolean(opts.keep), workerThreads());
    });
}
