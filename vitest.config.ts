import * as fs from 'node:fs';
import * as path from 'node:path';
import { defineConfig } from 'vitest/config';

// Test files that use something of which this machine has only one, and that
// a test file does not own alone: libvirtd (one daemon per machine; a file
// starts it or reuses it, and stops what it started). They run one at a time,
// after the others. Everything else a test uses is its own (scratch
// directories, loop devices, network namespaces, sshd, QEMU, a Ceph cluster
// on free ports, FERRY_RUN_DIR and FERRY_STATE_DIR per file), so two files
// run at once: on 2 cores most files wait on processes, disks and sshd for
// much of their time.
const SHARED_HOST_RESOURCE = /libvirt/i;

function testFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.test.ts'))
    .map((e) => path.relative(__dirname, path.join(e.parentPath, e.name)));
}

const sharedHostFiles = testFiles(path.join(__dirname, 'tests'))
  .filter((file) => SHARED_HOST_RESOURCE.test(fs.readFileSync(path.join(__dirname, file), 'utf8')));

export default defineConfig({
  test: {
    globalSetup: ['tests/support/globalSetup.ts'],
    // Integration tests run real backups of disk images on 2 cores.
    testTimeout: 300_000,
    hookTimeout: 300_000,
    pool: 'forks',
    projects: [
      {
        extends: true,
        test: {
          name: 'own-resources',
          include: ['tests/**/*.test.ts'],
          exclude: sharedHostFiles,
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'shared-host',
          include: sharedHostFiles,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
