// A blob on its way into a pack: zstd-compressed (when that helps), then sealed
// with the blob's type and id as associated data, so a blob cannot be swapped
// for another one inside the same repository without detection.
import { Compressor, Decompressor } from 'zstd-napi';
import * as zstd from 'zstd-napi/binding';
import { seal, sealInto, open, openInto, SEAL_OVERHEAD } from './aead';
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
  /** For encodeInto: zstd into one scratch buffer kept across blobs, not a fresh output buffer per blob. */
  private readonly cctx = new zstd.CCtx();
  private scratch = Buffer.alloc(0);

  constructor(private readonly dataKey: Buffer, level: number) {
    this.compressor.setParameters({ compressionLevel: level });
    this.cctx.setParameter(zstd.CParameter.compressionLevel, level);
  }

  encode(type: BlobType, id: Uint8Array, plain: Uint8Array): EncodedBlob {
    const { body, typeFlags } = this.body(type, plain);
    return { sealed: seal(this.dataKey, body, blobAd(type, id)), typeFlags, rawLength: plain.length };
  }

  /** `encode` into the start of `out`, which must hold plain.length + 40 bytes; saves a copy per blob. */
  encodeInto(type: BlobType, id: Uint8Array, plain: Uint8Array, out: Uint8Array): { length: number; typeFlags: number; rawLength: number } {
    const bound = zstd.compressBound(plain.length);
    if (this.scratch.length < bound) this.scratch = Buffer.allocUnsafe(bound);
    const packed = this.scratch.subarray(0, this.cctx.compress2(this.scratch, plain));
    const useZstd = packed.length < plain.length - (plain.length >>> 5);
    const body = useZstd ? packed : plain;
    const typeFlags = type | (useZstd ? FLAG_ZSTD : 0);
    if (out.length < body.length + SEAL_OVERHEAD) throw new RangeError(`blob of ${body.length} bytes does not fit in ${out.length}`);
    return { length: sealInto(this.dataKey, body, blobAd(type, id), out), typeFlags, rawLength: plain.length };
  }

  private body(type: BlobType, plain: Uint8Array): { body: Uint8Array; typeFlags: number } {
    const packed = this.compressor.compress(plain);
    // Store raw when compression does not save at least 1/32 (encodeInto decides the same way): random data, encrypted guest disks.
    const useZstd = packed.length < plain.length - (plain.length >>> 5);
    return { body: useZstd ? packed : plain, typeFlags: type | (useZstd ? FLAG_ZSTD : 0) };
  }
}

export class BlobDecoder {
  private readonly decompressor = new Decompressor();
  /** For decodeScratch: one opened-body and one plaintext buffer kept across blobs. */
  private readonly dctx = new zstd.DCtx();
  private opened = Buffer.alloc(0);
  private plain = Buffer.alloc(0);

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

  /**
   * `decode` into buffers this decoder reuses: the plaintext is valid only until
   * the next call (a worker hashes and writes it at once). No fresh pages per blob.
   * `into` (at least rawLength): a caller's buffer for a compressed blob's plaintext instead of this decoder's.
   */
  decodeScratch(typeFlags: number, id: Uint8Array, sealed: Uint8Array, rawLength: number, into?: Buffer): Buffer | undefined {
    if (sealed.length < SEAL_OVERHEAD) return undefined;
    const bodyLength = sealed.length - SEAL_OVERHEAD;
    if (this.opened.length < bodyLength) this.opened = Buffer.allocUnsafe(bodyLength);
    const ad = blobAd(typeFlags & 0x0f, id);
    const body = this.opened.subarray(0, bodyLength);
    if (!this.dataKeys.some((key) => openInto(key, sealed, ad, body))) return undefined;
    if (!(typeFlags & FLAG_ZSTD)) return bodyLength === rawLength ? body : undefined;
    if (into && into.length >= rawLength) return this.decompressInto(into.subarray(0, rawLength), body, rawLength);
    if (this.plain.length < rawLength) this.plain = Buffer.allocUnsafe(rawLength);
    return this.decompressInto(this.plain.subarray(0, rawLength), body, rawLength);
  }

  private decompressInto(plain: Buffer, body: Buffer, rawLength: number): Buffer | undefined {
    try {
      // Exactly rawLength: more content fails (too small a destination), less is caught below.
      return this.dctx.decompress(plain, body) === rawLength ? plain : undefined;
    } catch {
      return undefined;
    }
  }
}
