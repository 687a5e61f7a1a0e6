// V8's --optimize-for-size, set at start, before any worker exists (each
// worker isolate takes the process's V8 flags when it is created). Measured on
// the bench's dense guests (docs/ARCHITECTURE.md, "Memory"): a nightly backup
// peaks 15-19 MiB lower and a restore 15-20 MiB lower at the same CPU time;
// check --read-data 26-29 MiB lower at about the same CPU time since it reads
// packs in 4 MiB pieces (with whole 16 MiB packs it cost ~30 % more CPU, so
// check kept V8's defaults until then).
import * as v8 from 'node:v8';

export function favourSmallHeaps(): void {
  v8.setFlagsFromString('--optimize-for-size');
}
