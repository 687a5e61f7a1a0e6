// The peak resident memory of a whole ferry run (main thread and workers):
// the kernel's high-water mark VmHWM, read by the process itself as it exits
// through a preloaded script, so no sample can miss the peak.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Scratch } from './scratch';
import { ferry, FerryOptions } from './ferry';
import type { CommandResult } from './system';

const PRELOAD = `process.on('exit', () => {
  const fs = require('fs');
  const hwm = /VmHWM:\\s+(\\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  fs.writeFileSync(process.env.FERRY_TEST_PEAK_RSS_FILE, String(Number(hwm[1]) * 1024));
});
`;

export interface MeasuredRun {
  result: CommandResult;
  peakRssBytes: number;
}

/** Run `ferry ARGS...` and report its peak RSS in bytes. */
export async function ferryPeakRss(scratch: Scratch, args: string[], opts: FerryOptions = {}): Promise<MeasuredRun> {
  const preload = scratch.path('peak-rss-preload.js');
  if (!fs.existsSync(preload)) fs.writeFileSync(preload, PRELOAD);
  const out = scratch.path(`peak-rss-${process.pid}-${Date.now()}-${Math.random().toString(16).slice(2)}`);
  const nodeOptions = [process.env.NODE_OPTIONS, `--require ${path.resolve(preload)}`].filter(Boolean).join(' ');
  // FERRY_TEST_PEAK_RSS_FILE is the preload's, not ferry's.
  const result = await ferry(args, { ...opts, env: { ...opts.env, NODE_OPTIONS: nodeOptions, FERRY_TEST_PEAK_RSS_FILE: out } });
  const peakRssBytes = fs.existsSync(out) ? Number(fs.readFileSync(out, 'utf8')) : NaN;
  return { result, peakRssBytes };
}
