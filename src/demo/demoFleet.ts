// `ferry demo`: the whole main job on an embedded default. Builds three sparse
// guest images that share a base (as clones of one template do), backs them
// up into a local repository on two "nights" with changes in between,
// restores one guest and proves it bit-exact and sparse.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { LocalBackend } from '../storage/local';
import { Repository } from '../repo/repository';
import { DEFAULT_KDF } from '../crypto/keySlot';
import { DEFAULT_CHUNKER, parseChunkerSpec } from '../dedupe/chunkerParams';
import { PipelinePool } from '../workers/pipelinePool';
import { backupGuest, imageBackupRequest, withPreviousDisks } from '../backup/guestBackup';
import { restoreToDirectory } from '../restore/guestRestore';
import { FerryError } from '../errors';
import { SeededRandom } from './seededRandom';

const MiB = 1024 * 1024;
const IMAGE_SIZE = 512 * MiB;
const DEMO_PASSPHRASE = 'ferry-demo-passphrase';

/** Deterministic bytes: half text-like (compressible), half noise, like a real disk. */
function pseudoData(seed: number, length: number): Buffer {
  const out = new SeededRandom(seed).fill(Buffer.allocUnsafe(length));
  const words = Buffer.from('Nov 27 01:00:01 host kernel: [ 1.234] ext4 mounted filesystem, ordered data mode\n');
  for (let block = 0; block < length; block += 8192) words.copy(out, block, 0, Math.min(words.length, length - block));
  for (let block = 4096; block < length; block += 8192) out.fill(words, block, Math.min(block + 4096, length));
  return out;
}

function writeAt(file: string, offset: number, data: Buffer): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, data, 0, data.length, offset);
  } finally {
    fs.closeSync(fd);
  }
}

function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

function makeTemplate(file: string): void {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, IMAGE_SIZE);
  // An "installed system": a few extents of data with holes between them.
  for (let i = 0; i < 6; i++) writeAt(file, i * 64 * MiB + 1 * MiB, pseudoData(100 + i, 8 * MiB));
}

export async function runDemo(dirOption: string | undefined, keep: boolean, threads?: number): Promise<void> {
  const dir = dirOption ?? fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-demo-'));
  fs.mkdirSync(dir, { recursive: true });
  const say = (s: string) => console.log(s);
  const fleet = path.join(dir, 'fleet');
  const repoDir = path.join(dir, 'repository');
  fs.mkdirSync(fleet, { recursive: true });
  if (fs.existsSync(repoDir)) throw new FerryError(`demo: ${repoDir} already exists; pass an empty --dir`);

  say(`ferry demo in ${dir}`);
  const guests = ['web01', 'web02', 'db01'];
  for (const [n, g] of guests.entries()) {
    const img = path.join(fleet, `${g}.img`);
    makeTemplate(img); // written, not copied: a plain copy would fill the holes
    writeAt(img, 400 * MiB, pseudoData(1000 + n, 4 * MiB)); // what makes each guest itself
    fs.writeFileSync(path.join(fleet, `${g}.cfg`), `name = "${g}"\nmemory = 1024\nvcpus = 2\ndisk = ['file:/var/lib/xen/${g}.img,xvda,w']\n`);
  }
  say(`built ${guests.length} guests: ${guests.length} x ${IMAGE_SIZE / MiB} MiB sparse images sharing a 48 MiB base`);

  const repo = await Repository.init(new LocalBackend(repoDir), Buffer.from(DEMO_PASSPHRASE), {
    chunker: parseChunkerSpec(DEFAULT_CHUNKER), packSize: 16 * MiB, compressionLevel: 3, kdf: DEFAULT_KDF, secretKind: 'passphrase',
  });
  say(`created repository ${repoDir} (passphrase: ${DEMO_PASSPHRASE})`);
  const pool = new PipelinePool(repo.keys, repo.settings, threads);
  try {
    for (const night of [1, 2]) {
      if (night === 2) {
        for (const [n, g] of guests.entries()) {
          const img = path.join(fleet, `${g}.img`);
          writeAt(img, 200 * MiB + n * MiB, pseudoData(5000 + n, 1 * MiB)); // logs
        }
        const db = path.join(fleet, 'db01.img');
        for (let p = 0; p < 100; p++) writeAt(db, 1 * MiB + ((p * 7919) % 2000) * 4096, pseudoData(9000 + p, 4096)); // scattered pages
        say('night 2: appended logs on every guest, rewrote 100 scattered 4 KiB pages in db01');
      }
      for (const g of guests) {
        const request = imageBackupRequest(g, [path.join(fleet, `${g}.img`)], path.join(fleet, `${g}.cfg`), [`night${night}`]);
        const r = await backupGuest(repo, pool, await withPreviousDisks(repo, request));
        const s = r.restorePoint.stats;
        say(`night ${night}: ${g} -> restore point ${r.id.slice(0, 8)}: read ${(s.readBytes / MiB).toFixed(0)} MiB of ${(s.logicalBytes / MiB).toFixed(0)} MiB, stored ${(s.newBytes / MiB).toFixed(2)} MiB new`);
      }
    }
    const latest = await repo.findRestorePoint('latest', 'db01');
    const target = path.join(dir, 'restored');
    const files = await restoreToDirectory(repo, pool, latest, target);
    const image = files[0].path;
    const same = sha256(image) === sha256(path.join(fleet, 'db01.img'));
    const allocated = fs.statSync(image).blocks * 512;
    say(`restored db01 to ${image}: ${same ? 'bit-exact' : 'DIFFERENT'}, ${(allocated / MiB).toFixed(0)} MiB allocated of ${IMAGE_SIZE / MiB} MiB (sparse)`);
    let stored = 0;
    for await (const p of repo.backend.list('data')) stored += p.size;
    say(`repository holds ${(stored / MiB).toFixed(1)} MiB for 6 restore points of ${(6 * IMAGE_SIZE) / MiB} MiB logical`);
    if (!same) throw new FerryError('demo: restored image differs from the source; please report this');
    if (keep || dirOption) say(`next: ferry list --repo ${repoDir}   (FERRY_PASSWORD=${DEMO_PASSPHRASE})`);
  } finally {
    await pool.close();
    if (!keep && !dirOption) fs.rmSync(dir, { recursive: true, force: true });
  }
}
