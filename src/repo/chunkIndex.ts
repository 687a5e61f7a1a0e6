// The in-memory index: blob id → (pack, offset, stored length, raw length, type).
// 10 million chunks must fit in well under 1 GiB, and V8 Maps stop at 2^24
// entries, so this is an open-addressing hash table in plain Buffers: 256
// sub-tables (by the id's first byte), each a flat array of 48-byte slots.
// Tables grow by 1.25x (not 2x) at 85% load, so occupancy stays between 68% and
// 85% (56-71 bytes per chunk); a loaded index is refitted to 80% (60 bytes per
// chunk, issue 11's "at most 64"): 10 million chunks in ~600 MB. Ids are keyed
// hashes, so linear probing at 85% costs ~4 probes per hit, ~23 per miss.
//
// Slot layout: id[1..32) (31 bytes; byte 0 is the sub-table) | typeFlags u8 |
// pack u32 | offset u32 | storedLength u32 | rawLength u32.

const SLOT = 48;
const EMPTY = 0xffffffff;
/** A blob decided for storing in this run but not yet in a written pack. */
export const PENDING_PACK = 0xfffffffe;
const MAX_LOAD = 0.85;
/** The occupancy `fit` leaves: room for a night's new chunks before any sub-table grows. */
const FIT_LOAD = 0.8;
const INITIAL_SLOTS = 64;
const GROWTH = 1.25;

export interface BlobLocation {
  pack: number;
  offset: number;
  storedLength: number;
  rawLength: number;
  typeFlags: number;
}

class SubTable {
  slots: Buffer;
  count = 0;
  constructor(capacity: number) {
    this.slots = SubTable.emptySlots(capacity);
  }
  static emptySlots(capacity: number): Buffer {
    const b = Buffer.alloc(capacity * SLOT);
    for (let i = 0; i < capacity; i++) b.writeUInt32LE(EMPTY, i * SLOT + 32);
    return b;
  }
  get capacity(): number {
    return this.slots.length / SLOT;
  }
}

export class ChunkIndex {
  private readonly tables: SubTable[] = Array.from({ length: 256 }, () => new SubTable(INITIAL_SLOTS));
  private total = 0;

  get size(): number {
    return this.total;
  }

  /** Bytes held by the table slots: the figure behind "bytes per chunk". */
  get memoryBytes(): number {
    return this.tables.reduce((n, t) => n + t.slots.length, 0);
  }

  has(id: Uint8Array): boolean {
    return this.find(id) >= 0;
  }

  get(id: Uint8Array): BlobLocation | undefined {
    const t = this.tables[id[0]];
    const at = this.find(id);
    if (at < 0) return undefined;
    const s = t.slots;
    return {
      typeFlags: s[at + 31],
      pack: s.readUInt32LE(at + 32),
      offset: s.readUInt32LE(at + 36),
      storedLength: s.readUInt32LE(at + 40),
      rawLength: s.readUInt32LE(at + 44),
    };
  }

  /** The typeFlags of a stored blob (undefined when absent or only claimed): get() without making a location. */
  storedTypeFlags(id: Uint8Array): number | undefined {
    const at = this.find(id);
    if (at < 0) return undefined;
    const s = this.tables[id[0]].slots;
    return s.readUInt32LE(at + 32) === PENDING_PACK ? undefined : s[at + 31];
  }

  /** Insert or overwrite. Returns true if the id was new. */
  set(id: Uint8Array, loc: BlobLocation): boolean {
    let t = this.tables[id[0]];
    if ((t.count + 1) / t.capacity > MAX_LOAD) this.grow(id[0]);
    t = this.tables[id[0]];
    let at = this.find(id);
    const isNew = at < 0;
    if (isNew) {
      at = this.freeSlot(t, id);
      t.count++;
      this.total++;
    }
    const s = t.slots;
    s.set(id.subarray(1, 32), at);
    s[at + 31] = loc.typeFlags;
    s.writeUInt32LE(loc.pack, at + 32);
    s.writeUInt32LE(loc.offset, at + 36);
    s.writeUInt32LE(loc.storedLength, at + 40);
    s.writeUInt32LE(loc.rawLength, at + 44);
    return isNew;
  }

  /**
   * Remove an entry. Returns true if it was there. Backward-shift deletion:
   * later slots of the probe run move up, so lookups never stop early at a hole.
   */
  delete(id: Uint8Array): boolean {
    const t = this.tables[id[0]];
    const found = this.find(id);
    if (found < 0) return false;
    const s = t.slots;
    const cap = t.capacity;
    let hole = found / SLOT;
    for (let j = (hole + 1) % cap; s.readUInt32LE(j * SLOT + 32) !== EMPTY; j = (j + 1) % cap) {
      const at = j * SLOT;
      const home = ((s[at] | (s[at + 1] << 8) | (s[at + 2] << 16) | (s[at + 3] << 24)) >>> 0) % cap;
      // The entry at j may fill the hole unless its home lies cyclically in (hole, j].
      const homeAfterHole = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (!homeAfterHole) {
        s.copy(s, hole * SLOT, at, at + SLOT);
        hole = j;
      }
    }
    s.writeUInt32LE(EMPTY, hole * SLOT + 32);
    t.count--;
    this.total--;
    return true;
  }

  /** Every entry; `fn` gets a fresh id buffer. */
  forEach(fn: (id: Buffer, loc: BlobLocation) => void): void {
    for (let first = 0; first < 256; first++) {
      const s = this.tables[first].slots;
      for (let at = 0; at < s.length; at += SLOT) {
        const pack = s.readUInt32LE(at + 32);
        if (pack === EMPTY) continue;
        const id = Buffer.allocUnsafe(32);
        id[0] = first;
        s.copy(id, 1, at, at + 31);
        fn(id, {
          typeFlags: s[at + 31],
          pack,
          offset: s.readUInt32LE(at + 36),
          storedLength: s.readUInt32LE(at + 40),
          rawLength: s.readUInt32LE(at + 44),
        });
      }
    }
  }

  /** Byte offset of the id's slot, or -1. Linear probing from a hash of bytes 1..5. */
  private find(id: Uint8Array): number {
    const t = this.tables[id[0]];
    const s = t.slots;
    const cap = t.capacity;
    let i = ((id[1] | (id[2] << 8) | (id[3] << 16) | (id[4] << 24)) >>> 0) % cap;
    for (;;) {
      const at = i * SLOT;
      if (s.readUInt32LE(at + 32) === EMPTY) return -1;
      if (s[at] === id[1] && s[at + 1] === id[2] && sameId(s, at, id)) return at;
      if (++i === cap) i = 0;
    }
  }

  private freeSlot(t: SubTable, id: Uint8Array): number {
    const s = t.slots;
    const cap = t.capacity;
    let i = ((id[1] | (id[2] << 8) | (id[3] << 16) | (id[4] << 24)) >>> 0) % cap;
    while (s.readUInt32LE(i * SLOT + 32) !== EMPTY) if (++i === cap) i = 0;
    return i * SLOT;
  }

  /**
   * Resize every sub-table to hold its entries at FIT_LOAD: after loading an
   * index, the growth steps have left tables anywhere between 68% and 85% full.
   */
  fit(): void {
    for (let first = 0; first < 256; first++) {
      const capacity = Math.max(INITIAL_SLOTS, Math.ceil(this.tables[first].count / FIT_LOAD));
      if (capacity !== this.tables[first].capacity) this.rehash(first, capacity);
    }
  }

  private grow(first: number): void {
    this.rehash(first, Math.ceil(this.tables[first].capacity * GROWTH));
  }

  private rehash(first: number, capacity: number): void {
    const old = this.tables[first];
    const next = new SubTable(capacity);
    const cap = next.capacity;
    const s = old.slots;
    for (let at = 0; at < s.length; at += SLOT) {
      if (s.readUInt32LE(at + 32) === EMPTY) continue;
      let i = ((s[at] | (s[at + 1] << 8) | (s[at + 2] << 16) | (s[at + 3] << 24)) >>> 0) % cap;
      while (next.slots.readUInt32LE(i * SLOT + 32) !== EMPTY) if (++i === cap) i = 0;
      s.copy(next.slots, i * SLOT, at, at + SLOT);
    }
    next.count = old.count;
    this.tables[first] = next;
  }
}

function sameId(s: Buffer, at: number, id: Uint8Array): boolean {
  for (let k = 1; k < 32; k++) if (s[at + k - 1] !== id[k]) return false;
  return true;
}
