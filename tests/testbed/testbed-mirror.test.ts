// scripts/testbed/debian-mirror.sh: test images come from the mirror this
// machine's apt uses, read from real apt configuration files.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, ferryEnv, runCommand, useScratch } from '../support';

const scratch = useScratch('testbed-mirror');
const SCRIPT = path.join(REPO_ROOT, 'scripts/testbed/debian-mirror.sh');
let etcCount = 0;

/** An apt configuration directory holding `files` (relative path -> text). */
function aptEtc(files: Record<string, string>): string {
  const etc = scratch.mkdir(`etc-apt-${etcCount++}`);
  fs.mkdirSync(path.join(etc, 'sources.list.d'));
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(etc, name), text);
  return etc;
}

async function mirrorFor(etc: string, extraEnv: Record<string, string> = {}, suite?: string) {
  const r = await runCommand('bash', [SCRIPT, ...(suite ? [suite] : [])], {
    env: ferryEnv({ FERRY_APT_ETC: etc, ...extraEnv }),
  });
  expect(r.code, r.stderr).toBe(0);
  return { mirror: r.stdout.trim(), stderr: r.stderr };
}

describe('Debian mirror for test images', () => {
  it('takes the bookworm source of a deb822 file, not the security archive or a disabled stanza', async () => {
    const etc = aptEtc({
      'sources.list.d/debian.sources': [
        'Types: deb',
        '# http://snapshot.example.org/archive/debian/20250520T000000Z',
        'URIs: http://security.example.org/debian-security',
        'Suites: bookworm-security',
        'Components: main',
        '',
        'Types: deb',
        'URIs: http://off.example.org/debian',
        'Suites: bookworm',
        'Components: main',
        'Enabled: no',
        '',
        'Types: deb-src deb',
        'URIs: http://mirror.example.org/debian/',
        'Suites: bookworm bookworm-updates',
        'Components: main',
        'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg',
        '',
      ].join('\n'),
    });
    expect((await mirrorFor(etc)).mirror).toBe('http://mirror.example.org/debian');
  });

  it('reads one-line sources.list entries with options, skipping comments and deb-src', async () => {
    const etc = aptEtc({
      'sources.list': [
        '# deb http://commented.example.org/debian bookworm main',
        'deb-src http://src.example.org/debian bookworm main',
        'deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://local.example.org/debian bookworm main',
        '',
      ].join('\n'),
    });
    expect((await mirrorFor(etc)).mirror).toBe('http://local.example.org/debian');
  });

  it('prefers the source that serves the suite asked for, and ignores non-Debian repositories', async () => {
    const etc = aptEtc({
      'sources.list.d/a-nodesource.list': 'deb https://node.example.org/node_20.x nodistro main\n',
      'sources.list.d/b-trixie.list': 'deb http://trixie.example.org/debian trixie main\n',
      'sources.list.d/c-bookworm.list': 'deb http://bookworm.example.org/debian bookworm main\n',
    });
    expect((await mirrorFor(etc)).mirror).toBe('http://bookworm.example.org/debian');
    // No bookworm entry: any Debian mirror carries every release.
    const other = aptEtc({
      'sources.list.d/a-nodesource.list': 'deb https://node.example.org/node_20.x nodistro main\n',
      'sources.list.d/b-trixie.list': 'deb http://trixie.example.org/debian trixie main\n',
    });
    expect((await mirrorFor(other)).mirror).toBe('http://trixie.example.org/debian');
  });

  it('falls back to the public Debian mirror with a note when apt names none', async () => {
    const etc = aptEtc({ 'sources.list.d/nodesource.sources': 'Types: deb\nURIs: https://node.example.org/x\nSuites: nodistro\n' });
    const r = await mirrorFor(etc);
    expect(r.mirror).toMatch(/^https?:\/\/\S+\/debian$/);
    expect(r.stderr).toMatch(/no Debian source for bookworm .*FERRY_DEBIAN_MIRROR/);
  });

  it('uses FERRY_DEBIAN_MIRROR when set', async () => {
    const etc = aptEtc({ 'sources.list': 'deb http://local.example.org/debian bookworm main\n' });
    expect((await mirrorFor(etc, { FERRY_DEBIAN_MIRROR: 'http://chosen.example.org/debian' })).mirror).toBe(
      'http://chosen.example.org/debian',
    );
  });

  it('is what debian-image.sh debootstraps from', async () => {
    // A closed port on loopback: debootstrap fails at once, after naming it.
    const etc = aptEtc({ 'sources.list': 'deb http://127.0.0.1:9/debian bookworm main\n' });
    const r = await runCommand('bash', [path.join(REPO_ROOT, 'scripts/testbed/debian-image.sh'), scratch.path('x.img'), '400'], {
      env: ferryEnv({ FERRY_APT_ETC: etc, FERRY_TESTBED_CACHE: scratch.mkdir('empty-cache') }),
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('debootstrap bookworm minbase from http://127.0.0.1:9/debian');
    expect(fs.existsSync(scratch.path('x.img'))).toBe(false);
  });
});
