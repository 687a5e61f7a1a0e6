// Durations as people write them in flags and config: `500ms`, `90s`, `10m`,
// `1.5h`, `2d` (m is minutes). Retention's `keep_within` is not one of these:
// it counts calendar units (`1y2m` is a year and two months), retention/ reads it.

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export interface DurationReading {
  /** The unit of a bare number (`--wait-lock 90` is seconds); without it a unit is required. */
  bareUnit?: 's';
}

/** `500ms`, `90s`, `10m`, `1.5h`, `2d` → milliseconds; undefined when it is not a duration. */
export function parseDuration(text: string, reading: DurationReading = {}): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(text.trim());
  const unit = m?.[2] ?? reading.bareUnit;
  if (!m || unit === undefined) return undefined;
  return Math.round(Number(m[1]) * UNIT_MS[unit]!);
}
