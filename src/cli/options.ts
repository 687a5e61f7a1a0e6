// Shared option parsing for commander.

/** For an option given several times (`--guest a --guest b`): collects every value, in order. */
export function repeatable(value: string, previous: string[]): string[] {
  return [...previous, value];
}
