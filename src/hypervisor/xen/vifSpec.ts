// Parser for one xl VIFSPEC (docs/man/xl-network-configuration.5): comma-
// separated `key=value` pairs, e.g. 'mac=00:16:3e:1a:2b:01,bridge=xenbr0'.
// Every pair is kept; ferry only interprets mac and bridge.

export interface XlVifSpec {
  mac?: string;
  bridge?: string;
  /** All pairs as written, including mac and bridge. */
  options: Record<string, string>;
}

/** Throws a plain Error with the offending item; the caller adds file and line. */
export function parseVifSpec(spec: string): XlVifSpec {
  const options: Record<string, string> = {};
  for (const raw of spec.split(',')) {
    const item = raw.trim();
    if (item === '') continue;
    const eq = item.indexOf('=');
    if (eq <= 0) throw new Error(`vif item '${item}' is not key=value in '${spec}'`);
    options[item.slice(0, eq).trim()] = item.slice(eq + 1).trim();
  }
  return {
    ...(options.mac ? { mac: options.mac.toLowerCase() } : {}),
    ...(options.bridge ? { bridge: options.bridge } : {}),
    options,
  };
}
