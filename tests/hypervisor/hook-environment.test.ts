// Hooks are site scripts: they log, they ssh. They get ferry's environment
// without the repository passphrase and the cloud credentials, which only
// ferry itself needs.
import * as fs from 'node:fs';
import { expect, it } from 'vitest';
import * as path from 'node:path';
import { expectSuccess, FAST_KDF, ferry, useScratch, writeRandomishImage } from '../support';
import { mountLoopFileSystem } from '../support/loopFileSystems';

const scratch = useScratch('hook-environment');

const secrets = {
  FERRY_PASSWORD_FILE: scratch.path('password'),
  AWS_ACCESS_KEY_ID: 'AKIAFERRYTEST',
  AWS_SECRET_ACCESS_KEY: 'ferry-test-secret-access-key',
  AWS_SESSION_TOKEN: 'ferry-test-session-token',
};

it('a pre and a post hook that dump their environment see no passphrase and no cloud secret', async () => {
  fs.writeFileSync(secrets.FERRY_PASSWORD_FILE, 'hook environment\n', { mode: 0o600 });
  const repo = scratch.path('repo');
  // A hooked guest counts as running, so its disk needs a snapshot: a reflink copy on xfs.
  const xfs = await mountLoopFileSystem(scratch, 'xfs', { mkfs: ['mkfs.xfs', '-q', '-m', 'reflink=1'], sizeMiB: 512 });
  const image = path.join(xfs, 'appliance.img');
  writeRandomishImage(image, 4 * 1024 * 1024, 5);
  const dump = (which: string) => JSON.stringify(['/bin/sh', '-c', `env > ${scratch.path(`{name}.${which}.env`)}`]);
  const conf = scratch.path('ferry.conf');
  fs.writeFileSync(conf, [
    `repository = ${JSON.stringify(repo)}`,
    '[[static.guest]]',
    'name = "appliance"',
    `disks = [${JSON.stringify(image)}]`,
    `pre_hook = ${dump('pre')}`,
    `post_hook = ${dump('post')}`,
    '[guest."appliance"]',
    'snapshot = "reflink"',
    '',
  ].join('\n'));
  const env = { ...secrets, FERRY_TEST_VISIBLE: 'passed-on' };
  expectSuccess(await ferry(['init', '--repo', repo, ...FAST_KDF], { env }));
  expectSuccess(await ferry(['backup', '--all', '--config', conf, '--work-dir', path.join(xfs, 'work')], { env }));

  for (const which of ['pre', 'post']) {
    const seen = fs.readFileSync(scratch.path(`appliance.${which}.env`), 'utf8');
    expect(seen, `${which} hook`).toMatch(/^FERRY_TEST_VISIBLE=passed-on$/m);
    for (const [name, value] of Object.entries(secrets)) {
      expect(seen, `${which} hook must not see ${name}`).not.toContain(`${name}=`);
      expect(seen, `${which} hook must not see the value of ${name}`).not.toContain(value);
    }
  }
});
