// Seeded restore (`site restore --seed`): the target already holds an older
// copy of the disk (a warm standby, an earlier attempt), so only what differs
// is written. For each chunk of the restore point, the target's bytes at the
// chunk's range are read and hashed with the repository's keyed chunk hash;
// a chunk whose id matches is left alone, the others are restored (verified,
// as always). Ranges that are zeros in the restore point are checked for
// zeros on the target and zeroed where they are not.
//
// A remote target's bytes are streamed back over ssh and hashed here (one
// session, sh + dd + tr + wc there): matching chunks cost a read on the host
// and the transfer, but no repository read. The alternative, `sha256sum` per
// range on the host against a plaintext SHA-256 of each chunk, would need
// every chunk fetched from the repository and decrypted just to compare —
// the full cost of a restore's reading side, which is what a seed should save.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Repository } from '../repo/repository';
import type { DiskRecord } from '../repo/restorePoint';
import type { PipelinePool } from '../workers/pipelinePool';
import { type PlannedBlob, type RestorePlan, restorePlan } from '../restore/restorePlan';
import { restorePlanned } from '../restore/diskRestore';
import { complementSpans, type Span } from '../dedupe/spans';
import { ChunkHasher } from '../crypto/chunkId';
import { InputError, StorageError, describeSystemError } from '../errors';
import { type CommandRunner, describeCommand, runChecked } from '../hypervisor/commandRunner';
import { childEnvironment } from '../hypervisor/childEnvironment';
import { RemoteFileWriter } from './remoteFileWriter';
import type { PoolVolume } from './siteRestore';

/** Regions compared and written per checkpoint (local: 2 GiB of disk; remote: 128 MiB of scratch at most). */
const LOCAL_BATCH_REGIONS = 64;
const REMOTE_BATCH_REGIONS = 4;
/** Largest read of the seed at once, and largest zero write. */
const PIECE = 8 * 1024 * 1024;

/** Read access to the seed (the target's old content). */
export interface SeedReader {
  read(offset: number, length: number): Promise<Buffer>;
  /** Whether [offset, offset + length) holds only zero bytes. */
  isZero(offset: number, length: number): Promise<boolean>;
}

export interface SeedComparison {
  /** The part of the plan whose chunks differ from the seed: what to restore. */
  differing: RestorePlan;
  /** Ranges that are zeros in the restore point but not in the seed. */
  zeroSpans: Span[];
  /** Bytes of the seed read and compared. */
  comparedBytes: number;
}

export interface SeededWrite {
  writtenBytes: number;
  comparedBytes: number;
}

/** Each chunk of the plan where it lands: chunk boundaries inside a data span are the sorted targets. */
function chunkPlacements(plan: RestorePlan): Array<{ start: number; end: number; blob: PlannedBlob }> {
  const starts = plan.packs.flatMap((p) => p.blobs.flatMap((blob) => blob.targets.map((start) => ({ start, blob }))));
  starts.sort((a, b) => a.start - b.start);
  const out: Array<{ start: number; end: number; blob: PlannedBlob }> = [];
  let span = 0;
  for (let i = 0; i < starts.length; i++) {
    const { start, blob } = starts[i]!;
    while (plan.dataSpans[span]!.end <= start) span++;
    const next = starts[i + 1]?.start;
    const end = next !== undefined && next < plan.dataSpans[span]!.end ? next : plan.dataSpans[span]!.end;
    out.push({ start, end, blob });
  }
  return out;
}

/** Compares the seed with what `plan` covers. */
export async function compareWithSeed(hasher: ChunkHasher, plan: RestorePlan, seed: SeedReader): Promise<SeedComparison> {
  const placements = chunkPlacements(plan);
  const differ = new Map<PlannedBlob, number[]>();
  const differingStarts = new Set<number>();
  let comparedBytes = 0;
  // Read runs of whole chunks, up to PIECE bytes (a bigger chunk alone).
  for (let i = 0; i < placements.length; ) {
    let j = i + 1;
    while (j < placements.length && placements[j]!.start === placements[j - 1]!.end && placements[j]!.end - placements[i]!.start <= PIECE) j++;
    const from = placements[i]!.start;
    const bytes = await seed.read(from, placements[j - 1]!.end - from);
    comparedBytes += bytes.length;
    for (let k = i; k < j; k++) {
      const c = placements[k]!;
      if (!hasher.hash(bytes.subarray(c.start - from, c.end - from)).equals(c.blob.id)) {
        const targets = differ.get(c.blob);
        if (targets) targets.push(c.start);
        else differ.set(c.blob, [c.start]);
        differingStarts.add(c.start);
      }
    }
    i = j;
  }
  const zeroSpans: Span[] = [];
  for (const gap of complementSpans(plan.dataSpans.map((s) => ({ start: s.start - plan.start, end: s.end - plan.start })), plan.end - plan.start)) {
    for (let at = plan.start + gap.start; at < plan.start + gap.end; at += PIECE) {
      const length = Math.min(PIECE, plan.start + gap.end - at);
      comparedBytes += length;
      if (!(await seed.isZero(at, length))) zeroSpans.push({ start: at, end: at + length });
    }
  }
  const packs = plan.packs
    .map((p) => ({ packId: p.packId, blobs: p.blobs.filter((b) => differ.has(b)).map((b) => ({ ...b, targets: differ.get(b)! })) }))
    .filter((p) => p.blobs.length > 0);
  const dataSpans = placements.filter((c) => differingStarts.has(c.start)).map((c) => ({ start: c.start, end: c.end }));
  const dataBytes = dataSpans.reduce((n, s) => n + s.end - s.start, 0);
  return { differing: { ...plan, packs, dataSpans, dataBytes }, zeroSpans, comparedBytes };
}

/**
 * Makes the existing target the partial one the restore writes into (so it
 * carries no final name while it changes), sized as the disk.
 */
export async function takeTargetAsSeed(runner: CommandRunner, target: PoolVolume, partial: string, size: number): Promise<void> {
  if (target.kind === 'file') {
    await runChecked(runner, 'mv', ['-f', '--', target.path, partial]);
    await runChecked(runner, 'truncate', ['-s', String(size), '--', partial]);
    return;
  }
  if (target.pool.type !== 'lvm') return;
  const vg = target.pool.volumeGroup;
  if ((await runner.run('test', ['-e', partial])).code === 0) await runChecked(runner, 'lvremove', ['-q', '-f', `${vg}/${path.posix.basename(partial)}`]);
  await runChecked(runner, 'lvrename', [vg, path.posix.basename(target.path), path.posix.basename(partial)]);
}

function zeros(length: number): Buffer {
  return Buffer.alloc(length);
}

/** Seeded restore of regions [fromRegion, …) into a partial target on this machine. */
export async function writeSeededLocally(
  repo: Repository,
  workers: PipelinePool,
  record: DiskRecord,
  partial: string,
  fromRegion: number,
  checkpoint: (regionsDone: number) => void,
): Promise<SeededWrite> {
  let fd: number;
  try {
    fd = fs.openSync(partial, 'r+');
  } catch (err) {
    throw new InputError(`cannot open the seed ${partial}: ${describeSystemError(err)}`, { cause: err });
  }
  const hasher = new ChunkHasher(repo.keys.idKey);
  const seed: SeedReader = {
    read: async (offset, length) => {
      const buf = Buffer.alloc(length);
      const n = fs.readSync(fd, buf, 0, length, offset);
      return buf.subarray(0, n);
    },
    isZero: async (offset, length) => {
      const buf = Buffer.alloc(length);
      const n = fs.readSync(fd, buf, 0, length, offset);
      return buf.subarray(0, n).every((b) => b === 0);
    },
  };
  let writtenBytes = 0;
  let comparedBytes = 0;
  try {
    for (let from = fromRegion; from < record.regions.length; from += LOCAL_BATCH_REGIONS) {
      const to = Math.min(record.regions.length, from + LOCAL_BATCH_REGIONS);
      const cmp = await compareWithSeed(hasher, await restorePlan(repo, record, from, to), seed);
      comparedBytes += cmp.comparedBytes;
      if (cmp.differing.packs.length > 0) writtenBytes += await restorePlanned(repo, workers, cmp.differing, partial, { zeroFill: false });
      for (const s of cmp.zeroSpans) {
        fs.writeSync(fd, zeros(s.end - s.start), 0, s.end - s.start, s.start);
        writtenBytes += s.end - s.start;
      }
      fs.fsyncSync(fd);
      checkpoint(to);
    }
  } finally {
    fs.closeSync(fd);
  }
  return { writtenBytes, comparedBytes };
}

/**
 * Reads ranges of one file or device on a remote host through one ssh
 * session: "R OFFSET LENGTH\n" answers exactly LENGTH bytes (the target is
 * sized first), "Z OFFSET LENGTH\n" answers "0\n" when the range is all
 * zeros and "1\n" otherwise (tr drops the zeros there: nothing but one
 * byte crosses the network for a hole). Requests are pipelined.
 */
const READER = [
  'set -u',
  'f=$1',
  'while read -r op off len; do',
  '  case $op in',
  '  R) dd if="$f" bs=1M iflag=skip_bytes,count_bytes skip="$off" count="$len" status=none ;;',
  "  Z) n=$(dd if=\"$f\" bs=1M iflag=skip_bytes,count_bytes skip=\"$off\" count=\"$len\" status=none | tr -d '\\000' | head -c 1 | wc -c); echo \"$n\" ;;",
  '  esac',
  'done',
].join('\n');

export class RemoteRangeReader implements SeedReader {
  private readonly pending: Array<{ length: number; parts: Buffer[]; got: number; resolve: (b: Buffer) => void; reject: (e: Error) => void }> = [];
  private stderr = '';
  private failure?: Error;

  private constructor(private readonly child: ChildProcessWithoutNullStreams, private readonly where: string) {
    child.stderr.on('data', (d: Buffer) => { this.stderr += d.toString(); });
    child.stdout.on('data', (d: Buffer) => this.take(d));
    child.stdin.on('error', (err) => this.fail(err));
    child.on('exit', (code) => this.fail(new Error(`exit ${code ?? 'signal'}`)));
  }

  static open(sshArgs: readonly string[], file: string, where: string): RemoteRangeReader {
    const remote = describeCommand('sh', ['-c', READER, 'ferry-seed-read', file]);
    return new RemoteRangeReader(spawn('ssh', [...sshArgs, remote], { stdio: 'pipe', env: childEnvironment({ LC_ALL: 'C' }) }), where);
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.request(`R ${offset} ${length}\n`, length);
  }

  async isZero(offset: number, length: number): Promise<boolean> {
    const answer = (await this.request(`Z ${offset} ${length}\n`, 2)).toString('ascii');
    if (answer !== '0\n' && answer !== '1\n') throw new StorageError(`reading the seed ${this.where} over ssh failed: unexpected answer ${JSON.stringify(answer)}`);
    return answer === '0\n';
  }

  close(): void {
    this.child.stdin.end();
  }

  private request(line: string, length: number): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.pending.push({ length, parts: [], got: 0, resolve, reject });
      this.child.stdin.write(line);
    });
  }

  private take(data: Buffer): void {
    let rest = data;
    while (rest.length > 0) {
      const head = this.pending[0];
      if (!head) return this.fail(new Error('more bytes than asked for'));
      const part = rest.subarray(0, head.length - head.got);
      head.parts.push(part);
      head.got += part.length;
      rest = rest.subarray(part.length);
      if (head.got === head.length) {
        this.pending.shift();
        head.resolve(Buffer.concat(head.parts));
      }
    }
  }

  private fail(cause: Error): void {
    if (this.failure) return;
    const why = this.stderr.trim().split('\n').pop() || cause.message;
    this.failure = new StorageError(`reading the seed ${this.where} over ssh failed: ${why}`, { cause });
    for (const p of this.pending.splice(0)) p.reject(this.failure);
  }
}

/**
 * Seeded restore into a partial target on a remote host: compared over one
 * reading session, the differing chunks restored here into a sparse scratch
 * file a batch at a time and sent over one writing session.
 */
export async function writeSeededRemotely(
  repo: Repository,
  workers: PipelinePool,
  record: DiskRecord,
  partial: string,
  where: string,
  sshArgs: readonly string[],
  scratch: string,
  fromRegion: number,
  checkpoint: (regionsDone: number) => void,
): Promise<SeededWrite> {
  const hasher = new ChunkHasher(repo.keys.idKey);
  const reader = RemoteRangeReader.open(sshArgs, partial, where);
  const writer = RemoteFileWriter.open(sshArgs, partial, record.size, where);
  let writtenBytes = 0;
  let comparedBytes = 0;
  try {
    for (let from = fromRegion; from < record.regions.length; from += REMOTE_BATCH_REGIONS) {
      const to = Math.min(record.regions.length, from + REMOTE_BATCH_REGIONS);
      const cmp = await compareWithSeed(hasher, await restorePlan(repo, record, from, to), reader);
      comparedBytes += cmp.comparedBytes;
      if (cmp.differing.packs.length > 0) {
        fs.rmSync(scratch, { force: true });
        const fd = fs.openSync(scratch, 'wx', 0o600);
        try {
          fs.ftruncateSync(fd, record.size);
        } finally {
          fs.closeSync(fd);
        }
        await restorePlanned(repo, workers, cmp.differing, scratch, { zeroFill: false });
        const rfd = fs.openSync(scratch, 'r');
        try {
          for (const s of cmp.differing.dataSpans) {
            for (let at = s.start; at < s.end; at += PIECE) {
              const piece = Buffer.allocUnsafe(Math.min(PIECE, s.end - at));
              fs.readSync(rfd, piece, 0, piece.length, at);
              await writer.write(at, piece);
              writtenBytes += piece.length;
            }
          }
        } finally {
          fs.closeSync(rfd);
        }
      }
      for (const s of cmp.zeroSpans) {
        await writer.write(s.start, zeros(s.end - s.start));
        writtenBytes += s.end - s.start;
      }
      await writer.sync();
      checkpoint(to);
    }
    reader.close();
    await writer.close();
  } catch (err) {
    reader.close();
    writer.abort();
    throw err;
  } finally {
    fs.rmSync(scratch, { force: true });
  }
  return { writtenBytes, comparedBytes };
}
