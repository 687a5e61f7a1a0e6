// At most N holders at once; the others wait their turn, first come first served.
// Backup uses it so that no more page-patch tasks hold their buffers (bases
// carrier, sealed output) than there are workers to run them: a task queued
// behind busy workers held ~6 MiB for nothing.
export class TaskSlots {
  private free: number;
  private readonly waiting: (() => void)[] = [];

  constructor(slots: number) {
    this.free = slots;
  }

  /** Wait for a slot; the function returned gives it back (call it once). */
  async acquire(): Promise<() => void> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    };
  }
}
