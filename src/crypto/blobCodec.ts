// A blob on its way into a pack: zstd-compressed (when that helps), then sealed
// with the blob's type and id as associated data, so a blob cannot be swapped
// for another one inside the same repository without detection.
import { Compressor, Decompressor } from 'zstd-napi';
import { seal, sealInto, open, SEAL_OVERHEAD } from './aead';
import { DataKeys, eachDataKey } from './keys';

export const enum BlobType {
  Data = 0,
  /** A region map: the list of chunks that make up one region of a disk. */
  Map = 1,
  /** A data chunk stored as the pages that differ from an earlier chunk (dedupe/pagePatch.ts). */
  Patch = 2,
}

export function blobType(typeFlags: number): BlobType {
  return (typeFlags & 0x0f) as BlobType;
}

export const FLAG_ZSTD = 0x10;

export interface EncodedBlob {
  sealed: Buffer;
  /** type | flags, as stored in pack headers and indexes. */
  typeFlags: number;
  rawLength: number;
}

function blobAd(type: number, id: Uint8Array): Buffer {
  const ad = Buffer.allocUnsafe(33);
  ad[0] = type;
  ad.set(id, 1);
  return ad;
}

export class BlobEncoder {
  private readonly compressor = new Compressor();

  constructor(private readonly dataKey: Buffer, level: number) {
    this.compressor.setParameters({ compressionLevel: level });
  }

  encode(type: BlobType, id: Uint8Array, plain: Uint8Array): EncodedBlob {
    const { body, typeFlags } = this.body(type, plain);
    return { sealed: seal(this.dataKey, body, blobAd(type, id)), typeFlags, rawLength: plain.length };
  }

  /** `encode` into the start of `out`, which must hold plain.length + 40 bytes; saves a copy per blob. */
  encodeInto(type: BlobType, id: Uint8Array, plain: Uint8Array, out: Uint8Array): { length: number; typeFlags: number; rawLength: number } {
    const { body, typeFlags } = this.body(type, plain);
    if (out.length < body.length + SEAL_OVERHEAD) throw new RangeError(`blob of ${body.length} bytes does not fit in ${out.length}`);
    return { length: sealInto(this.dataKey, body, blobAd(type, id), out), typeFlags, rawLength: plain.length };
  }

  private body(type: BlobType, plain: Uint8Array): { body: Uint8Array; typeFlags: number } {
    const packed = this.compressor.compress(plain);
    // Store raw when compression does not save at least 1/32: random data, encrypted guest disks.
    const useZstd = packed.length < plain.length - (plain.length >>> 5);
    return { body: useZstd ? packed : plain, typeFlags: type | (useZstd ? FLAG_ZSTD : 0) };
  }
}

export class BlobDecoder {
  private readonly decompressor = new Decompressor();

  private readonly dataKeys: readonly Buffer[];

  /** Several keys after a key rotation: each is tried, newest first. */
  constructor(dataKeys: DataKeys) {
    this.dataKeys = eachDataKey(dataKeys);
  }

  /** The plaintext, or undefined if the blob fails authentication or decompression. */
  decode(typeFlags: number, id: Uint8Array, sealed: Uint8Array, rawLength: number): Buffer | undefined {
    const ad = blobAd(typeFlags & 0x0f, id);
    let body: Buffer | undefined;
    for (const key of this.dataKeys) {
      body = open(key, sealed, ad);
      if (body) break;
    }
    if (!body) return undefined;
    if (!(typeFlags & FLAG_ZSTD)) return body.length === rawLength ? body : undefined;
    try {
      const plain = this.decompressor.decompress(body);
      return plain.length === rawLength ? plain : undefined;
    } catch {
      return undefined;
    }
  }
}
