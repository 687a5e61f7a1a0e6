// Repository objects other than packs (indexes, restore points, locks, the
// config body): zstd-compressed, then sealed with the object type as
// associated data, so an index can never be passed off as a restore point.
import { compress, decompress } from 'zstd-napi';
import { seal, open } from './aead';

export type SealedObjectType = 'index' | 'snapshot' | 'lock' | 'config' | 'packheader';

function objectAd(type: SealedObjectType): Buffer {
  return Buffer.from(`ferry/${type}`);
}

export function sealObject(dataKey: Buffer, type: SealedObjectType, payload: Buffer): Buffer {
  return seal(dataKey, compress(payload), objectAd(type));
}

/** The payload, or undefined when the bytes fail authentication. */
export function openObject(dataKey: Buffer, type: SealedObjectType, sealed: Buffer): Buffer | undefined {
  const body = open(dataKey, sealed, objectAd(type));
  if (!body) return undefined;
  try {
    return decompress(body);
  } catch {
    return undefined;
  }
}
