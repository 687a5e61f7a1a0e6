// Workers seal into and open blobs through buffers they keep (no fresh output
// buffer per blob): the bytes are the format's as before, and every blob that
// fails authentication, decompression or its length is still refused.
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { BlobDecoder, BlobEncoder, BlobType, FLAG_ZSTD } from '../../src/crypto/blobCodec';
import { deriveKeys, newMasterKey } from '../../src/crypto/keys';

const keys = deriveKeys(newMasterKey());
const id = randomBytes(32);
const text = Buffer.from('guest log line 42: disk write ok\n'.repeat(8000));
const noise = randomBytes(200_000);

function sealed(plain: Buffer): { data: Buffer; typeFlags: number } {
  const out = Buffer.alloc(plain.length + 256);
  const blob = new BlobEncoder(keys.dataKey, 3).encodeInto(BlobType.Data, id, plain, out);
  return { data: out.subarray(0, blob.length), typeFlags: blob.typeFlags };
}

describe('blob scratch buffers', () => {
  it('encodeInto writes what decode reads, compressed only when it saves', () => {
    const a = sealed(text);
    const b = sealed(noise);
    expect(a.typeFlags & FLAG_ZSTD).toBe(FLAG_ZSTD);
    expect(b.typeFlags & FLAG_ZSTD).toBe(0);
    const decoder = new BlobDecoder(keys.dataKey);
    expect(decoder.decode(a.typeFlags, id, a.data, text.length)?.equals(text)).toBe(true);
    expect(decoder.decode(b.typeFlags, id, b.data, noise.length)?.equals(noise)).toBe(true);
  });

  it('decodeScratch gives the plaintext, valid until the next call, and reuses its buffers', () => {
    const decoder = new BlobDecoder(keys.dataKey);
    const a = sealed(text);
    const b = sealed(noise);
    const first = decoder.decodeScratch(a.typeFlags, id, a.data, text.length);
    expect(first?.equals(text)).toBe(true);
    const again = decoder.decodeScratch(a.typeFlags, id, a.data, text.length);
    expect(again?.buffer).toBe(first?.buffer);
    expect(decoder.decodeScratch(b.typeFlags, id, b.data, noise.length)?.equals(noise)).toBe(true);
  });

  it('decodeScratch refuses a flipped byte, another id, a wrong length and a key it does not hold', () => {
    const decoder = new BlobDecoder(keys.dataKey);
    const a = sealed(text);
    const flipped = Buffer.from(a.data);
    flipped[flipped.length >> 1] ^= 1;
    expect(decoder.decodeScratch(a.typeFlags, id, flipped, text.length)).toBeUndefined();
    expect(decoder.decodeScratch(a.typeFlags, randomBytes(32), a.data, text.length)).toBeUndefined();
    expect(decoder.decodeScratch(a.typeFlags, id, a.data, text.length - 1)).toBeUndefined();
    expect(decoder.decodeScratch(a.typeFlags, id, a.data, text.length + 1)).toBeUndefined();
    expect(decoder.decodeScratch(a.typeFlags, id, a.data.subarray(0, 30), text.length)).toBeUndefined();
    expect(new BlobDecoder(deriveKeys(newMasterKey()).dataKey).decodeScratch(a.typeFlags, id, a.data, text.length)).toBeUndefined();
    // A key ring: any of its keys opens it.
    expect(new BlobDecoder([deriveKeys(newMasterKey()).dataKey, keys.dataKey]).decodeScratch(a.typeFlags, id, a.data, text.length)?.equals(text)).toBe(true);
  });
});
