// The channel a worker scanning a region for a full backup uses to ask the
// main thread, window by window, which of the chunks it just cut the
// repository lacks, and to hand over those chunks sealed. It seals them from
// the bytes it scanned instead of reading them again in a second task (a full
// backup read every new byte twice, past the page cache since it reads with
// O_DIRECT). The main thread holds the index; the worker blocks on a shared
// word for its answer (a few microseconds on an idle main thread), so the scan
// stays synchronous and its window is still there when the answer comes.
import { MessageChannel, MessagePort, receiveMessageOnPort } from 'node:worker_threads';
import { SealedBlobs } from './tasks';

/** What the worker sends: chunks it cut (ask which are fresh), chunks it sealed, or "all sent". */
export type FreshChunkRequest =
  | { kind: 'claim'; ids: Uint8Array; lengths: number[] }
  | { kind: 'sealed'; ids: Uint8Array; blobs: SealedBlobs }
  | { kind: 'done' };

/** The main thread's answer to a claim (fresh[i] = 1: chunk i is new, seal it); `error` stops the task. */
export interface FreshChunkReply {
  fresh?: Uint8Array;
  /** A sealed-output buffer whose blobs are packed, to seal this claim's fresh chunks into. */
  recycled?: Uint8Array;
  error?: string;
}

/** What a worker task carries of the channel. */
export interface FreshChunkEnd {
  port: MessagePort;
  /** One Int32: bumped by the main thread after each reply. */
  signal: SharedArrayBuffer;
}

/** The main thread's side of a scan that seals as it goes. */
export interface FreshChunkDesk {
  /** Which of these chunks the worker is to seal (1) or leaves to the repository (0); claims the fresh ones. */
  claim(ids: Uint8Array, lengths: number[]): Uint8Array;
  /** Resolves when the worker may seal more; rejects (stopping the worker) if storing sealed blobs failed. */
  roomForMore(): Promise<void>;
  /** Take sealed blobs over for packing; must not throw (a failure shows at roomForMore and after the scan). */
  store(ids: Uint8Array, blobs: SealedBlobs): void;
  /** A sealed-output buffer to seal the next blobs into, if one is spare (transferred). */
  spareOutput(): Uint8Array | undefined;
}

/** The worker's side: requests and, for a claim, the wait for its reply. */
export class FreshChunkClient {
  private readonly signal: Int32Array;

  constructor(private readonly end: FreshChunkEnd) {
    this.signal = new Int32Array(end.signal);
  }

  claim(ids: Uint8Array, lengths: number[]): FreshChunkReply {
    return this.ask({ kind: 'claim', ids, lengths });
  }

  /** Hand sealed blobs over (their buffer moves to the main thread); no wait. */
  sealed(ids: Uint8Array, blobs: SealedBlobs): void {
    this.end.port.postMessage({ kind: 'sealed', ids, blobs } satisfies FreshChunkRequest, [blobs.data.buffer as ArrayBuffer]);
  }

  /** Everything is handed over (the task's result may reach the main thread before the messages do). */
  done(): void {
    this.end.port.postMessage({ kind: 'done' } satisfies FreshChunkRequest);
  }

  private ask(request: FreshChunkRequest): FreshChunkReply {
    const seen = Atomics.load(this.signal, 0);
    this.end.port.postMessage(request);
    for (;;) {
      const got = receiveMessageOnPort(this.end.port);
      if (got) {
        const reply = got.message as FreshChunkReply;
        if (reply.error !== undefined) throw new Error(reply.error);
        return reply;
      }
      // Woken by the main thread's notify; the timeout only keeps a terminated worker from waiting on.
      Atomics.wait(this.signal, 0, seen, 1000);
    }
  }
}

/**
 * Serve one task's channel on the main thread: claims go to `desk.claim` and
 * are answered once `desk.roomForMore` resolves (the desk bounds the sealed
 * output waiting for the pack writer); sealed blobs go to `desk.store`.
 * Returns the worker's end (to transfer with the task) and `finish`, to call
 * when the task has settled: it waits for the worker's last messages (if it
 * succeeded) and closes the channel.
 */
export function serveFreshChunks(desk: FreshChunkDesk): { end: FreshChunkEnd; finish(succeeded: boolean): Promise<void> } {
  const { port1, port2 } = new MessageChannel();
  const signal = new SharedArrayBuffer(4);
  const word = new Int32Array(signal);
  let queue = Promise.resolve();
  const reply = (r: FreshChunkReply) => {
    port1.postMessage(r, r.recycled ? [r.recycled.buffer as ArrayBuffer] : []);
    Atomics.add(word, 0, 1);
    Atomics.notify(word, 0);
  };
  let sawDone!: () => void;
  const done = new Promise<void>((resolve) => (sawDone = resolve));
  const handle = async (m: FreshChunkRequest): Promise<void> => {
    if (m.kind === 'done') return sawDone();
    if (m.kind === 'sealed') return desk.store(m.ids, m.blobs);
    try {
      const fresh = desk.claim(m.ids, m.lengths);
      await desk.roomForMore();
      // A buffer to seal into goes only with chunks to seal: the worker holds none it does not use.
      reply({ fresh, recycled: fresh.includes(1) ? desk.spareOutput() : undefined });
    } catch (e) {
      reply({ error: e instanceof Error ? e.message : String(e) });
    }
  };
  port1.on('message', (m: FreshChunkRequest) => {
    queue = queue.then(() => handle(m));
  });
  return {
    end: { port: port2, signal },
    finish: async (succeeded) => {
      // The worker's last messages may still be on their way; without an error, 'done' is its last.
      if (succeeded) await done;
      port1.close();
      await queue;
    },
  };
}
