// A ferry killed while it holds a libvirt domain suspended leaves the domain
// running again: the out-of-process watchdog, armed right before
// `virsh suspend`, runs `virsh -c URI resume NAME` when ferry's end of its
// pipe closes (SIGKILL included). A real domain (TCG) defined through the
// libvirtd testbed, with its raw disk on an xfs (reflink=1) loop file system
// and `snapshot = "reflink"` in ferry.conf: a reflink clone is only a point in
// time while the guest stands still, so ferry suspends it (no guest agent
// answers here, so it suspends rather than freezes). The domain, libvirtd if
// started here, the mount and all files are removed at clean-up.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { useScratch } from '../support/scratch';
import { ferry, spawnFerry, expectSuccess, describeResult, FAST_KDF } from '../support/ferry';
import { mountLoopFileSystem } from '../support/loopFileSystems';
import {
  type DomainSpec, LIBVIRT_URI, copyDisk, domstate, startNewDomain, useLibvirtGuestFiles, waitForWrites,
  writtenFiles,
} from '../support/libvirtGuest';

const scratch = useScratch('fleet-libvirt-watchdog');
const NAME = `ferry-lv-wd-${process.pid}`;
const env = { FERRY_PASSWORD: 'fleet-libvirt-watchdog' };
let repo: string;
let spec: DomainSpec;

beforeAll(async () => {
  const files = await useLibvirtGuestFiles(scratch);
  // A disk on xfs is copied by reflink, which needs the guest suspended around the copy.
  const mount = await mountLoopFileSystem(scratch, 'xfs', { mkfs: ['mkfs.xfs', '-q', '-m', 'reflink=1'], sizeMiB: 600 });
  spec = {
    name: NAME,
    files,
    disks: [{ path: await copyDisk(files, path.join(mount, 'vda.img'), 'raw'), format: 'raw' }],
    consoleLog: scratch.path('console.log'),
    mac: '52:54:00:fe:03:01',
  };
  await startNewDomain(scratch, spec);
  repo = scratch.path('repo');
  expectSuccess(await ferry(['init', '--repo', repo, ...FAST_KDF], { env }), 'init');
  await waitForWrites(spec.consoleLog, 0, 2);
}, 300_000);

describe('a ferry killed while it holds a libvirt domain suspended', () => {
  it('leaves the domain running again and writing: the watchdog ran virsh resume', async () => {
    const conf = scratch.path('ferry.conf');
    fs.writeFileSync(conf, `[libvirt]\nuri = ${JSON.stringify(LIBVIRT_URI)}\n\n[guest."${NAME}"]\nsnapshot = "reflink"\n`);
    // --guest: only this test's domain, whatever else the shared libvirtd holds.
    const running = spawnFerry(['backup', '--all', '--guest', NAME, '--repo', repo, '--config', conf, '--work-dir', scratch.mkdir('work')], {
      env: { ...env, FERRY_HOLD_QUIESCE_MS: '60000' },
    });
    // Listing one domain and asking its (absent) guest agent takes seconds, even with libvirtd slow on a busy host.
    const deadline = Date.now() + 120_000;
    let exited = false;
    void running.done.then(() => (exited = true));
    while ((await domstate(NAME)) !== 'paused') {
      if (exited || Date.now() > deadline) {
        running.child.kill('SIGKILL');
        throw new Error(`ferry never suspended the domain: ${describeResult(await running.done)}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    // Held for 60 s (FERRY_HOLD_QUIESCE_MS): ferry is killed while the domain is suspended.
    const writesWhenKilled = writtenFiles(spec.consoleLog).length;
    running.child.kill('SIGKILL');
    // 60 s: the watchdog runs `virsh resume` as soon as ferry's pipe closes; one virsh call takes a
    // second or a few on this shared 2-core host. Far below the 120 s the watchdog would keep
    // retrying a failing resume, so a pass means its first attempts worked.
    const resumeDeadline = Date.now() + 60_000;
    while ((await domstate(NAME)) !== 'running') {
      if (Date.now() > resumeDeadline) throw new Error('the domain is still not running 60 s after ferry was killed');
      await new Promise((r) => setTimeout(r, 100));
    }
    // The guest writes again: it was really resumed, not just reported so.
    await waitForWrites(spec.consoleLog, writesWhenKilled, 2);
    // `done` resolves once ferry's stderr pipe closes; the watchdog inherited it, so its own line is in there.
    const result = await running.done;
    expect(result.signal, describeResult(result)).toBe('SIGKILL');
    expect(result.stderr).toContain(`ferry watchdog: ferry exited while the guest was held; ran virsh -c ${LIBVIRT_URI} resume ${NAME}\n`);
    expect(await domstate(NAME)).toBe('running');
  });
});
