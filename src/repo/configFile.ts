// The `config` object: a small plaintext header (magic, format version,
// repository id) followed by the sealed repository settings.
// See docs/FORMAT.md, "config".
import { sealObject, openObject } from '../crypto/objectCodec';
import type { DataKeys } from '../crypto/keys';
import { ChunkerParams } from './format';

export const CONFIG_MAGIC = Buffer.from('FERRYREP');
export const FORMAT_VERSION = 1;
export const CONFIG_HEADER_BYTES = 8 + 2 + 16;

export interface RepositorySettings {
  chunker: ChunkerParams;
  regionSize: number;
  /** Target size of pack files: far below 2 GiB so FAT/exFAT drives work. */
  packSize: number;
  compressionLevel: number;
  created: string;
}

export interface ConfigHeader {
  version: number;
  repositoryId: Buffer;
}

/** Undefined if the bytes do not start with the magic. */
export function parseConfigHeader(bytes: Buffer): ConfigHeader | undefined {
  if (bytes.length < CONFIG_HEADER_BYTES || !bytes.subarray(0, 8).equals(CONFIG_MAGIC)) return undefined;
  return { version: bytes.readUInt16LE(8), repositoryId: Buffer.from(bytes.subarray(10, 26)) };
}

export function encodeConfig(dataKey: Buffer, repositoryId: Buffer, settings: RepositorySettings): Buffer {
  const head = Buffer.alloc(CONFIG_HEADER_BYTES);
  CONFIG_MAGIC.copy(head);
  head.writeUInt16LE(FORMAT_VERSION, 8);
  repositoryId.copy(head, 10);
  return Buffer.concat([head, sealObject(dataKey, 'config', Buffer.from(JSON.stringify(settings)))]);
}

export function decodeConfigBody(dataKey: DataKeys, bytes: Buffer): RepositorySettings | undefined {
  const plain = openObject(dataKey, 'config', bytes.subarray(CONFIG_HEADER_BYTES));
  if (!plain) return undefined;
  return JSON.parse(plain.toString('utf8')) as RepositorySettings;
}
