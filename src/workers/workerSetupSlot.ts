// A pool's worker setup (keys, chunker and compression settings) handed to its
// worker threads through shared memory, so that the threads can start before
// the setup exists: loading a worker's modules and native bindings takes about
// as long as unlocking the repository (Argon2id) and loading its index, and
// both now happen at once. Each worker reads the setup on its first task,
// which the pool only sends after posting it.
import * as v8 from 'node:v8';
import { WorkerSetup } from './tasks';

/** Int32 state (0 empty, 1 posted) and Int32 length, then the serialized setup. */
const HEADER_BYTES = 8;
/** Keys and settings serialize to well under 1 KiB; a keyring of many rotated data keys still fits. */
const SLOT_BYTES = 64 * 1024;

export class WorkerSetupSlot {
  constructor(readonly shared: SharedArrayBuffer = new SharedArrayBuffer(SLOT_BYTES)) {}

  /** Main thread: the setup every worker of the pool takes. Posted once, before any task. */
  post(setup: WorkerSetup): void {
    const bytes = v8.serialize(setup);
    if (bytes.length > this.shared.byteLength - HEADER_BYTES) throw new Error(`worker setup of ${bytes.length} bytes does not fit its ${this.shared.byteLength}-byte slot`);
    const head = new Int32Array(this.shared, 0, 2);
    if (Atomics.load(head, 0) !== 0) throw new Error('worker setup posted twice');
    new Uint8Array(this.shared, HEADER_BYTES, bytes.length).set(bytes);
    head[1] = bytes.length;
    Atomics.store(head, 0, 1);
  }

  /** Worker thread: the posted setup (a copy). */
  take(): WorkerSetup {
    const head = new Int32Array(this.shared, 0, 2);
    if (Atomics.load(head, 0) !== 1) throw new Error('worker task before its pool posted the setup');
    return v8.deserialize(Buffer.from(new Uint8Array(this.shared, HEADER_BYTES, head[1]))) as WorkerSetup;
  }
}
