// The real CommandRunner: runs programs without a shell and reports exit codes.
import { describe, expect, it } from 'vitest';
import { ExecFileCommandRunner, describeCommand, lastErrorLine } from '../../src/hypervisor/commandRunner';
import { HypervisorError } from '../../src/errors';

const node = process.execPath;

describe('ExecFileCommandRunner', () => {
  const runner = new ExecFileCommandRunner();

  it('returns stdout, stderr and a non-zero exit code without throwing', async () => {
    const result = await runner.run(node, ['-e', 'process.stdout.write("out"); process.stderr.write("err"); process.exit(3)']);
    expect(result).toEqual({ stdout: 'out', stderr: 'err', code: 3 });
  });

  it('passes arguments verbatim: no shell expands them', async () => {
    const result = await runner.run(node, ['-e', 'process.stdout.write(process.argv[1])', '$(echo hi); *']);
    expect(result.stdout).toBe('$(echo hi); *');
  });

  it('sets LC_ALL=C so tool messages are in English', async () => {
    const result = await runner.run(node, ['-e', 'process.stdout.write(process.env.LC_ALL)'], { env: { LC_ALL: 'de_DE.UTF-8' } });
    expect(result.stdout).toBe('C');
  });

  it('throws a HypervisorError when the program does not exist', async () => {
    await expect(runner.run('ferry-no-such-tool', [])).rejects.toThrow(
      new HypervisorError('cannot run ferry-no-such-tool: no such file or directory (ENOENT)'),
    );
  });

  it('kills a command that outlives its timeout', async () => {
    await expect(runner.run(node, ['-e', 'setTimeout(() => {}, 10000)'], { timeoutMs: 200 }))
      .rejects.toThrow(/did not finish within 0.2 s and was killed/);
  });
});

describe('messages', () => {
  it('quotes arguments that need it', () => {
    expect(describeCommand('logger', ['resumed web01', 'a'])).toBe("logger 'resumed web01' a");
  });

  it('takes the last real error line, skipping lvm\'s --help hint', () => {
    expect(lastErrorLine('  noise\n  snapshot: target missing.\n  Run `lvcreate --help\' for more information.\n')).toBe('snapshot: target missing.');
  });
});
