// Bad command-line arguments get a usage error naming what is wrong (exit 2,
// one line), never "internal error", and leave nothing behind.
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EXIT, expectCleanFailure, ferry, useScratch, writeRandomishImage } from '../support';

const scratch = useScratch('bad-arguments');
const MiB = 1024 * 1024;

/** A ferry.conf with one static guest, so `backup --all` has a guest list to match patterns against. */
function staticFleetConfig(): string {
  const disk = scratch.path('web01.img');
  if (!fs.existsSync(disk)) writeRandomishImage(disk, 1 * MiB, 1);
  const conf = scratch.path('ferry.conf');
  fs.writeFileSync(conf, `[[static.guest]]\nname = "web01"\ndisks = [${JSON.stringify(disk)}]\n`);
  return conf;
}

describe('guest patterns on the command line', () => {
  it.each([
    ['--guest', '[web', /--guest "\[web": not a valid guest pattern \('\[' without a closing '\]'\)/],
    ['--guest', '[z-a]*', /--guest "\[z-a\]\*": not a valid guest pattern \(a range in \[\.\.\.\] runs backwards\)/],
    ['--guest', '', /--guest "": not a valid guest pattern \(an empty pattern matches no guest\)/],
    ['--exclude', 'db[0-9', /--exclude "db\[0-9": not a valid guest pattern/],
  ])('backup --all %s %j is a usage error naming the pattern', async (option, pattern, message) => {
    const repo = scratch.path('never-created');
    const r = await ferry(['backup', '--all', '--config', staticFleetConfig(), '--repo', repo, option, pattern, '--work-dir', scratch.path('work')], {
      env: { FERRY_PASSWORD: 'x' },
    });
    expectCleanFailure(r, { code: EXIT.usage, message });
    expect(fs.existsSync(repo)).toBe(false);
  });
});

describe('repository locations', () => {
  it.each([
    [['init', '--repo', 'sftp://h/x'], /sftp:\/\/h\/x: unsupported repository scheme 'sftp:'/],
    [['list', '--repo', 'sftp://h/x'], /unsupported repository scheme 'sftp:'/],
    [['init', '--repo', 'file:///srv/ferry'], /unsupported repository scheme 'file:'/],
    [['init', '--from', 'sftp://h/x', '--repo', 'copy'], /unsupported repository scheme 'sftp:'/],
    [['sync', 'source', 'sftp://h/x'], /unsupported repository scheme 'sftp:'/],
  ])('ferry %j refuses the scheme in one line and creates nothing in the working directory', async (args, message) => {
    const cwd = scratch.mkdir(`cwd-${args.join('-').replace(/[^a-z]/g, '')}`);
    if (args[0] === 'sync') fs.mkdirSync(`${cwd}/source`);
    const before = fs.readdirSync(cwd);
    const r = await ferry(args, { cwd, env: { FERRY_PASSWORD: 'x' } });
    expectCleanFailure(r, { code: EXIT.usage, message });
    expect(fs.readdirSync(cwd)).toEqual(before);
  });
});
