// Reading one stored object of the repository (not a blob inside a pack), and
// how messages name it.
import { Backend, ObjectType } from '../storage/backend';

/**
 * Read an object and decode it (`decode` returns undefined when the bytes fail
 * authentication or their content name). A failure through a local cache is
 * not yet damage: the cached copy is evicted and the repository's copy read
 * once more; only if that fails too is the object damaged (undefined).
 */
export async function readDecodedObject<T>(backend: Backend, type: ObjectType, name: string, decode: (bytes: Buffer) => T | undefined): Promise<T | undefined> {
  const value = decode(await backend.read(type, name));
  if (value !== undefined || !backend.evict) return value;
  await backend.evict(type, name);
  return decode(await backend.read(type, name));
}

/** Where an object lies under the repository location, for messages (packs sit in `data/xx/`). */
export function objectPath(location: string, type: ObjectType, name: string): string {
  return `${location}/${type === 'data' ? `data/${name.slice(0, 2)}` : type}/${name}`;
}
