// Caps upload and download bandwidth with a token bucket per direction, so a
// nightly backup does not saturate the office uplink. The Backend moves whole
// objects, so an object is paid for as a unit: a write waits until the bucket
// can cover it (then goes at line speed), a read pays after it arrived. Over a
// backup of many packs the average rate is the limit; one object may burst.
import { Backend, ObjectBytes, ObjectInfo, ObjectLock, ObjectStream, ObjectType, objectLength } from './backend';

export interface RateLimits {
  /** Bytes per second written to the inner backend; undefined = unlimited. */
  uploadBytesPerSec?: number;
  /** Bytes per second read from the inner backend; undefined = unlimited. */
  downloadBytesPerSec?: number;
  /** Bytes that may pass at once after an idle period (default 1/10 s worth of the rate). */
  burstBytes?: number;
}

/**
 * A token bucket kept as "the time at which the bucket is next empty"
 * (GCRA): each take() pushes that time by bytes/rate and sleeps until it is
 * within `burst` of now. Callers queue fairly in call order without timers
 * of their own, and concurrency cannot overspend.
 */
export class TokenBucket {
  private emptyAt = 0;
  private readonly burstMs: number;

  constructor(readonly bytesPerSec: number, burstBytes?: number) {
    if (!(bytesPerSec > 0)) throw new RangeError(`rate must be positive, got ${bytesPerSec}`);
    this.burstMs = ((burstBytes ?? bytesPerSec / 10) / bytesPerSec) * 1000;
  }

  /** Resolve once `bytes` may pass. */
  async take(bytes: number): Promise<void> {
    const now = performance.now();
    this.emptyAt = Math.max(this.emptyAt, now) + (bytes / this.bytesPerSec) * 1000;
    const wait = this.emptyAt - this.burstMs - now;
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

export class RateLimitedBackend implements Backend {
  readonly location: string;
  /** Retention requests carry no data to meter. */
  readonly objectLock?: ObjectLock;
  private readonly up?: TokenBucket;
  private readonly down?: TokenBucket;

  readonly openStream?: (type: ObjectType) => Promise<ObjectStream>;

  constructor(private readonly inner: Backend, limits: RateLimits) {
    this.location = inner.location;
    this.objectLock = inner.objectLock;
    if (limits.uploadBytesPerSec) this.up = new TokenBucket(limits.uploadBytesPerSec, limits.burstBytes);
    if (limits.downloadBytesPerSec) this.down = new TokenBucket(limits.downloadBytesPerSec, limits.burstBytes);
    const openStream = inner.openStream?.bind(inner);
    if (openStream) {
      this.openStream = async (type) => {
        const stream = await openStream(type);
        return {
          append: async (bytes) => {
            await this.up?.take(bytes.length);
            return stream.append(bytes);
          },
          commit: (name) => stream.commit(name),
          abort: () => stream.abort(),
        };
      };
    }
  }

  async read(type: ObjectType, name: string): Promise<Buffer> {
    const data = await this.inner.read(type, name);
    await this.down?.take(data.length);
    return data;
  }

  async readRange(type: ObjectType, name: string, offset: number, length: number, into?: Uint8Array): Promise<Buffer> {
    await this.down?.take(length);
    return this.inner.readRange(type, name, offset, length, into);
  }

  async write(type: ObjectType, name: string, data: ObjectBytes): Promise<void> {
    await this.up?.take(objectLength(data));
    return this.inner.write(type, name, data);
  }

  // Metadata requests are tiny; they are not worth metering.
  stat(type: ObjectType, name: string): Promise<ObjectInfo | undefined> {
    return this.inner.stat(type, name);
  }

  list(type: ObjectType): AsyncIterable<ObjectInfo> {
    return this.inner.list(type);
  }

  remove(type: ObjectType, name: string): Promise<void> {
    return this.inner.remove(type, name);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
