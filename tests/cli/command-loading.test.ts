// The CLI loads only the module of the command it runs (main.ts,
// COMMAND_MODULES): the table must name every command, and a command line
// must be read for its command past the global options and their values.
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support';

// The built CLI, as bin/ferry runs it: its command modules are loaded with require().
const { COMMAND_MODULES, buildProgram, commandNameIn } = createRequire(path.join(REPO_ROOT, 'package.json'))('./dist/cli/main.js') as typeof import('../../src/cli/main');

const argv = (...words: string[]) => ['node', 'ferry', ...words];

describe('loading one command module per run', () => {
  it('the table names each top-level command once, in the order help lists them', () => {
    const all = buildProgram().commands.map((c) => c.name());
    expect(COMMAND_MODULES.flatMap((m) => m.names)).toEqual(all);
  });

  it('each entry registers exactly the commands it names', () => {
    for (const m of COMMAND_MODULES) {
      expect(buildProgram(argv(m.names[0]!)).commands.map((c) => c.name()), m.names.join(', ')).toEqual(m.names);
    }
  });

  it('finds the command after global options, skipping the values of those that take one', () => {
    const program = buildProgram();
    expect(commandNameIn(program, argv('--repo', 'list', 'check'))).toBe('check');
    expect(commandNameIn(program, argv('-r', '/srv/repo', '--no-cache', '--memory', '96M', 'restore', 'latest'))).toBe('restore');
    expect(commandNameIn(program, argv('--repo=/srv/repo', 'stats'))).toBe('stats');
    expect(commandNameIn(program, argv('--wait-lock', '10m', '--insecure-http', 'prune'))).toBe('prune');
    expect(commandNameIn(program, argv('--help'))).toBeUndefined();
  });

  it('help, no command and a mistyped one get every command', () => {
    const all = buildProgram().commands.length;
    expect(buildProgram(argv('--help')).commands).toHaveLength(all);
    expect(buildProgram(argv()).commands).toHaveLength(all);
    expect(buildProgram(argv('lst')).commands).toHaveLength(all);
  });
});
