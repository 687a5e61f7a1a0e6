// A config file ferry cannot use: one line saying file:line, which key, and
// what is expected (exit 7, like any unusable input).
import { InputError } from '../errors';

export class ConfigError extends InputError {
  constructor(
    /** The config file as given (e.g. `/etc/ferry/ferry.conf`). */
    readonly file: string,
    /** 1-based line, when known. */
    readonly line: number | undefined,
    /** The key in the file's own notation (`libvirt.uri`), when the error is about one. */
    readonly key: string | undefined,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`${file}${line !== undefined ? `:${line}` : ''}: ${key !== undefined ? `key '${key}': ` : ''}${detail}`, options);
  }
}
