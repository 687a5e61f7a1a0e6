#!/usr/bin/env node
// Deterministic (seeded) content generators for bench/corpus.sh.
//
//   gen.mjs db FILE MIB SEED               create a database-like file of 4 KiB pages
//   gen.mjs pages FILE COUNT SEED          overwrite COUNT scattered 4 KiB pages in place
//   gen.mjs log FILE BYTES SEED NIGHT      append syslog-like text lines
//   gen.mjs blob DIR MIB SEED              distinct random + text files in DIR
//   gen.mjs pick-debs ARCHIVE_DIR GUESTS NIGHTS BASE_KB NIGHT_KB SEED
//                                          print "guest night path" lines: a disjoint,
//                                          seeded selection of .deb files per guest/night
//
// Randomness comes from AES-128-CTR keyed by SHA-256(seed), so the same seed gives
// the same bytes on every machine and Node version.
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';

const PAGE = 4096;

class Rng {
  constructor(seed) {
    const k = crypto.createHash('sha256').update(String(seed)).digest();
    this.cipher = crypto.createCipheriv('aes-128-ctr', k.subarray(0, 16), k.subarray(16, 32));
    this.pool = Buffer.alloc(0);
    this.pos = 0;
  }
  bytes(n) {
    if (this.pos + n > this.pool.length) {
      const want = Math.max(n, 1 << 20);
      this.pool = Buffer.concat([this.pool.subarray(this.pos), this.cipher.update(Buffer.alloc(want))]);
      this.pos = 0;
    }
    const out = this.pool.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  u32() {
    return this.bytes(4).readUInt32LE(0);
  }
  below(n) {
    // n < 2^32; the modulo bias is irrelevant here
    return this.u32() % n;
  }
  float() {
    return this.u32() / 2 ** 32;
  }
}

const WORDS = (
  'the of and to in is for on that with as by at from this be are or an it not was which have has ' +
  'user session opened closed connection accepted rejected started stopped service daemon kernel ' +
  'eth0 link up down timeout retry request response error warning info debug cache miss hit ' +
  'order customer invoice payment shipped pending account balance total amount item quantity ' +
  'price region north south east west alpha beta gamma delta backup restore snapshot volume disk'
).split(' ');
const NAMES = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy'];

function sentence(rng, nWords) {
  const w = [];
  for (let i = 0; i < nWords; i++) w.push(WORDS[rng.below(WORDS.length)]);
  return w.join(' ');
}

// A database page: header, some rows of text-like records, a random (e.g.
// compressed/encrypted blob) region, and free space (zeros) at the end.
// Compresses ~2x, like real database files.
function dbPage(rng, pageNo, version) {
  const p = Buffer.alloc(PAGE);
  p.writeUInt32LE(0x46455252, 0); // magic
  p.writeUInt32LE(pageNo, 4);
  p.writeUInt32LE(version, 8);
  rng.bytes(20).copy(p, 12); // checksum-like
  let off = 32;
  const fill = 0.45 + rng.float() * 0.5; // 45..95% used
  const limit = Math.floor(PAGE * fill);
  while (off < limit) {
    if (rng.below(4) === 0) {
      const n = Math.min(64 + rng.below(256), limit - off);
      rng.bytes(n).copy(p, off);
      off += n;
    } else {
      const rec = `${pageNo}|${NAMES[rng.below(NAMES.length)]}|${rng.below(100000)}|${sentence(rng, 3 + rng.below(8))};`;
      off += p.write(rec, off, Math.min(rec.length, limit - off), 'latin1');
    }
  }
  return p;
}

function cmdDb(file, mib, seed) {
  const rng = new Rng(`db:${seed}`);
  const pages = (Number(mib) * 1024 * 1024) / PAGE;
  const fd = fs.openSync(file, 'w');
  const batch = 256;
  for (let i = 0; i < pages; i += batch) {
    const bufs = [];
    for (let j = i; j < Math.min(pages, i + batch); j++) bufs.push(dbPage(rng, j, 0));
    fs.writeSync(fd, Buffer.concat(bufs));
  }
  fs.fsyncSync(fd);
  fs.closeSync(fd);
}

function cmdPages(file, count, seed) {
  const rng = new Rng(`pages:${seed}`);
  const fd = fs.openSync(file, 'r+');
  const pages = Math.floor(fs.fstatSync(fd).size / PAGE);
  for (let i = 0; i < Number(count); i++) {
    const pg = rng.below(pages);
    fs.writeSync(fd, dbPage(rng, pg, 1 + i), 0, PAGE, pg * PAGE);
  }
  fs.fsyncSync(fd);
  fs.closeSync(fd);
}

function cmdLog(file, bytes, seed, night) {
  const rng = new Rng(`log:${seed}`);
  const lines = [];
  let n = 0;
  let t = Date.UTC(2024, 0, 1 + Number(night)) / 1000;
  const hosts = ['web', 'db', 'cache', 'worker'];
  const procs = ['sshd', 'cron', 'systemd', 'postgres', 'nginx', 'kernel', 'backupd'];
  while (n < Number(bytes)) {
    t += rng.below(3);
    const d = new Date(t * 1000).toISOString().replace('T', ' ').slice(0, 19);
    const l = `${d} ${hosts[rng.below(hosts.length)]}${rng.below(9)} ${procs[rng.below(procs.length)]}[${1000 + rng.below(30000)}]: ${sentence(rng, 4 + rng.below(14))} id=${rng.bytes(6).toString('hex')}\n`;
    lines.push(l);
    n += l.length;
  }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.appendFileSync(file, lines.join(''));
}

function cmdBlob(dir, mib, seed) {
  const rng = new Rng(`blob:${seed}`);
  fs.mkdirSync(dir, { recursive: true });
  let left = Number(mib) * 1024 * 1024;
  let i = 0;
  while (left > 0) {
    const size = Math.min(left, 64 * 1024 + rng.below(1024 * 1024));
    let buf;
    if (i % 2 === 0) {
      buf = Buffer.from(rng.bytes(size)); // incompressible (media, archives)
    } else {
      const parts = [];
      let n = 0;
      while (n < size) {
        const s = sentence(rng, 8 + rng.below(20)) + '.\n';
        parts.push(s);
        n += s.length;
      }
      buf = Buffer.from(parts.join('')).subarray(0, size);
    }
    fs.writeFileSync(path.join(dir, `file-${String(i).padStart(4, '0')}.${i % 2 ? 'txt' : 'bin'}`), buf);
    left -= size;
    i++;
  }
}

function cmdPickDebs(archive, guests, nights, baseKb, nightKb, seed) {
  const rng = new Rng(`debs:${seed}`);
  let debs = [];
  try {
    debs = fs
      .readdirSync(archive)
      .filter((f) => f.endsWith('.deb'))
      .sort()
      .map((f) => ({ f: path.join(archive, f), kb: fs.statSync(path.join(archive, f)).size / 1024 }));
  } catch {
    /* no archive: corpus.sh falls back to synthetic packages */
  }
  // Fisher-Yates with the seeded RNG
  for (let i = debs.length - 1; i > 0; i--) {
    const j = rng.below(i + 1);
    [debs[i], debs[j]] = [debs[j], debs[i]];
  }
  let k = 0;
  const take = (budgetKb, maxKb) => {
    const out = [];
    let got = 0;
    let tries = 0;
    while (got < budgetKb && k < debs.length && tries < debs.length) {
      const d = debs[k++];
      tries++;
      if (d.kb > maxKb) continue;
      out.push(d.f);
      got += d.kb;
    }
    return out;
  };
  for (let g = 1; g <= Number(guests); g++) {
    for (const f of take(Number(baseKb), 8192)) console.log(`${g} 0 ${f}`);
  }
  for (let n = 1; n <= Number(nights); n++) {
    for (let g = 1; g <= Number(guests); g++) {
      for (const f of take(Number(nightKb), 2048)) console.log(`${g} ${n} ${f}`);
    }
  }
}

const [cmd, ...a] = process.argv.slice(2);
switch (cmd) {
  case 'db':
    cmdDb(a[0], a[1], a[2]);
    break;
  case 'pages':
    cmdPages(a[0], a[1], a[2]);
    break;
  case 'log':
    cmdLog(a[0], a[1], a[2], a[3]);
    break;
  case 'blob':
    cmdBlob(a[0], a[1], a[2]);
    break;
  case 'pick-debs':
    cmdPickDebs(a[0], a[1], a[2], a[3], a[4], a[5]);
    break;
  default:
    console.error('usage: gen.mjs db|pages|log|blob|pick-debs ...');
    process.exit(2);
}
