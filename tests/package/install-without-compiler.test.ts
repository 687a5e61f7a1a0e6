// The README's first command on a Debian 12 machine that has only Node.js and
// npm: a real Debian bookworm minbase chroot (the test-bed root file system,
// scripts/testbed/debian-image.sh --rootfs-tar) with no compiler, make or
// python3, this Node binary and npm copied in, and the working tree as a
// fresh clone would have it.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { CommandResult, REPO_ROOT, describeResult, mustRun, runCommand, useScratch } from '../support';

const scratch = useScratch('install-without-compiler');
const root = scratch.path('root');
const APP = '/src/ferry';
const TOOLS_A_BUILD_NEEDS = ['cc', 'gcc', 'g++', 'c++', 'clang', 'make', 'python3', 'python'];

/**
 * Run a shell command as root inside the chroot, in a private mount namespace
 * (proc, dev and the npm cache are mounted there and vanish with it). The
 * npm cache is the host's under an overlay: packages are not downloaded again
 * (npm checks each against package-lock.json) and the host's cache is left
 * as it was.
 */
function inChroot(command: string, npmCache: string): Promise<CommandResult> {
  const setup = [
    'set -e',
    'mount -t proc proc "$1/proc"',
    'mount --rbind /dev "$1/dev"',
    `mount -t overlay overlay -o "lowerdir=$2,upperdir=${cacheUpper},workdir=${cacheWork}" "$1/root/.npm"`,
    'exec chroot "$1" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 npm_config_registry="$3" $5 /bin/sh -c "$4"',
  ].join('\n');
  const caSetting = cafile ? `npm_config_cafile=${cafile}` : '';
  return runCommand('unshare', ['--mount', '--fork', 'sh', '-c', setup, 'chroot', root, npmCache, registry, command, caSetting], {
    timeoutMs: 240_000,
  });
}

let npmCache = '';
const cacheUpper = scratch.path('npm-cache-upper');
const cacheWork = scratch.path('npm-cache-work');
let registry = '';
let cafile = '';

function seekWarnings(r: CommandResult): string[] {
  return `${r.stdout}\n${r.stderr}`.split('\n').filter((line) => line.includes('SEEK_DATA'));
}

/**
 * zstd-napi's install script downloads its prebuilt binary from GitHub
 * (prebuild-install) and compiles only when that fails. A Debian machine on
 * the internet gets it that way; this test machine reaches only the npm
 * registry, so the download is put where prebuild-install keeps the ones it
 * made before (<npm cache>/_prebuilds), packed from this host's zstd-napi.
 */
async function seedZstdNapiDownload(prebuildsCache: string): Promise<void> {
  const zstdDir = path.join(REPO_ROOT, 'node_modules/zstd-napi');
  const zstd = JSON.parse(fs.readFileSync(path.join(zstdDir, 'package.json'), 'utf8')) as {
    version: string;
    binary: { napi_versions: number[] };
  };
  const napi = Math.max(...zstd.binary.napi_versions);
  const file = `zstd-napi-v${zstd.version}-napi-v${napi}-linux-${process.arch}.tar.gz`;
  const url = `https://github.com/drakedevel/zstd-napi/releases/download/v${zstd.version}/${file}`;
  const cached = `${createHash('sha512').update(url).digest('hex').slice(0, 6)}-${file.replace(/[^a-zA-Z0-9.]+/g, '-')}`;
  fs.mkdirSync(prebuildsCache, { recursive: true });
  await mustRun('tar', ['-C', zstdDir, '-czf', path.join(prebuildsCache, cached), 'build/Release/binding.node']);
}

beforeAll(async () => {
  const rootfsTar = (await mustRun('bash', [path.join(REPO_ROOT, 'scripts/testbed/debian-image.sh'), '--rootfs-tar'])).trim();
  fs.mkdirSync(root);
  await mustRun('sh', ['-c', 'zstd -q -dc "$1" | tar --numeric-owner -C "$2" -xf -', 'sh', rootfsTar, root]);

  // Node and npm as the nodejs packages install them: one binary, npm's tree.
  const npmDir = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm');
  if (!fs.existsSync(path.join(npmDir, 'bin', 'npm-cli.js'))) throw new Error(`npm not found at ${npmDir}`);
  fs.copyFileSync(process.execPath, path.join(root, 'usr/local/bin/node'));
  fs.chmodSync(path.join(root, 'usr/local/bin/node'), 0o755);
  fs.cpSync(npmDir, path.join(root, 'usr/local/lib/node_modules/npm'), { recursive: true });
  fs.symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', path.join(root, 'usr/local/bin/npm'));
  fs.writeFileSync(path.join(root, 'etc/resolv.conf'), fs.readFileSync('/etc/resolv.conf'));
  fs.mkdirSync(path.join(root, 'root/.npm'), { recursive: true });
  npmCache = (await mustRun('npm', ['config', 'get', 'cache'])).trim();
  registry = (await mustRun('npm', ['config', 'get', 'registry'])).trim();
  fs.mkdirSync(npmCache, { recursive: true });
  fs.mkdirSync(cacheWork);
  await seedZstdNapiDownload(path.join(cacheUpper, '_prebuilds'));
  // The machine's own CA bundle, if its npm uses one (a registry behind a
  // private CA): part of the machine, not of what the test checks.
  const hostCafile = (await mustRun('npm', ['config', 'get', 'cafile'])).trim();
  if (hostCafile !== 'null' && hostCafile !== 'undefined' && fs.existsSync(hostCafile)) {
    cafile = '/etc/host-npm-ca.crt';
    fs.copyFileSync(hostCafile, path.join(root, cafile));
  }

  // What a clone holds: tracked and new files, nothing git ignores
  // (node_modules, build/, dist/).
  fs.mkdirSync(path.join(root, APP), { recursive: true });
  await mustRun('sh', [
    '-c',
    'git -C "$1" ls-files -z --cached --others --exclude-standard | tar -C "$1" --null --ignore-failed-read -T - -cf - | tar -C "$2" -xf -',
    'sh',
    REPO_ROOT,
    path.join(root, APP),
  ]);
});

describe('npm ci && ./bin/ferry demo on Debian 12 with only Node.js and npm', () => {
  it('the chroot has no compiler, make or python', async () => {
    const r = await inChroot(`for t in ${TOOLS_A_BUILD_NEEDS.join(' ')}; do command -v $t && exit 1; done; node --version`, npmCache);
    expect(r.code, describeResult(r)).toBe(0);
    expect(r.stdout.trim()).toBe(process.version);
  });

  it('installs with the prebuilt addon and runs the demo, finding holes with SEEK_DATA', async () => {
    const install = await inChroot(`cd ${APP} && npm ci --prefer-offline --no-audit --no-fund`, npmCache);
    expect(install.code, describeResult(install)).toBe(0);
    const loaded = await inChroot(`cd ${APP} && node -p "require('node-gyp-build').resolve('.')"`, npmCache);
    expect(loaded.stdout.trim(), describeResult(loaded)).toBe(`${APP}/prebuilds/linux-${process.arch}/ferry.node`);
    const demo = await inChroot(`cd ${APP} && ./bin/ferry demo`, npmCache);
    expect(demo.code, describeResult(demo)).toBe(0);
    expect(demo.stdout).toMatch(/restored \S+ to .*: bit-exact/);
    expect(seekWarnings(demo)).toEqual([]);
  });

  it('without a prebuild for the platform, installs anyway and the demo warns once and still restores bit-exact', async () => {
    const install = await inChroot(`cd ${APP} && rm -rf prebuilds build node_modules && npm ci --prefer-offline --no-audit --no-fund`, npmCache);
    expect(install.code, describeResult(install)).toBe(0);
    const demo = await inChroot(`cd ${APP} && ./bin/ferry demo`, npmCache);
    expect(demo.code, describeResult(demo)).toBe(0);
    expect(demo.stdout).toMatch(/restored \S+ to .*: bit-exact/);
    expect(seekWarnings(demo), describeResult(demo)).toHaveLength(1);
    expect(seekWarnings(demo)[0]).toMatch(/^ferry: warning: SEEK_DATA addon unavailable \(No native build was found for platform=linux/);
  });
});
