import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { BlobDecoder, BlobEncoder, BlobType } from '../../src/crypto/blobCodec';
import { createKeySlot, openKeySlot, parseKeySlot } from '../../src/crypto/keySlot';
import { ChunkHasher } from '../../src/crypto/chunkId';
import { openObject, paddedObjectSize, sealObject } from '../../src/crypto/objectCodec';
import { deriveKeys, newMasterKey } from '../../src/crypto/keys';
import { open } from '../../src/crypto/aead';

const keys = deriveKeys(newMasterKey());
const fastKdf = { opslimit: 1, memlimit: 8192 * 1024 };

describe('blob encryption', () => {
  const encoder = new BlobEncoder(keys.dataKey, 3);
  const decoder = new BlobDecoder(keys.dataKey);
  const plain = Buffer.concat([Buffer.from('text '.repeat(2000)), randomBytes(5000)]);
  const id = new ChunkHasher(keys.idKey).hash(plain);
  const blob = encoder.encode(BlobType.Data, id, plain);

  it('round-trips, compressing what compresses', () => {
    expect(blob.sealed.length).toBeLessThan(plain.length);
    expect(decoder.decode(blob.typeFlags, id, blob.sealed, plain.length)).toEqual(plain);
  });

  it('rejects a change to any single byte', () => {
    for (let i = 0; i < blob.sealed.length; i++) {
      const bad = Buffer.from(blob.sealed);
      bad[i] ^= 0x01;
      expect(decoder.decode(blob.typeFlags, id, bad, plain.length)).toBeUndefined();
    }
  });

  it('rejects a blob presented under another id or type', () => {
    const otherId = Buffer.from(id);
    otherId[31] ^= 1;
    expect(decoder.decode(blob.typeFlags, otherId, blob.sealed, plain.length)).toBeUndefined();
    expect(decoder.decode((blob.typeFlags & 0xf0) | BlobType.Map, id, blob.sealed, plain.length)).toBeUndefined();
  });

  it('rejects another repository key', () => {
    const other = new BlobDecoder(deriveKeys(newMasterKey()).dataKey);
    expect(other.decode(blob.typeFlags, id, blob.sealed, plain.length)).toBeUndefined();
  });

  it('stores incompressible data raw', () => {
    const noise = randomBytes(65536);
    const b = encoder.encode(BlobType.Data, randomBytes(32), noise);
    expect(b.typeFlags & 0x10).toBe(0);
    expect(b.sealed.length).toBe(noise.length + 40);
  });
});

describe('chunk ids', () => {
  it('are keyed: the same bytes get different ids in different repositories', () => {
    const data = Buffer.from('same content');
    expect(new ChunkHasher(keys.idKey).hash(data)).not.toEqual(new ChunkHasher(deriveKeys(newMasterKey()).idKey).hash(data));
  });
});

describe('sealed objects', () => {
  it('cannot be opened as another object type', () => {
    const sealed = sealObject(keys.dataKey, 'index', Buffer.from('payload'));
    expect(openObject(keys.dataKey, 'index', sealed)?.toString()).toBe('payload');
    expect(openObject(keys.dataKey, 'restorepoint', sealed)).toBeUndefined();
  });

  it("seals restore points with the associated data the format has always used, 'ferry/snapshot'", () => {
    const sealed = sealObject(keys.dataKey, 'restorepoint', Buffer.from('payload'));
    expect(open(keys.dataKey, sealed, Buffer.from('ferry/snapshot'))).toBeDefined();
    expect(open(keys.dataKey, sealed, Buffer.from('ferry/restorepoint'))).toBeUndefined();
  });
});

describe('key slots', () => {
  const master = newMasterKey();
  const repoId = randomBytes(16);
  const slot = createKeySlot(master, Buffer.from('correct horse'), repoId, fastKdf, 'passphrase');

  it('open with the right passphrase only', () => {
    expect(openKeySlot(slot, Buffer.from('correct horse'), repoId)).toEqual(master);
    expect(openKeySlot(slot, Buffer.from('wrong horse'), repoId)).toBeUndefined();
  });

  it('are bound to their repository', () => {
    expect(openKeySlot(slot, Buffer.from('correct horse'), randomBytes(16))).toBeUndefined();
  });

  it('never contain the master key in the clear', () => {
    expect(JSON.stringify(slot)).not.toContain(master.toString('base64'));
    expect(JSON.stringify(slot)).not.toContain(master.toString('hex'));
  });
});

describe('padded objects', () => {
  it('size classes are powers of two from 4 KiB', () => {
    expect([1, 4096, 4097, 8192, 100_000, 1_048_577].map(paddedObjectSize)).toEqual([4096, 4096, 8192, 8192, 131072, 2097152]);
  });

  it('a padded object is exactly its size class, opens to the payload, and its padding is authenticated', () => {
    for (const payload of [Buffer.from('{}'), randomBytes(4056 - 9 - 8), randomBytes(5000), randomBytes(70_000)]) {
      const sealed = sealObject(keys.dataKey, 'restorepoint', payload, { pad: true });
      expect(sealed.length).toBe(paddedObjectSize(sealed.length));
      expect(sealed.length).toBeGreaterThan(payload.length);
      expect(openObject(keys.dataKey, 'restorepoint', sealed)).toEqual(payload);
      const flipped = Buffer.from(sealed);
      flipped[sealed.length - 20] ^= 1; // in the padding's ciphertext
      expect(openObject(keys.dataKey, 'restorepoint', flipped)).toBeUndefined();
    }
  });
});

describe('keyrings (key rotation)', () => {
  const repoId = randomBytes(16);
  const secret = Buffer.from('ring');
  const original = newMasterKey();
  const ring = Buffer.concat([original, newMasterKey()]);

  it('a master key is wrapped in a version 1 slot, a keyring in a version 2 slot; both open', () => {
    const v1 = createKeySlot(original, secret, repoId, fastKdf, 'passphrase');
    const v2 = createKeySlot(ring, secret, repoId, fastKdf, 'passphrase');
    expect([v1.version, v2.version]).toEqual([1, 2]);
    expect(openKeySlot(parseKeySlot(Buffer.from(JSON.stringify(v1)))!, secret, repoId)).toEqual(original);
    expect(openKeySlot(parseKeySlot(Buffer.from(JSON.stringify(v2)))!, secret, repoId)).toEqual(ring);
    expect(parseKeySlot(Buffer.from(JSON.stringify({ ...v2, version: 3 })))).toBeUndefined();
    // A slot whose version does not match what it wraps is refused, not misread.
    expect(openKeySlot({ ...v2, version: 1 }, secret, repoId)).toBeUndefined();
  });

  it('a keyring keeps the chunk-id and chunker keys of the original, seals with the newest data key and reads with all', () => {
    const before = deriveKeys(original);
    const after = deriveKeys(ring);
    expect(after.idKey).toEqual(before.idKey);
    expect(after.gearKey).toEqual(before.gearKey);
    expect(after.dataKey).not.toEqual(before.dataKey);
    expect(after.dataKeys).toEqual([after.dataKey, before.dataKey]);
    const old = sealObject(before.dataKey, 'index', Buffer.from('old'));
    const fresh = sealObject(after.dataKey, 'index', Buffer.from('new'));
    expect(openObject(after.dataKeys, 'index', old)).toEqual(Buffer.from('old'));
    expect(openObject(after.dataKeys, 'index', fresh)).toEqual(Buffer.from('new'));
    expect(openObject(before.dataKeys, 'index', fresh)).toBeUndefined();
    const id = randomBytes(32);
    const blob = new BlobEncoder(before.dataKey, 3).encode(BlobType.Data, id, Buffer.from('x'.repeat(100)));
    expect(new BlobDecoder(after.dataKeys).decode(blob.typeFlags, id, blob.sealed, 100)).toEqual(Buffer.from('x'.repeat(100)));
  });
});
