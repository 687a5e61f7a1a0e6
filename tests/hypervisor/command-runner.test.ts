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

  it('passes no passphrase or cloud credential to the program, and everything else', async () => {
    const secrets = {
      FERRY_PASSWORD: 'pw', FERRY_PASSWORD_FILE: '/etc/ferry/pw', AWS_ACCESS_KEY_ID: 'AKIA', AWS_SECRET_ACCESS_KEY: 'sk',
      AWS_SESSION_TOKEN: 'st', AWS_CONTAINER_CREDENTIALS_FULL_URI: 'http://169.254.170.2/creds',
    };
    const saved = { ...process.env };
    Object.assign(process.env, secrets, { FERRY_TEST_VISIBLE: 'yes', AWS_REGION: 'eu-west-1' });
    try {
      const result = await runner.run(node, ['-e', 'process.stdout.write(JSON.stringify(process.env))']);
      const seen = JSON.parse(result.stdout) as Record<string, string>;
      for (const name of Object.keys(secrets)) expect(seen, name).not.toHaveProperty(name);
      expect(seen).toMatchObject({ FERRY_TEST_VISIBLE: 'yes', AWS_REGION: 'eu-west-1', PATH: process.env.PATH });
    } finally {
      for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
      Object.assign(process.env, saved);
    }
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
