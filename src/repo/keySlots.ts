// The repository's key slots (`keys/`): each wraps the master key (or, after
// `ferry key rotate`, the key ring) for one passphrase or key file. Opening
// finds the slot a secret unlocks; the rest is `ferry key list/add/remove/rotate`.
import { Backend } from '../storage/backend';
import { CorruptionError, UsageError, WrongPasswordError } from '../errors';
import { newMasterKey } from '../crypto/keys';
import { KdfParams, KeySlot, createKeySlot, openKeySlot, parseKeySlot, usableKeySlotProblem } from '../crypto/keySlot';
import { randomBytes } from '../crypto/aead';

export interface KeySlotInfo {
  id: string;
  slot: KeySlot;
  /** The slot this process opened the repository with. */
  current: boolean;
}

/** Wrap `master` for `secret` in a new slot; returns the slot's id. */
export async function writeKeySlot(
  backend: Backend,
  repositoryId: Buffer,
  master: Buffer,
  secret: Buffer,
  kdf: KdfParams,
  kind: KeySlot['kind'],
): Promise<string> {
  const id = randomBytes(8).toString('hex');
  const slot = createKeySlot(master, secret, repositoryId, kdf, kind);
  await backend.write('keys', id, Buffer.from(JSON.stringify(slot, null, 1)));
  return id;
}

/**
 * The master key (or key ring) of the first slot `secret` opens, and that
 * slot's id. A slot whose KDF parameters are out of bounds (crypto/keySlot.ts,
 * KDF_BOUNDS) is skipped, never run: `onSkippedSlot` hears which and why.
 */
export async function unlockKeySlot(
  backend: Backend,
  repositoryId: Buffer,
  secret: Buffer,
  onSkippedSlot?: (id: string, problem: string) => void,
): Promise<{ master: Buffer; slotId: string }> {
  const slots: { id: string; slot: KeySlot }[] = [];
  for await (const info of backend.list('keys')) {
    const slot = parseKeySlot(await backend.read('keys', info.name));
    if (slot) slots.push({ id: info.name, slot });
  }
  if (slots.length === 0) {
    throw new CorruptionError(`${backend.location}/keys: no readable key slot; the repository cannot be opened`, 'keys');
  }
  let skipped = 0;
  for (const { id, slot } of slots) {
    const problem = usableKeySlotProblem(slot);
    if (problem) {
      skipped++;
      onSkippedSlot?.(id, problem);
      continue;
    }
    const master = openKeySlot(slot, secret, repositoryId);
    if (master) return { master, slotId: id };
  }
  const tried = slots.length - skipped;
  throw new WrongPasswordError(
    `${backend.location}: wrong passphrase or key file (tried ${tried} key slot${tried === 1 ? '' : 's'}` +
      `${skipped > 0 ? `, skipped ${skipped} with unusable KDF parameters` : ''}); check FERRY_PASSWORD / --password-file`,
  );
}

/** The key slots of an open repository: list, add, remove, rotate the data key. */
export class KeySlots {
  constructor(
    private readonly backend: Backend,
    private readonly repositoryId: Buffer,
    private readonly master: Buffer,
    /** The slot this process opened the repository with. */
    readonly openedWith: string,
  ) {}

  async list(): Promise<KeySlotInfo[]> {
    const out: KeySlotInfo[] = [];
    for await (const info of this.backend.list('keys')) {
      const slot = parseKeySlot(await this.backend.read('keys', info.name));
      if (slot) out.push({ id: info.name, slot, current: info.name === this.openedWith });
    }
    return out.sort((a, b) => a.slot.created.localeCompare(b.slot.created));
  }

  add(secret: Buffer, kdf: KdfParams, kind: KeySlot['kind']): Promise<string> {
    return writeKeySlot(this.backend, this.repositoryId, this.master, secret, kdf, kind);
  }

  async remove(idOrPrefix: string): Promise<string> {
    const slots = await this.list();
    const matches = slots.filter((s) => s.id.startsWith(idOrPrefix));
    if (matches.length !== 1) {
      throw new UsageError(`key ${idOrPrefix}: ${matches.length === 0 ? 'no such key' : 'ambiguous prefix'}; see 'ferry key list'`);
    }
    if (slots.length === 1) {
      throw new UsageError(`key ${matches[0].id}: it is the last key of ${this.backend.location}; add another with 'ferry key add' before removing it`);
    }
    await this.backend.remove('keys', matches[0].id);
    return matches[0].id;
  }

  /**
   * `ferry key rotate`: a new data key for everything written from now on.
   * The keyring (old keys + the new one) is wrapped in a new slot for
   * `secret` (the passphrase this repository was opened with), then every
   * other slot is removed: they wrap only the old keys, and whoever holds
   * them must not read what comes next. Objects already stored are not
   * rewritten. Returns the new slot and the removed ones.
   */
  async rotateDataKey(secret: Buffer): Promise<{ slot: string; removed: string[] }> {
    const slots = await this.list();
    const current = slots.find((s) => s.current);
    if (!current || !openKeySlot(current.slot, secret, this.repositoryId)) {
      throw new WrongPasswordError(`${this.backend.location}: the passphrase given does not open key ${this.openedWith}; give the one the repository was opened with`);
    }
    const keyring = Buffer.concat([this.master, newMasterKey()]);
    const kdf = { opslimit: current.slot.opslimit, memlimit: current.slot.memlimit };
    // New slot first: the repository always has a slot that opens everything.
    const slot = await writeKeySlot(this.backend, this.repositoryId, keyring, secret, kdf, current.slot.kind);
    const removed: string[] = [];
    for (const s of slots) {
      await this.backend.remove('keys', s.id);
      removed.push(s.id);
    }
    return { slot, removed };
  }
}
