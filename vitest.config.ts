import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    globalSetup: ['tests/support/globalSetup.ts'],
    // Integration tests run real backups of disk images on 2 cores.
    testTimeout: 300_000,
    hookTimeout: 300_000,
    // One test file at a time: integration tests take loop devices, mounts and
    // most of the CPU; running two at once makes them fight and time out.
    fileParallelism: false,
    pool: 'forks',
  },
});
