// Run `fn` over items with at most `limit` in flight; the first failure stops
// new work and is rethrown once the in-flight calls have settled.
export async function forEachLimit<T>(items: Iterable<T>, limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  const iterator = items[Symbol.iterator]();
  let failure: { err: unknown } | undefined;
  const lane = async (): Promise<void> => {
    for (;;) {
      if (failure) return;
      const next = iterator.next();
      if (next.done) return;
      try {
        await fn(next.value);
      } catch (err) {
        failure ??= { err };
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, limit) }, lane));
  if (failure) throw failure.err;
}
