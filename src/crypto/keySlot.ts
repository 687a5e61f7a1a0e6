// Key slots: each passphrase (or key file) wraps the same master key, so adding
// or removing one never touches data. A slot is a small plaintext JSON object:
// the Argon2id parameters and salt, and the sealed master key — version 1 — or,
// after `ferry key rotate`, the sealed keyring (keys.ts) — version 2, which
// earlier ferry releases do not open rather than misread.
import sodium from 'sodium-native';
import { seal, open, randomBytes, KEY_BYTES } from './aead';

export interface KdfParams {
  /** Argon2id passes. */
  opslimit: number;
  /** Argon2id memory in bytes. */
  memlimit: number;
}

/** 64 MiB, 3 passes: ~0.15-0.4 s here; the slot records them, so they can change per slot. */
export const DEFAULT_KDF: KdfParams = { opslimit: 3, memlimit: 64 * 1024 * 1024 };

export interface KeySlot {
  /** 1: wraps the 32-byte master key; 2: wraps a keyring of two or more 32-byte keys. */
  version: 1 | 2;
  kdf: 'argon2id13';
  opslimit: number;
  memlimit: number;
  /** base64, 16 bytes */
  salt: string;
  /** 'passphrase' or 'keyfile': only a label for `key list`. */
  kind: 'passphrase' | 'keyfile';
  created: string;
  /** base64 of seal(kek, masterKey or keyring, ad = "ferry key slot" | repositoryId). */
  wrapped: string;
}

function kek(secret: Buffer, salt: Buffer, params: KdfParams): Buffer {
  const out = Buffer.alloc(32);
  sodium.crypto_pwhash(out, secret, salt, params.opslimit, params.memlimit, sodium.crypto_pwhash_ALG_ARGON2ID13);
  return out;
}

function slotAd(repositoryId: Buffer): Buffer {
  return Buffer.concat([Buffer.from('ferry key slot'), repositoryId]);
}

export function createKeySlot(
  /** The master key, or a keyring (a multiple of 32 bytes). */
  master: Buffer,
  secret: Buffer,
  repositoryId: Buffer,
  params: KdfParams,
  kind: KeySlot['kind'],
): KeySlot {
  const salt = randomBytes(sodium.crypto_pwhash_SALTBYTES);
  const wrapped = seal(kek(secret, salt, params), master, slotAd(repositoryId));
  return {
    version: master.length > KEY_BYTES ? 2 : 1,
    kdf: 'argon2id13',
    opslimit: params.opslimit,
    memlimit: params.memlimit,
    salt: salt.toString('base64'),
    kind,
    created: new Date().toISOString(),
    wrapped: wrapped.toString('base64'),
  };
}

/** The master key (or keyring, version 2) if `secret` opens this slot, else undefined. */
export function openKeySlot(slot: KeySlot, secret: Buffer, repositoryId: Buffer): Buffer | undefined {
  const key = kek(secret, Buffer.from(slot.salt, 'base64'), slot);
  const wrapped = open(key, Buffer.from(slot.wrapped, 'base64'), slotAd(repositoryId));
  if (!wrapped) return undefined;
  const fits = slot.version === 1 ? wrapped.length === KEY_BYTES : wrapped.length > KEY_BYTES && wrapped.length % KEY_BYTES === 0;
  return fits ? wrapped : undefined;
}

export function parseKeySlot(bytes: Buffer): KeySlot | undefined {
  try {
    const s = JSON.parse(bytes.toString('utf8')) as KeySlot;
    if ((s.version !== 1 && s.version !== 2) || s.kdf !== 'argon2id13' || typeof s.salt !== 'string' || typeof s.wrapped !== 'string') return undefined;
    if (!Number.isInteger(s.opslimit) || !Number.isInteger(s.memlimit)) return undefined;
    return s;
  } catch {
    return undefined;
  }
}
