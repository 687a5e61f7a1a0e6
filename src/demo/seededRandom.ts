// The one seeded pseudo-random generator (mulberry32): the demo fleet's images
// and the tests' data come out the same on every run, from a number. Not for
// anything secret (keys and nonces come from libsodium).
export class SeededRandom {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform 32-bit unsigned integer. */
  uint32(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.uint32() / 4294967296;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Fill `buf` with pseudo-random bytes (a trailing partial word too); returns it. */
  fill(buf: Buffer): Buffer {
    let i = 0;
    for (; i + 4 <= buf.length; i += 4) buf.writeUInt32LE(this.uint32(), i);
    if (i < buf.length) {
      const last = this.uint32();
      for (let k = 0; i < buf.length; i++, k++) buf[i] = (last >>> (8 * k)) & 0xff;
    }
    return buf;
  }
}
