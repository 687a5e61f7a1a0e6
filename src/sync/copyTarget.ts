// Repository identity for copies. A copy target holds the same `config` and
// `keys/*` bytes as its source, so every content-named object (packs, index
// files, restore points) can move between the two byte for byte: no key is
// needed to copy, and nothing is decrypted or re-encrypted on the way.
import { Backend, NotFoundError, ObjectType } from '../storage/backend';
import { Repository } from '../repo/repository';
import { FORMAT_VERSION, parseConfigHeader } from '../repo/configFile';
import { RepositoryNotFoundError, UsageError } from '../errors';

/** Read and parse a repository's config header; one clear error if it is not a repository we can read. */
export async function readIdentity(backend: Backend): Promise<{ repositoryId: Buffer; configBytes: Buffer }> {
  const configBytes = await Repository.readConfigBytes(backend);
  const header = parseConfigHeader(configBytes);
  if (!header) {
    throw new RepositoryNotFoundError(`${backend.location}/config: not a ferry repository config (bad magic); check the location`);
  }
  if (header.version !== FORMAT_VERSION) {
    throw new RepositoryNotFoundError(
      `${backend.location}: repository format version ${header.version} is not supported (this ferry reads version ${FORMAT_VERSION}); use a matching ferry release`,
    );
  }
  return { repositoryId: header.repositoryId, configBytes };
}

const CONTENT_TYPES: readonly ObjectType[] = ['keys', 'data', 'index', 'restorepoints'];

/** The first object found at `backend`, or undefined if it holds nothing of a repository. */
async function firstObject(backend: Backend): Promise<string | undefined> {
  if (await backend.stat('config', 'config')) return 'config';
  for (const type of CONTENT_TYPES) {
    for await (const info of backend.list(type)) return `${type}/${info.name}`;
  }
  return undefined;
}

/**
 * Make `target` a copy target of `source`: the same config and key slots, no
 * data yet. Refuses a target that holds anything, so an existing repository
 * (or a half-finished one) is never mixed with another identity. Key slots go
 * first and config last, as in `init`: a location with a config is complete.
 */
export async function initCopyTarget(source: Backend, target: Backend): Promise<{ repositoryId: Buffer; keySlots: number }> {
  const { repositoryId, configBytes } = await readIdentity(source);
  const existing = await firstObject(target);
  if (existing) {
    throw new UsageError(
      `${target.location}: is not empty (holds ${existing}); 'ferry init --from' needs an empty location — choose another, or use 'ferry sync' if it is already a copy`,
    );
  }
  let keySlots = 0;
  for await (const info of source.list('keys')) {
    await target.write('keys', info.name, await source.read('keys', info.name));
    keySlots++;
  }
  if (keySlots === 0) {
    throw new RepositoryNotFoundError(`${source.location}/keys: no key slot to copy; the source repository cannot be opened either`);
  }
  await target.write('config', 'config', configBytes);
  return { repositoryId, keySlots };
}

/** Refuse to sync into a repository of another identity (its objects would be unreadable there). */
export async function checkSameIdentity(source: Backend, target: Backend): Promise<Buffer> {
  const src = await readIdentity(source);
  let dst;
  try {
    dst = await readIdentity(target);
  } catch (err) {
    if (err instanceof RepositoryNotFoundError || err instanceof NotFoundError) {
      throw new RepositoryNotFoundError(
        `${target.location}: not a copy of ${source.location} (no repository there): create it with ferry init --from ${source.location} --repo ${target.location}`,
        { cause: err },
      );
    }
    throw err;
  }
  if (!src.repositoryId.equals(dst.repositoryId)) {
    throw new UsageError(
      `${target.location}: not a copy of ${source.location} (repository id ${dst.repositoryId.toString('hex').slice(0, 8)}, expected ${src.repositoryId.toString('hex').slice(0, 8)}): create it with ferry init --from ${source.location}`,
    );
  }
  return src.repositoryId;
}
