// Authenticated encryption: XChaCha20-Poly1305 (IETF) from libsodium, via
// sodium-native (native libsodium; ~4.8x the WASM build's throughput here,
// see docs/ARCHITECTURE.md). Sealed form: nonce(24) | ciphertext | tag(16).
import sodium from 'sodium-native';

export const KEY_BYTES = 32;
export const NONCE_BYTES = 24;
export const TAG_BYTES = 16;
export const SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES;

/** Encrypt `plain` under `key`, binding `ad` (associated data) to the result. */
export function seal(key: Buffer, plain: Uint8Array, ad: Uint8Array | null): Buffer {
  const out = Buffer.allocUnsafe(NONCE_BYTES + plain.length + TAG_BYTES);
  sealInto(key, plain, ad, out);
  return out;
}

/** `seal` into the start of `out` (at least plain.length + 40 bytes); returns the sealed length. */
export function sealInto(key: Buffer, plain: Uint8Array, ad: Uint8Array | null, out: Uint8Array): number {
  const length = NONCE_BYTES + plain.length + TAG_BYTES;
  const nonce = out.subarray(0, NONCE_BYTES);
  sodium.randombytes_buf(nonce);
  sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(out.subarray(NONCE_BYTES, length), plain, ad, null, nonce, key);
  return length;
}

/** Decrypt a sealed buffer; returns undefined when authentication fails. */
export function open(key: Buffer, sealed: Uint8Array, ad: Uint8Array | null): Buffer | undefined {
  if (sealed.length < SEAL_OVERHEAD) return undefined;
  const nonce = sealed.subarray(0, NONCE_BYTES);
  const out = Buffer.allocUnsafe(sealed.length - SEAL_OVERHEAD);
  try {
    sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(out, null, sealed.subarray(NONCE_BYTES), ad, nonce, key);
  } catch {
    return undefined;
  }
  return out;
}

/** `open` into `out` (exactly sealed.length - 40 bytes); false when authentication fails. */
export function openInto(key: Buffer, sealed: Uint8Array, ad: Uint8Array | null, out: Uint8Array): boolean {
  if (sealed.length < SEAL_OVERHEAD || out.length !== sealed.length - SEAL_OVERHEAD) return false;
  try {
    sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(out, null, sealed.subarray(NONCE_BYTES), ad, sealed.subarray(0, NONCE_BYTES), key);
  } catch {
    return false;
  }
  return true;
}

export function randomBytes(n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  sodium.randombytes_buf(b);
  return b;
}
