// Pack files: sealed blobs back to back, then the sealed pack header (the list
// of blobs), then the header's length as u32 LE. See docs/FORMAT.md, "Packs".
import { sealObject, openObject } from '../crypto/objectCodec';
import type { DataKeys } from '../crypto/keys';
import { ID_BYTES } from '../crypto/chunkId';

export const PACK_ENTRY_BYTES = 1 + 4 + 4 + ID_BYTES; // typeFlags | storedLength | rawLength | id

export interface PackEntry {
  id: Buffer;
  typeFlags: number;
  offset: number;
  storedLength: number;
  rawLength: number;
}

export function encodePackHeader(dataKey: Buffer, entries: PackEntry[]): Buffer {
  const plain = Buffer.allocUnsafe(entries.length * PACK_ENTRY_BYTES);
  entries.forEach((e, i) => {
    const at = i * PACK_ENTRY_BYTES;
    plain[at] = e.typeFlags;
    plain.writeUInt32LE(e.storedLength, at + 1);
    plain.writeUInt32LE(e.rawLength, at + 5);
    e.id.copy(plain, at + 9);
  });
  const sealed = sealObject(dataKey, 'packheader', plain);
  const trailer = Buffer.allocUnsafe(4);
  trailer.writeUInt32LE(sealed.length);
  return Buffer.concat([sealed, trailer]);
}

/** Blob entries of a pack from its tail; undefined if the tail is not a valid header. */
export function decodePackHeader(dataKey: DataKeys, packSize: number, tail: Buffer): PackEntry[] | undefined {
  if (tail.length < 4) return undefined;
  const headerLength = tail.readUInt32LE(tail.length - 4);
  if (headerLength + 4 > tail.length) return undefined;
  const plain = openObject(dataKey, 'packheader', tail.subarray(tail.length - 4 - headerLength, tail.length - 4));
  if (!plain || plain.length % PACK_ENTRY_BYTES !== 0) return undefined;
  const entries: PackEntry[] = [];
  let offset = 0;
  for (let at = 0; at < plain.length; at += PACK_ENTRY_BYTES) {
    const storedLength = plain.readUInt32LE(at + 1);
    entries.push({
      typeFlags: plain[at],
      storedLength,
      rawLength: plain.readUInt32LE(at + 5),
      id: Buffer.from(plain.subarray(at + 9, at + 9 + ID_BYTES)),
      offset,
    });
    offset += storedLength;
  }
  if (offset + headerLength + 4 !== packSize) return undefined;
  return entries;
}

/** How many bytes of a pack's tail to fetch to find its header in one read, usually. */
export function headerLengthGuess(entries: number): number {
  return entries * PACK_ENTRY_BYTES + 256;
}
