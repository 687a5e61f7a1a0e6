// A tiny stand-alone QMP command runner, for the watchdog that must resume a
// guest after ferry was killed while the guest was stopped:
//
//   node dist/hypervisor/qemu/qmpCommandMain.js SOCKET COMMAND [JSON-ARGUMENTS]
//   node dist/hypervisor/qemu/qmpCommandMain.js --agent AGENT-SOCKET COMMAND [JSON-ARGUMENTS]
//
// (--agent talks to the QEMU guest agent instead, e.g. guest-fsfreeze-thaw.)
//
// Prints the command's `return` value as JSON on stdout and exits 0; on any
// failure prints one line `qmp: ...` on stderr and exits with ferry's
// hypervisor exit code (9), or 2 for bad usage. It depends on nothing but the
// QMP client, so it works however broken the ferry process that spawned it was.
import { FerryError, HypervisorError, UsageError } from '../../errors';
import { QgaClient } from './qgaClient';
import { QmpClient } from './qmpClient';

// The watchdog may start this while the killed ferry's connection is still
// being torn down; give the socket a moment to free up.
const CONNECT_TIMEOUT_MS = 15_000;
const COMMAND_TIMEOUT_MS = 30_000;

async function main(all: string[]): Promise<number> {
  const agent = all[0] === '--agent';
  const argv = agent ? all.slice(1) : all;
  const [socket, command, json] = argv;
  if (!socket || !command || argv.length > 3) {
    throw new UsageError('usage: qmpCommandMain.js [--agent] SOCKET COMMAND [JSON-ARGUMENTS], e.g. /run/web01.qmp cont');
  }
  let args: object | undefined;
  if (json !== undefined) {
    try {
      args = JSON.parse(json) as object;
    } catch {
      throw new UsageError(`arguments for QMP ${command} are not JSON: ${json}`);
    }
  }
  const result = agent
    ? await QgaClient.with(socket, CONNECT_TIMEOUT_MS, (c) => c.execute(command, args, COMMAND_TIMEOUT_MS))
    : await QmpClient.with(socket, (c) => c.execute(command, args, { timeoutMs: COMMAND_TIMEOUT_MS }), {
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
    });
  process.stdout.write(JSON.stringify(result) + '\n');
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    const e = err instanceof FerryError ? err : new HypervisorError(String(err instanceof Error ? err.message : err));
    process.stderr.write(`qmp: ${e.message}\n`);
    process.exitCode = e.exitCode;
  },
);
