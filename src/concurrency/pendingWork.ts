// Work started and not awaited where it starts (blobs handed to the pack
// writer while a scan goes on): its first failure is kept, not left as an
// unhandled rejection, and shows when the caller checks or waits for it all.

export class PendingWork {
  private readonly pending = new Set<Promise<void>>();
  private failure: Error | undefined;

  /** Follow `work`; the promise returned settles with it and never rejects. */
  track(work: Promise<unknown>): Promise<void> {
    const followed = work.then(
      () => undefined,
      (e: unknown) => {
        this.failure ??= e instanceof Error ? e : new Error(String(e));
      },
    );
    this.pending.add(followed);
    void followed.then(() => this.pending.delete(followed));
    return followed;
  }

  throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }

  /** Wait for everything tracked so far (and anything it adds), then throw the first failure, if any. */
  async settled(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
    this.throwIfFailed();
  }
}
