// The end of a site restore as a person sees it: a real bootable guest, backed
// up here, restored onto a fresh host over ssh, and started there with the
// launcher site restore wrote; it boots from its restored disk alone and
// prints its own name and the checksum of its data.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { TestRepo, expectSuccess, parseJson, useScratch } from '../support';
import { buildBootableGuest, type BootableGuestDisk, waitForGuestIdentity } from '../support/bootableGuest';
import { type SshHostSet, startSshHosts } from '../support/sshHosts';

const scratch = useScratch('site-restore-boot');
let repo: TestRepo;
let hosts: SshHostSet;
let guest: BootableGuestDisk;

beforeAll(async () => {
  hosts = await startSshHosts(scratch, ['new01']);
  repo = await TestRepo.init(scratch, 'repo');
  guest = await buildBootableGuest(scratch.path('boot01.img'), 'boot01');
  await repo.backup('boot01', [guest.path]);
});

describe('a guest brought back by site restore', () => {
  it('boots on its new host from the restored disk with the launcher site restore wrote, and is the same guest', async () => {
    const host = hosts.host('new01');
    const configDir = path.join(host.root, 'etc', 'ferry', 'qemu');
    const hostsToml = scratch.path('hosts.toml');
    fs.writeFileSync(hostsToml, `ssh_config = "${hosts.configFile}"\n[[host]]\nname = "new01"\naddress = "${host.url}"\nhypervisor = "qemu"\naccel = "tcg"\nmemory = "2G"\ncpus = 2\nconfig_dir = "${configDir}"\n[[host.pool]]\nname = "images"\ntype = "dir"\npath = "${host.pool}"\n`);
    const planFile = scratch.path('plan.json');
    expectSuccess(await repo.run(['site', 'plan', '--hosts', hostsToml, '--out', planFile]));
    const report = parseJson<Array<{ ok: boolean; configFiles: string[] }>>(await repo.run(['site', 'restore', '--plan', planFile, '--json']));
    expect(report[0]!.ok).toBe(true);
    const launcher = path.join(configDir, 'boot01.sh');
    expect(report[0]!.configFiles).toContain(launcher);
    // Started on the host itself (inside its network namespace), as an admin would.
    await hosts.ssh('new01', `sh ${launcher}`, { timeoutMs: 60_000 });
    const seen = await waitForGuestIdentity(path.join(configDir, 'run', 'boot01.serial'));
    expect(seen).toMatchObject({ name: 'boot01', sum: guest.sum });
  });
});
