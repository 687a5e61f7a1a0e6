// How an image is cut into chunks. Stored in the repository config, so every
// backup into one repository cuts the same way (and dedupes).
import { UsageError } from '../errors';
import { parseByteSize } from '../units/byteSize';
import { ChunkerParams, REGION_SIZE } from '../repo/format';

/** Chosen by measurement on disk images: see docs/ARCHITECTURE.md, "Chunk size". */
export const DEFAULT_CHUNKER = 'fastcdc:256K';

/** `256K`, `16M` → bytes, or a usage error naming `what` (a flag). */
export function parseSize(text: string, what: string): number {
  const bytes = parseByteSize(text);
  if (bytes === undefined) throw new UsageError(`${what}: '${text}' is not a size; use a number with K or M, e.g. 256K`);
  return bytes;
}

/** Parse `fastcdc:256K` or `fixed:4M`. */
export function parseChunkerSpec(spec: string): ChunkerParams {
  const [kind, sizeText] = spec.split(':');
  if ((kind !== 'fastcdc' && kind !== 'fixed') || !sizeText) {
    throw new UsageError(`--chunker: '${spec}' is not a chunker; use fastcdc:SIZE or fixed:SIZE, e.g. fastcdc:256K`);
  }
  const avg = parseSize(sizeText, '--chunker');
  if (avg & (avg - 1) || avg < 16 * 1024 || avg > 8 * 1024 * 1024) {
    throw new UsageError(`--chunker: size ${sizeText} must be a power of two from 16K to 8M`);
  }
  if (kind === 'fixed') return { kind, avgSize: avg, minSize: avg, maxSize: avg };
  return { kind, avgSize: avg, minSize: avg / 4, maxSize: Math.min(avg * 4, REGION_SIZE / 2) };
}

export function describeChunker(p: ChunkerParams): string {
  const fmt = (n: number) => (n >= 1 << 20 ? `${n / (1 << 20)}M` : `${n / 1024}K`);
  return `${p.kind}:${fmt(p.avgSize)}`;
}
