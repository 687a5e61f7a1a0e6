// Removing a key slot shuts a passphrase out of this repository only: `key
// remove` says so plainly, and `ferry sync` carries the removal to copy
// targets, so the passphrase stops opening them too after the next sync.
import * as fs from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT, expectCleanFailure, expectSuccess, ferry, listFiles, parseJson, TestRepo, useScratch, writeRandomishImage } from '../support';

const scratch = useScratch('key-removal');
let src: TestRepo;
let image: string;
let leakedSlot: string;
const leakedPasswordFile = scratch.path('leaked.password');

beforeAll(async () => {
  src = await TestRepo.init(scratch, 'src');
  image = scratch.path('web.img');
  writeRandomishImage(image, 8 * 1024 * 1024, 3);
  await src.backup('web', [image]);
  fs.writeFileSync(leakedPasswordFile, 'a passphrase that leaked\n', { mode: 0o600 });
  const added = expectSuccess(await src.run(['key', 'add', '--new-password-file', leakedPasswordFile, '--kdf-memory', '8M', '--kdf-ops', '1']));
  leakedSlot = /added key ([0-9a-f]{16})/.exec(added)![1]!;
});

const slotsOf = (repo: TestRepo) => listFiles(`${repo.path}/keys`);

describe('key remove', () => {
  it('says on stderr that copies made before still open with the removed key', async () => {
    const copy = await src.copyTo(scratch.path('usb-before-removal'));
    const scratchRepo = await src.copyTo(scratch.path('removal-here'));
    const r = await scratchRepo.run(['key', 'remove', leakedSlot]);
    expect(expectSuccess(r)).toMatch(new RegExp(`removed key ${leakedSlot}`));
    expect(r.stderr).toMatch(/copies made before .*still open with (it|its passphrase)/i);
    expect(r.stderr).toMatch(/ferry sync/);
    expect(slotsOf(scratchRepo)).not.toContain(leakedSlot);
    // What the message says is true: the earlier copy still opens with the removed passphrase.
    expectSuccess(await copy.run(['list'], { env: { FERRY_PASSWORD_FILE: leakedPasswordFile } }));
  });
});

describe('sync carries key-slot removals to the target', () => {
  it('a slot removed at the source is removed at the target after the copy; the removed passphrase no longer opens the copy', async () => {
    const dst = scratch.path('offsite');
    expectSuccess(await ferry(['init', '--from', src.path, '--repo', dst]));
    expectSuccess(await ferry(['sync', src.path, dst]));
    expect(slotsOf(src.at(dst))).toContain(leakedSlot);
    expectSuccess(await ferry(['list', '--repo', dst], { env: { FERRY_PASSWORD_FILE: leakedPasswordFile } }));

    expectSuccess(await src.run(['key', 'remove', leakedSlot]));
    const summary = parseJson<{ removedKeySlots: string[] }>(await ferry(['sync', src.path, dst, '--json']));
    expect(summary.removedKeySlots).toEqual([leakedSlot]);
    expect(slotsOf(src.at(dst))).toEqual(slotsOf(src));
    expectCleanFailure(await ferry(['list', '--repo', dst], { env: { FERRY_PASSWORD_FILE: leakedPasswordFile } }), { code: EXIT.wrongPassword });
    // The remaining passphrase still opens the copy, and a second sync removes nothing more.
    expect((await src.at(dst).list()).length).toBe(1);
    const text = expectSuccess(await ferry(['sync', src.path, dst]));
    expect(text).not.toMatch(/removed/);
  });

  it('says in its summary line which slots it removed', async () => {
    const dst = scratch.path('offsite-2');
    const extra = scratch.path('extra.password');
    fs.writeFileSync(extra, 'another passphrase\n', { mode: 0o600 });
    const added = expectSuccess(await src.run(['key', 'add', '--new-password-file', extra, '--kdf-memory', '8M', '--kdf-ops', '1']));
    const slot = /added key ([0-9a-f]{16})/.exec(added)![1]!;
    expectSuccess(await ferry(['init', '--from', src.path, '--repo', dst]));
    expectSuccess(await src.run(['key', 'remove', slot]));
    const text = expectSuccess(await ferry(['sync', src.path, dst]));
    expect(text).toContain(`removed 1 key slot(s) the source no longer has (${slot})`);
  });
});
