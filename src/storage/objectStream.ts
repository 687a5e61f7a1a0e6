// An ObjectStream for any Backend: the backend's own (a local directory writes
// the pieces to a temporary file as they come), or one that collects the
// pieces in one buffer and hands it to `write` at commit. The second keeps the
// memory S3 always took (a pack's bytes until its PUT) and goes through every
// wrapper's `write` (retries, rate limits, retention), which a streamed piece
// could not. Its buffer is kept for the backend's next stream: a fresh 16 MiB
// per pack would fault in 4096 fresh pages each time (~60 ms here).
import { Backend, ObjectStream, ObjectType } from './backend';

/** Room beyond the expected size, so the piece that crosses it usually still fits. */
const SLACK_BYTES = 2 * 1024 * 1024;

/** `expectedBytes`: about how large the object will be (a pack's target size), for a collecting stream's buffer. */
export function openObjectStream(backend: Backend, type: ObjectType, expectedBytes = 0): Promise<ObjectStream> {
  return backend.openStream ? backend.openStream(type) : Promise.resolve(new CollectedObjectStream(backend, type, expectedBytes));
}

/** Buffers of finished collecting streams, per backend, for its next ones. */
const spareBuffers = new WeakMap<Backend, Buffer[]>();

export class CollectedObjectStream implements ObjectStream {
  private buffer: Buffer;
  private size = 0;

  constructor(private readonly backend: Backend, private readonly type: ObjectType, private readonly expectedBytes = 0) {
    this.buffer = spareBuffers.get(backend)?.pop() ?? Buffer.alloc(0);
  }

  async append(bytes: Uint8Array): Promise<void> {
    if (this.size + bytes.length > this.buffer.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.size + bytes.length, this.expectedBytes) + SLACK_BYTES);
      this.buffer.copy(grown, 0, 0, this.size);
      this.buffer = grown;
    }
    this.buffer.set(bytes, this.size);
    this.size += bytes.length;
  }

  async commit(name: string): Promise<void> {
    try {
      await this.backend.write(this.type, name, this.buffer.subarray(0, this.size));
    } finally {
      this.release();
    }
  }

  async abort(): Promise<void> {
    this.release();
  }

  /** The buffer goes back for the backend's next stream (two kept: `backup --all` backs up two guests at a time). */
  private release(): void {
    const spare = spareBuffers.get(this.backend) ?? [];
    spareBuffers.set(this.backend, spare);
    if (this.buffer.length > 0 && spare.length < 2) spare.push(this.buffer);
    this.buffer = Buffer.alloc(0);
    this.size = 0;
  }
}
