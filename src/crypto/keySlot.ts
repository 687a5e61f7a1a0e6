// Key slots: each passphrase (or key file) wraps the same master key, so adding
// or removing one never touches data. A slot is a small plaintext JSON object:
// the Argon2id parameters and salt, and the sealed master key — version 1 — or,
// after `ferry key rotate`, the sealed keyring (keys.ts) — version 2, which
// earlier ferry releases do not open rather than misread.
import sodium from 'sodium-native';
import { seal, open, randomBytes, KEY_BYTES } from './aead';
import { FerryError, InputError } from '../errors';

export interface KdfParams {
  /** Argon2id passes. */
  opslimit: number;
  /** Argon2id memory in bytes. */
  memlimit: number;
}

/** 64 MiB, 3 passes: ~0.15-0.4 s here; the slot records them, so they can change per slot. */
export const DEFAULT_KDF: KdfParams = { opslimit: 3, memlimit: 64 * 1024 * 1024 };

/**
 * What ferry will run Argon2id with. A key slot is plaintext anyone who can
 * write keys/ can edit, so its parameters are bounded before they are used:
 * memlimit 2^42 would fail to allocate (or take the host's memory), opslimit
 * 4e9 would run for days. 4 GiB and 16 passes are far above any sane slot
 * (libsodium's "sensitive" level is 1 GiB, 4 passes). The minimums are
 * libsodium's own.
 */
export const KDF_BOUNDS = {
  minMemlimit: 8 * 1024,
  maxMemlimit: 4 * 1024 * 1024 * 1024,
  minOpslimit: 1,
  maxOpslimit: 16,
} as const;

/** Why ferry will not run Argon2id with `params`; undefined when it will. */
export function kdfProblem(params: KdfParams): string | undefined {
  const { memlimit, opslimit } = params;
  if (!Number.isSafeInteger(memlimit) || memlimit < KDF_BOUNDS.minMemlimit || memlimit > KDF_BOUNDS.maxMemlimit) {
    return `Argon2id memory ${memlimit} bytes is outside ${KDF_BOUNDS.minMemlimit} bytes to ${KDF_BOUNDS.maxMemlimit / 1024 ** 3} GiB`;
  }
  if (!Number.isSafeInteger(opslimit) || opslimit < KDF_BOUNDS.minOpslimit || opslimit > KDF_BOUNDS.maxOpslimit) {
    return `Argon2id passes ${opslimit} is outside ${KDF_BOUNDS.minOpslimit} to ${KDF_BOUNDS.maxOpslimit}`;
  }
  return undefined;
}

/** True when `params` are cheaper to brute-force than DEFAULT_KDF (tests use such parameters on purpose). */
export function isWeakKdf(params: KdfParams): boolean {
  return params.memlimit < DEFAULT_KDF.memlimit || params.opslimit < DEFAULT_KDF.opslimit;
}

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
  const problem = kdfProblem(params);
  // Callers check first (parse, options); this keeps any path from hanging on an edited slot.
  if (problem) throw new InputError(`key slot: ${problem}`);
  if (salt.length !== sodium.crypto_pwhash_SALTBYTES) throw new InputError(`key slot: salt is ${salt.length} bytes, not ${sodium.crypto_pwhash_SALTBYTES}`);
  const out = Buffer.alloc(32);
  try {
    sodium.crypto_pwhash(out, secret, salt, params.opslimit, params.memlimit, sodium.crypto_pwhash_ALG_ARGON2ID13);
  } catch (err) {
    throw new FerryError(`Argon2id with ${Math.round(params.memlimit / 1024 ** 2)} MiB failed (${(err as Error).message}); free memory or use a key slot with a smaller --kdf-memory`, { cause: err });
  }
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

/**
 * A key slot's structure, or undefined when it is not one. Its KDF parameters
 * are not judged here (`key list` and `key remove` must still see a slot with
 * absurd ones): use `usableKeySlotProblem` before opening it.
 */
export function parseKeySlot(bytes: Buffer): KeySlot | undefined {
  try {
    const s = JSON.parse(bytes.toString('utf8')) as KeySlot;
    if (typeof s !== 'object' || s === null) return undefined;
    if ((s.version !== 1 && s.version !== 2) || s.kdf !== 'argon2id13' || typeof s.salt !== 'string' || typeof s.wrapped !== 'string') return undefined;
    if (!Number.isInteger(s.opslimit) || !Number.isInteger(s.memlimit)) return undefined;
    return s;
  } catch {
    return undefined;
  }
}

/** Why a parsed slot cannot be opened by this ferry (KDF parameters out of bounds, bad salt); undefined when it can. */
export function usableKeySlotProblem(slot: KeySlot): string | undefined {
  const problem = kdfProblem(slot);
  if (problem) return problem;
  if (Buffer.from(slot.salt, 'base64').length !== sodium.crypto_pwhash_SALTBYTES) return 'its salt is not 16 bytes';
  return undefined;
}
