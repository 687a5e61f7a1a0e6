// A region map lists the chunks of one region of a disk: (offset in region,
// length, chunk id). Gaps are zeros. Stored as a blob, so an unchanged region
// produces the same map and is stored once. See docs/FORMAT.md, "Region maps".
import { ID_BYTES } from '../crypto/chunkId';

const ENTRY = 4 + 4 + ID_BYTES;

export interface MapEntry {
  offset: number;
  length: number;
  id: Buffer;
}

export function encodeRegionMap(entries: MapEntry[]): Buffer {
  const out = Buffer.allocUnsafe(entries.length * ENTRY);
  entries.forEach((e, i) => {
    out.writeUInt32LE(e.offset, i * ENTRY);
    out.writeUInt32LE(e.length, i * ENTRY + 4);
    e.id.copy(out, i * ENTRY + 8);
  });
  return out;
}

export function decodeRegionMap(bytes: Buffer, regionSize: number): MapEntry[] | undefined {
  if (bytes.length % ENTRY !== 0) return undefined;
  const entries: MapEntry[] = [];
  let end = 0;
  for (let at = 0; at < bytes.length; at += ENTRY) {
    const offset = bytes.readUInt32LE(at);
    const length = bytes.readUInt32LE(at + 4);
    if (offset < end || offset + length > regionSize || length === 0) return undefined;
    end = offset + length;
    entries.push({ offset, length, id: Buffer.from(bytes.subarray(at + 8, at + 8 + ID_BYTES)) });
  }
  return entries;
}
