// The names a restore point gives its disks and its config are file names
// that `restore --to DIR` joins to DIR. Restore points and tar manifests can
// come from other hosts or from a stranger's tar, so a name must be one plain
// file name: nothing that climbs out of DIR, names DIR itself, or hides in a
// terminal. One rule, checked where names are made (backup), where they come
// in (import-tar) and where they are used (restore).

/** Longest file name Linux file systems take (NAME_MAX, in bytes). */
const NAME_MAX = 255;

/** Why `name` cannot be a file name inside a restore directory; undefined when it can. */
export function fileNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return 'it is not a string';
  if (name === '') return 'it is empty';
  if (name === '.' || name === '..') return `'${name}' names a directory, not a file`;
  if (name.includes('/')) return 'it contains a /';
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(name)) return 'it contains a control character';
  if (Buffer.byteLength(name) > NAME_MAX) return `it is longer than ${NAME_MAX} bytes`;
  return undefined;
}

/** A name for messages: control characters and quotes shown escaped, long names cut. */
export function showName(name: unknown): string {
  const s = JSON.stringify(typeof name === 'string' ? name : String(name));
  return s.length > 80 ? `${s.slice(0, 77)}..."` : s;
}

/**
 * The first disk or config name of a restore point (or a manifest) that is
 * not a plain file name, with the reason; undefined when all are fine.
 */
export function unsafeFileName(names: { disks: { name: unknown }[]; config?: { fileName: unknown } }): string | undefined {
  for (const d of names.disks) {
    const problem = fileNameProblem(d.name);
    if (problem) return `disk name ${showName(d.name)} is not a plain file name (${problem})`;
  }
  if (names.config) {
    const problem = fileNameProblem(names.config.fileName);
    if (problem) return `config name ${showName(names.config.fileName)} is not a plain file name (${problem})`;
  }
  return undefined;
}
