// Sizes as people write and read them: `500M`, `2G`, `1.5T`, `256KiB`, `4096`.
// One reading for every flag and config key that takes a size, so `--memory`,
// `--max-repack`, `--pack-size` and `memory_limit` agree on what `1G` means.

const POWERS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** `500M`, `2G`, `1.5T`, `256KiB`, `4096` → bytes (K, M, G, T are powers of 1024); undefined when it is not a size. */
export function parseByteSize(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  if (!m) return undefined;
  const bytes = Math.floor(Number(m[1]) * POWERS[m[2]!.toUpperCase()]!);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** `500K`, `10M`, `1.5M/s`, `2G` → bytes per second (at least 1); undefined when it is not a rate. */
export function parseByteRate(text: string): number | undefined {
  const bytes = parseByteSize(text.trim().replace(/\/s$/i, ''));
  return bytes !== undefined && bytes >= 1 ? bytes : undefined;
}

/** 1536 → `1.50 KiB`; three significant digits, powers of 1024. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[u]}`;
}
