// Byte ranges into a file on another host over one ssh session, with only sh
// and coreutils there (a real sshd in a network namespace).
import * as fs from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { ExecFileCommandRunner } from '../../src/hypervisor/commandRunner';
import { StorageError } from '../../src/errors';
import { RemoteFileWriter } from '../../src/site/remoteFileWriter';
import { SshCommandRunner } from '../../src/site/sshCommandRunner';
import { allocatedBytes, pseudoRandomBytes, useScratch } from '../support';
import { type SshHostSet, startSshHosts } from '../support/sshHosts';

const scratch = useScratch('remote-file-writer');
const MiB = 1024 * 1024;
let hosts: SshHostSet;
let sshArgs: string[];

beforeAll(async () => {
  hosts = await startSshHosts(scratch, ['new01']);
  const host = hosts.host('new01');
  sshArgs = new SshCommandRunner({ kind: 'ssh', destination: `root@${host.address}` }, new ExecFileCommandRunner(), hosts.configFile).sshArgs();
});

describe('RemoteFileWriter', () => {
  it('creates a sparse file of the full size and puts every range at its offset, exactly', async () => {
    const target = `${hosts.host('new01').pool}/disk.img`;
    const ranges = [
      { offset: 0, data: pseudoRandomBytes(1, 0, 3 * MiB + 17) },
      { offset: 40 * MiB, data: pseudoRandomBytes(1, 1, 8 * MiB) },
      { offset: 63 * MiB, data: pseudoRandomBytes(1, 2, MiB) },
    ];
    const w = RemoteFileWriter.open(sshArgs, target, 64 * MiB, 'new01:disk.img');
    for (const r of ranges) await w.write(r.offset, r.data);
    await w.close();
    const written = fs.readFileSync(target);
    const expected = Buffer.alloc(64 * MiB);
    for (const r of ranges) r.data.copy(expected, r.offset);
    expect(written.length).toBe(64 * MiB);
    expect(written.equals(expected)).toBe(true);
    expect(allocatedBytes(target)).toBeLessThan(16 * MiB); // the gaps stayed holes
  });

  it('writes into an existing file in place on a re-run', async () => {
    const target = `${hosts.host('new01').pool}/again.img`;
    fs.writeFileSync(target, Buffer.alloc(MiB, 7));
    const w = RemoteFileWriter.open(sshArgs, target, MiB, 'new01:again.img');
    await w.write(4096, Buffer.alloc(4096, 1));
    await w.close();
    const b = fs.readFileSync(target);
    expect([b[0], b[4096], b[8191], b[8192]]).toEqual([7, 1, 1, 7]);
  });

  it('fails with the remote reason when the target cannot be written', async () => {
    const w = RemoteFileWriter.open(sshArgs, '/nonexistent-dir/disk.img', MiB, 'new01:/nonexistent-dir/disk.img');
    const err = await (async () => {
      await w.write(0, Buffer.alloc(MiB, 1));
      await w.close();
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    // Whichever ssh reports first, its exit or the broken pipe of the data after it, the remote's reason is the message.
    expect((err as Error).message).toMatch(/^writing new01:\/nonexistent-dir\/disk\.img over ssh failed( \(exit \d+\))?: truncate: .*No such file or directory$/);
  });
});
