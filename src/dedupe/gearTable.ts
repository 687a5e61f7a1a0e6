// The gear table of the FastCDC rolling hash: 256 random 32-bit words. Derived
// from the repository's gear key, so the same image is cut differently in
// another repository and chunk sizes cannot fingerprint known content.
import { Blake3Hasher } from '@napi-rs/blake-hash';

export function gearTable(gearKey: Buffer): Int32Array {
  const bytes = Buffer.alloc(1024);
  // Keyed BLAKE3 in counter mode over 32 blocks of 32 bytes.
  for (let block = 0; block < 32; block++) {
    const word = Buffer.alloc(4);
    word.writeUInt32LE(block);
    Blake3Hasher.newKeyed(gearKey).update(word).digestBuffer().copy(bytes, block * 32);
  }
  const table = new Int32Array(256);
  for (let i = 0; i < 256; i++) table[i] = bytes.readInt32LE(i * 4);
  return table;
}
