import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { compiledScript } from '../../src/host/compiledScript';

const dist = path.join(__dirname, '..', '..', 'dist');

describe('compiledScript: the JS file a worker or child process runs', () => {
  it('loaded from the TypeScript sources, names the entry point in the build in dist/', () => {
    const script = compiledScript('hypervisor/watchdogMain');
    expect(script).toBe(path.join(dist, 'hypervisor', 'watchdogMain.js'));
    expect(fs.existsSync(script)).toBe(true);
  });

  it('loaded from the build, names the entry point beside the build\'s own modules', async () => {
    const built = (await import(path.join(dist, 'host', 'compiledScript.js'))) as { compiledScript: typeof compiledScript };
    expect(built.compiledScript('workers/pipelineWorker')).toBe(path.join(dist, 'workers', 'pipelineWorker.js'));
    expect(built.compiledScript('hypervisor/qemu/qmpCommandMain')).toBe(path.join(dist, 'hypervisor', 'qemu', 'qmpCommandMain.js'));
  });
});
