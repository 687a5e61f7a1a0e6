// `ferry import-tar`: a tar made by export-tar back into a repository, as a
// new restore point of the guest.
//
// Why a temporary sparse file per disk: the backup pipeline's workers read
// disk images by path (scan, chunk, hash, compress, seal in worker threads, so
// a 2-core host keeps both cores busy); feeding them a stream would mean a
// second pipeline. The tar is read once, each file written to a sparse
// temporary file in `tmpDir` (zero blocks are skipped, so only the data takes
// space), its SHA-256 computed on the way and checked against the manifest,
// and then the disks go through the same DiskBackup path as `ferry backup`.
// The temporary directory is removed whatever happens.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tar from 'tar-stream';
import type { Readable } from 'node:stream';
import { Repository } from '../repo/repository';
import { RestorePoint } from '../repo/restorePoint';
import { openImageSource } from '../dedupe/imageSource';
import { backupGuest } from '../backup/guestBackup';
import { PipelinePool } from '../workers/pipelinePool';
import { FerryError, InputError, StorageError, UsageError, describeSystemError } from '../errors';
import { MANIFEST_NAME, SUMS_NAME, parseManifest } from './manifest';

const BLOCK = 64 * 1024;
const ZERO_BLOCK = Buffer.alloc(BLOCK);
const MAX_SMALL_FILE = 16 * 1024 * 1024;

export interface ImportOptions {
  /** Store under this guest name instead of the manifest's. */
  guest?: string;
  tags: string[];
  /** Where the temporary sparse files go (default os.tmpdir()). */
  tmpDir?: string;
  onProgress?: (p: { phase: 'read' | 'backup'; doneBytes: number; totalBytes: number }) => void;
}

interface ReceivedFile {
  temp: string;
  size: number;
  sha256: string;
}

/** Write an entry to a sparse file: all-zero 64 KiB blocks become holes. */
async function receiveFile(entry: AsyncIterable<unknown>, temp: string, onBytes: (n: number) => void): Promise<ReceivedFile> {
  const hash = createHash('sha256');
  let fd: number;
  try {
    fd = fs.openSync(temp, 'wx', 0o600);
  } catch (err) {
    throw new StorageError(`temporary file ${temp}: ${describeSystemError(err)}; give a temporary directory on a file system with space`);
  }
  const block = Buffer.alloc(BLOCK);
  let filled = 0;
  let pos = 0;
  const flush = (): void => {
    const data = block.subarray(0, filled);
    if (!(filled === BLOCK ? data.equals(ZERO_BLOCK) : data.equals(ZERO_BLOCK.subarray(0, filled)))) {
      for (let off = 0; off < filled; ) off += fs.writeSync(fd, data, off, filled - off, pos + off);
    }
    pos += filled;
    filled = 0;
  };
  try {
    for await (const chunk of entry) {
      const buf = chunk as Buffer;
      hash.update(buf);
      onBytes(buf.length);
      for (let at = 0; at < buf.length; ) {
        const n = Math.min(BLOCK - filled, buf.length - at);
        buf.copy(block, filled, at, at + n);
        filled += n;
        at += n;
        if (filled === BLOCK) flush();
      }
    }
    if (filled > 0) flush();
    fs.ftruncateSync(fd, pos);
    fs.fsyncSync(fd);
  } catch (err) {
    if (err instanceof FerryError) throw err;
    throw new StorageError(`temporary file ${temp}: ${describeSystemError(err)}; give a temporary directory on a file system with space`, { cause: err });
  } finally {
    fs.closeSync(fd);
  }
  return { temp, size: pos, sha256: hash.digest('hex') };
}

async function readSmall(entry: AsyncIterable<unknown>, name: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  for await (const chunk of entry) {
    total += (chunk as Buffer).length;
    if (total > MAX_SMALL_FILE) throw new InputError(`tar: ${name} is larger than ${MAX_SMALL_FILE} bytes; this is not a ferry export`);
    parts.push(chunk as Buffer);
  }
  return Buffer.concat(parts);
}

export async function importTar(
  repo: Repository,
  pool: PipelinePool,
  input: Readable,
  opts: ImportOptions,
): Promise<{ id: string; restorePoint: RestorePoint }> {
  const started = Date.now();
  const tmpBase = opts.tmpDir ?? os.tmpdir();
  let tmp: string;
  try {
    tmp = fs.mkdtempSync(path.join(tmpBase, 'ferry-import-'));
  } catch (err) {
    throw UsageError.about({ parameter: 'temporary directory', value: tmpBase, detail: `${describeSystemError(err)}; give a writable directory` });
  }
  try {
    const received = await receiveTar(input, tmp, opts.onProgress);
    const { manifest, config, disks } = checkAgainstManifest(received);

    const guest = opts.guest ?? manifest.guest;
    if (!guest || /[\x00-\x1f]/.test(guest)) throw UsageError.about({ parameter: 'guest name', value: `'${guest}'`, detail: 'not a guest name' });
    // The same path as `ferry backup`, from the temporary copies.
    return await backupGuest(repo, pool, {
      guest,
      disks: disks.map(({ d, file }) => ({ source: openImageSource(file.temp), name: d.name, sourcePath: d.sourcePath || d.file })),
      config: config ? { fileName: manifest.config!.file, content: fs.readFileSync(config.temp).toString('base64') } : undefined,
      tags: [...new Set([...manifest.tags, ...opts.tags, 'imported'])],
      // The moment the disks are from, not the moment they came back: `latest` and retention mean that.
      time: manifest.time,
      startedAt: started,
    }, (p) => opts.onProgress?.({ phase: 'backup', doneBytes: p.doneBytes, totalBytes: p.totalBytes }));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** What the tar held: its files (in `tmp`, by name), the manifest's bytes and SHA256SUMS. */
interface ReceivedTar {
  files: Map<string, ReceivedFile>;
  manifestBytes?: Buffer;
  sums?: string;
}

/** Phase 1: read the tar once, each file into a sparse temporary file in `tmp`, hashing on the way. */
async function receiveTar(input: Readable, tmp: string, onProgress: ImportOptions['onProgress']): Promise<ReceivedTar> {
  const files = new Map<string, ReceivedFile>();
  let manifestBytes: Buffer | undefined;
  let sums: string | undefined;
  let readBytes = 0;
  const extract = tar.extract();
  input.on('error', (err) => extract.destroy(err));
  input.pipe(extract as unknown as NodeJS.WritableStream);
  try {
    for await (const entry of extract) {
      const name = path.posix.basename(entry.header.name);
      if (entry.header.type !== 'file' && entry.header.type !== 'contiguous-file') {
        entry.resume();
        continue;
      }
      if (name === MANIFEST_NAME) manifestBytes = await readSmall(entry, name);
      else if (name === SUMS_NAME) sums = (await readSmall(entry, name)).toString('utf8');
      else if (files.has(name)) throw new InputError(`tar: ${name} appears twice; this is not a ferry export`);
      else {
        files.set(name, await receiveFile(entry, path.join(tmp, `file-${files.size}`), (n) => {
          readBytes += n;
          onProgress?.({ phase: 'read', doneBytes: readBytes, totalBytes: 0 });
        }));
      }
    }
  } catch (err) {
    if (err instanceof FerryError) throw err;
    throw new InputError(`tar: ${(err as Error).message}; the input is not a complete tar (truncated or not a tar)`, { cause: err });
  }
  return { files, manifestBytes, sums };
}

/** Phase 2: the manifest parsed, and every file it and SHA256SUMS name present with their size and SHA-256. */
function checkAgainstManifest({ files, manifestBytes, sums }: ReceivedTar) {
  if (!manifestBytes) throw new InputError(`tar: no ${MANIFEST_NAME}; this is not a tar made by 'ferry export-tar'`);
  const { manifest, problem } = parseManifest(manifestBytes);
  if (!manifest) throw new InputError(`tar: ${MANIFEST_NAME}: ${problem}`);

  const expect = (file: string, size: number | undefined, sha256: string): ReceivedFile => {
    const got = files.get(file);
    if (!got) throw new InputError(`tar: ${file} is named in ${MANIFEST_NAME} but not in the tar; the tar is incomplete`);
    if ((size !== undefined && got.size !== size) || got.sha256 !== sha256) {
      throw new InputError(`tar: ${file} does not match ${MANIFEST_NAME} (sha256 ${got.sha256.slice(0, 16)}, expected ${sha256.slice(0, 16)}); the tar is damaged`);
    }
    return got;
  };
  // SHA256SUMS is what a person checks with sha256sum -c; hold the tar to it too.
  for (const line of (sums ?? '').split('\n')) {
    const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(line);
    if (m && m[2] !== MANIFEST_NAME) expect(m[2], undefined, m[1]);
  }
  const config = manifest.config ? expect(manifest.config.file, manifest.config.size, manifest.config.sha256) : undefined;
  const disks = manifest.disks.map((d) => ({ d, file: expect(d.file, d.size, d.sha256) }));
  return { manifest, config, disks };
}
