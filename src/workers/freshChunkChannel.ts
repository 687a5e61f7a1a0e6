// The channel a worker scanning a region uses to ask the main thread, window
// by window, which of the chunks it just cut the repository lacks, and to
// hand over those chunks sealed. It seals them from the bytes it scanned
// instead of reading them again in a second task (a backup read every new
// byte twice, past the page cache since it reads with O_DIRECT). The main
// thread holds the index; the worker blocks on a shared word for its answer
// (a few microseconds on an idle main thread), so the scan stays synchronous
// and its window is still there when the answer comes.
//
// When the region had a map before (a nightly run), fresh chunks are stored
// as page patches against the old chunks at their place, which the main
// thread reads from the repository. The worker would wait for those reads:
// instead it keeps a claim's fresh chunks aside (a copy, the window moves on),
// and the answer to its next claim, or to 'owed' at the end of the region,
// brings their bases while the main thread reads the next ones.
import { MessageChannel, MessagePort, receiveMessageOnPort } from 'node:worker_threads';
import { PatchBases, SealedBlobs } from './tasks';

/** What the worker sends: chunks it cut (ask which are fresh), chunks it sealed, or "all sent". */
export type FreshChunkRequest =
  | { kind: 'claim'; ids: Uint8Array; offsets: number[]; lengths: number[] }
  | { kind: 'sealed'; ids: Uint8Array; blobs: SealedBlobs; returnedBases?: Uint8Array }
  /** With bases: the bases of the last claim's fresh chunks (the region is scanned). */
  | { kind: 'owed' }
  | { kind: 'done' };

/** The main thread's answer to a claim (fresh[i] = 1: chunk i is new, seal it); `error` stops the task. */
export interface FreshChunkReply {
  fresh?: Uint8Array;
  /** A sealed-output buffer whose blobs are packed, to seal the fresh chunks into (this claim's, or with bases the last one's). */
  recycled?: Uint8Array;
  /** With bases: those of the last claim's fresh chunks, `of[j]` the base of its j-th (-1: none); absent if it had none. */
  bases?: PatchBases;
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
  /**
   * If the region had a map before: the page-patch bases of the chunks `claim` found fresh (offsets: in the
   * region). The worker then seals a claim's fresh chunks once the answer to its next request brings these.
   */
  bases?(claimed: { ids: Uint8Array; offsets: number[]; lengths: number[]; fresh: Uint8Array }): Promise<PatchBases | undefined>;
  /** Resolves when the worker may seal more; rejects (stopping the worker) if storing sealed blobs failed. */
  roomForMore(): Promise<void>;
  /** Take sealed blobs over for packing; must not throw (a failure shows at roomForMore and after the scan). */
  store(ids: Uint8Array, blobs: SealedBlobs): void;
  /** The carrier of a reply's bases, back from the worker once it sealed against them. */
  basesReturned?(carrier: Uint8Array): void;
  /** A sealed-output buffer to seal the next blobs into, if one is spare (transferred). */
  spareOutput(): Uint8Array | undefined;
}

/** The worker's side: requests and, for a claim, the wait for its reply. */
export class FreshChunkClient {
  private readonly signal: Int32Array;

  constructor(private readonly end: FreshChunkEnd) {
    this.signal = new Int32Array(end.signal);
  }

  claim(ids: Uint8Array, offsets: number[], lengths: number[]): FreshChunkReply {
    return this.ask({ kind: 'claim', ids, offsets, lengths });
  }

  /** With bases, at the region's end: the answer that brings the last claim's bases. */
  owed(): FreshChunkReply {
    return this.ask({ kind: 'owed' });
  }

  /** Hand sealed blobs over (their buffer moves to the main thread), and the bases' carrier back; no wait. */
  sealed(ids: Uint8Array, blobs: SealedBlobs, returnedBases?: Uint8Array): void {
    const transfer = [blobs.data.buffer as ArrayBuffer];
    if (returnedBases) transfer.push(returnedBases.buffer as ArrayBuffer);
    this.end.port.postMessage({ kind: 'sealed', ids, blobs, returnedBases } satisfies FreshChunkRequest, transfer);
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
    const transfer = [r.recycled?.buffer, r.bases?.data.buffer].filter((b): b is ArrayBuffer => b instanceof ArrayBuffer);
    port1.postMessage(r, transfer);
    Atomics.add(word, 0, 1);
    Atomics.notify(word, 0);
  };
  let sawDone!: () => void;
  const done = new Promise<void>((resolve) => (sawDone = resolve));
  /** With bases: those of the last claim's fresh chunks, being read. */
  let owed: Promise<PatchBases | undefined> | undefined;
  const handle = async (m: FreshChunkRequest): Promise<void> => {
    if (m.kind === 'done') return sawDone();
    if (m.kind === 'sealed') {
      if (m.returnedBases) desk.basesReturned?.(m.returnedBases);
      return desk.store(m.ids, m.blobs);
    }
    try {
      const fresh = m.kind === 'claim' ? desk.claim(m.ids, m.lengths) : undefined;
      const anyFresh = fresh !== undefined && fresh.includes(1);
      if (!desk.bases) {
        await desk.roomForMore();
        // A buffer to seal into goes only with chunks to seal: the worker holds none it does not use.
        return reply({ fresh, recycled: anyFresh ? desk.spareOutput() : undefined });
      }
      // The worker holds the last claim's fresh chunks (if it had any) until these bases come.
      const sealNow = owed;
      owed = m.kind === 'claim' && anyFresh ? desk.bases({ ids: m.ids, offsets: m.offsets, lengths: m.lengths, fresh: fresh! }) : undefined;
      owed?.catch(() => undefined); // awaited with the next request, or the task failed
      const bases = sealNow && (await sealNow);
      await desk.roomForMore();
      reply({ fresh, recycled: sealNow ? desk.spareOutput() : undefined, bases });
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
