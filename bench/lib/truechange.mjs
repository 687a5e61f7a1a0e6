#!/usr/bin/env node
// Count the bytes that truly changed between two images of the same size:
// the number of differing 4 KiB blocks × 4 KiB. Also reports the non-zero
// bytes of the new image (the data any tool has to store at least once).
//
//   node bench/lib/truechange.mjs OLD.img NEW.img   → prints JSON
import fs from 'node:fs';

const [a, b] = process.argv.slice(2);
const BS = 4096;
const CH = 4 << 20;
const fa = fs.openSync(a, 'r');
const fb = fs.openSync(b, 'r');
const size = fs.fstatSync(fb).size;
const ba = Buffer.alloc(CH);
const bb = Buffer.alloc(CH);
const zero = Buffer.alloc(BS);
let changed = 0;
let nonzero = 0;
for (let off = 0; off < size; off += CH) {
  const n = fs.readSync(fb, bb, 0, CH, off);
  const m = fs.readSync(fa, ba, 0, CH, off);
  if (m < n) ba.fill(0, m, n);
  if (ba.subarray(0, n).equals(bb.subarray(0, n))) {
    for (let i = 0; i < n; i += BS) if (!bb.subarray(i, i + BS).equals(zero.subarray(0, Math.min(BS, n - i)))) nonzero += BS;
    continue;
  }
  for (let i = 0; i < n; i += BS) {
    const x = bb.subarray(i, Math.min(i + BS, n));
    if (!x.equals(ba.subarray(i, Math.min(i + BS, n)))) changed += BS;
    if (!x.equals(zero.subarray(0, x.length))) nonzero += BS;
  }
}
console.log(JSON.stringify({ old: a, new: b, size, changedBytes: changed, nonzeroBytes: nonzero }));
