// Library errors about one input name it in the library's words
// ("restore target /x: ..."; see Culprit in src/errors.ts). A command knows
// which of its flags fed which parameter, and words the error with the flag
// ("--to /x: ...; add --force to overwrite it").
import { FerryError } from '../errors';

/** Library parameter (in words, as Culprit.parameter gives it) → the flag that sets it. */
export type FlagNames = Readonly<Record<string, string>>;

/** The error, its message worded with the flag if it is about an input one of `flags` fed. */
export function withFlagName(err: unknown, flags: FlagNames): unknown {
  if (!(err instanceof FerryError) || !err.culprit) return err;
  const c = err.culprit;
  const flag = flags[c.parameter];
  if (!flag) return err;
  const overrideFlag = c.override && flags[c.override.parameter];
  err.message = `${flag} ${c.value}: ${c.detail}${overrideFlag ? `; add ${overrideFlag} to ${c.override!.effect}` : ''}`;
  return err;
}

/** Run `body`; an error about an input that one of `flags` fed is worded with that flag. */
export async function withFlagNames<T>(flags: FlagNames, body: () => T | Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (err) {
    throw withFlagName(err, flags);
  }
}
