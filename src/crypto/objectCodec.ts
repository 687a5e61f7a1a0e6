// Repository objects other than packs (indexes, restore points, locks, the
// config body): zstd-compressed, then sealed with the object type as
// associated data, so an index can never be passed off as a restore point.
import { compress, decompress } from 'zstd-napi';
import { seal, open, SEAL_OVERHEAD } from './aead';
import { DataKeys, eachDataKey } from './keys';

export type SealedObjectType = 'index' | 'restorepoint' | 'lock' | 'config' | 'packheader';

/** Associated data: `ferry/<type>`; a restore point's is `ferry/snapshot`, as the format has always had it (docs/FORMAT.md). */
function objectAd(type: SealedObjectType): Buffer {
  return Buffer.from(`ferry/${type === 'restorepoint' ? 'snapshot' : type}`);
}

/** RFC 8878 §3.1.2: a frame with this magic (…50 to …5F) is skipped by every zstd decoder. */
const SKIPPABLE_FRAME_MAGIC = 0x184d2a50;
const SKIPPABLE_FRAME_HEADER = 8;
export const MIN_PADDED_OBJECT_SIZE = 4096;

/** The size class of a sealed object of `size` bytes: the next power of two, at least 4 KiB. */
export function paddedObjectSize(size: number): number {
  let padded = MIN_PADDED_OBJECT_SIZE;
  while (padded < size) padded *= 2;
  return padded;
}

/**
 * `pad`: make the sealed object exactly a size class long (paddedObjectSize),
 * so its size tells only the power of two. The padding is a zstd skippable
 * frame after the data frame, inside the encryption: authenticated, and
 * dropped by the decompressor, so readers need no change.
 */
export function sealObject(dataKey: Buffer, type: SealedObjectType, payload: Buffer, opts: { pad?: boolean } = {}): Buffer {
  const body = compress(payload);
  if (!opts.pad) return seal(dataKey, body, objectAd(type));
  const sealedSize = paddedObjectSize(body.length + SKIPPABLE_FRAME_HEADER + SEAL_OVERHEAD);
  const padding = Buffer.alloc(sealedSize - SEAL_OVERHEAD - body.length);
  padding.writeUInt32LE(SKIPPABLE_FRAME_MAGIC, 0);
  padding.writeUInt32LE(padding.length - SKIPPABLE_FRAME_HEADER, 4);
  return seal(dataKey, Buffer.concat([body, padding]), objectAd(type));
}

/** The payload, or undefined when the bytes fail authentication under every key given. */
export function openObject(dataKeys: DataKeys, type: SealedObjectType, sealed: Buffer): Buffer | undefined {
  let body: Buffer | undefined;
  for (const key of eachDataKey(dataKeys)) {
    body = open(key, sealed, objectAd(type));
    if (body) break;
  }
  if (!body) return undefined;
  try {
    return decompress(body);
  } catch {
    return undefined;
  }
}
