// A CommandRunner for a remote host: runs each command through the system
// ssh client (so ~/.ssh/config, the agent and known_hosts apply, and
// plaintext travels only inside ssh), wrapped around the local runner that
// starts ssh. The remote end needs only sshd and the command itself.
import { HypervisorError } from '../errors';
import { type CommandResult, type CommandRunner, type RunOptions, describeCommand, lastErrorLine } from '../hypervisor/commandRunner';
import type { HostAddress } from './hostsFile';

/** ssh's own exit status for "could not connect / authenticate"; a remote command's 255 is reported as such too. */
const SSH_FAILED = 255;

export type SshAddress = Extract<HostAddress, { kind: 'ssh' }>;

export class SshCommandRunner implements CommandRunner {
  /**
   * `sshConfig`: an ssh client config file (`ssh -F`), e.g. one the hosts file
   * names; none: the user's ~/.ssh/config.
   */
  constructor(
    private readonly address: SshAddress,
    private readonly local: CommandRunner,
    private readonly sshConfig?: string,
  ) {}

  /** The ssh arguments that reach the host, up to (not including) the remote command. */
  sshArgs(): string[] {
    const args: string[] = [];
    if (this.sshConfig) args.push('-F', this.sshConfig);
    if (this.address.port !== undefined) args.push('-p', String(this.address.port));
    // Never prompt (a site restore runs unattended); give up on a dead host in seconds, not minutes.
    args.push('-o', 'BatchMode=yes', '-o', 'ConnectTimeout=20', '-o', 'ServerAliveInterval=15', '-o', 'ServerAliveCountMax=4');
    args.push(this.address.destination, '--');
    return args;
  }

  async run(cmd: string, args: readonly string[], opts?: RunOptions): Promise<CommandResult> {
    // ssh hands the remote shell one string: every argument is quoted for sh.
    const remote = describeCommand(cmd, args);
    const envPrefix = opts?.env ? Object.entries(opts.env).map(([k, v]) => describeCommand(`${k}=${v}`, [])) : [];
    const result = await this.local.run('ssh', [...this.sshArgs(), ['env', 'LC_ALL=C', ...envPrefix, remote].join(' ')], {
      timeoutMs: opts?.timeoutMs,
    });
    if (result.code === SSH_FAILED && /^(ssh|kex_exchange_identification|Connection|Permission denied|Host key verification)/m.test(result.stderr)) {
      throw new HypervisorError(`cannot reach ${this.address.destination} over ssh: ${lastErrorLine(result.stderr) || 'no message'}; check the host's address in the hosts file and that \`ssh ${this.address.destination}\` works without a prompt`);
    }
    return result;
  }
}

/** The runner that reaches `host`: this machine's for `local`, ssh for the others. */
export function hostCommandRunner(host: { address: HostAddress }, local: CommandRunner, sshConfig?: string): CommandRunner {
  return host.address.kind === 'local' ? local : new SshCommandRunner(host.address, local, sshConfig);
}
