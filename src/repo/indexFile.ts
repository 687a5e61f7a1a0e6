// Index files: for each pack, its id and the blobs it holds. Written after the
// packs they describe, so an index never points at a pack that is not there.
// See docs/FORMAT.md, "Index files".
import { sealObject, openObject } from '../crypto/objectCodec';
import type { DataKeys } from '../crypto/keys';
import { ID_BYTES } from '../crypto/chunkId';
import { PackEntry } from './packFormat';

const MAGIC = Buffer.from('FIDX');
const VERSION = 1;
const ENTRY_BYTES = ID_BYTES + 1 + 4 + 4 + 4; // id | typeFlags | offset | storedLength | rawLength

export interface IndexedPack {
  packId: string;
  entries: PackEntry[];
}

export function encodeIndexFile(dataKey: Buffer, packs: IndexedPack[]): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(8);
  MAGIC.copy(head);
  head.writeUInt32LE(VERSION, 4);
  parts.push(head);
  for (const p of packs) {
    const rec = Buffer.allocUnsafe(ID_BYTES + 4 + p.entries.length * ENTRY_BYTES);
    Buffer.from(p.packId, 'hex').copy(rec, 0);
    rec.writeUInt32LE(p.entries.length, ID_BYTES);
    let at = ID_BYTES + 4;
    for (const e of p.entries) {
      e.id.copy(rec, at);
      rec[at + 32] = e.typeFlags;
      rec.writeUInt32LE(e.offset, at + 33);
      rec.writeUInt32LE(e.storedLength, at + 37);
      rec.writeUInt32LE(e.rawLength, at + 41);
      at += ENTRY_BYTES;
    }
    parts.push(rec);
  }
  return sealObject(dataKey, 'index', Buffer.concat(parts));
}

/** Undefined when the file fails authentication or is malformed. */
export function decodeIndexFile(dataKey: DataKeys, sealed: Buffer): IndexedPack[] | undefined {
  const plain = openObject(dataKey, 'index', sealed);
  if (!plain || plain.length < 8 || !plain.subarray(0, 4).equals(MAGIC) || plain.readUInt32LE(4) !== VERSION) return undefined;
  const packs: IndexedPack[] = [];
  let at = 8;
  while (at < plain.length) {
    if (at + ID_BYTES + 4 > plain.length) return undefined;
    const packId = plain.subarray(at, at + ID_BYTES).toString('hex');
    const count = plain.readUInt32LE(at + ID_BYTES);
    at += ID_BYTES + 4;
    if (at + count * ENTRY_BYTES > plain.length) return undefined;
    const entries: PackEntry[] = [];
    for (let i = 0; i < count; i++, at += ENTRY_BYTES) {
      entries.push({
        id: Buffer.from(plain.subarray(at, at + 32)),
        typeFlags: plain[at + 32],
        offset: plain.readUInt32LE(at + 33),
        storedLength: plain.readUInt32LE(at + 37),
        rawLength: plain.readUInt32LE(at + 41),
      });
    }
    packs.push({ packId, entries });
  }
  return packs;
}
