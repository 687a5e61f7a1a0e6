// ferry.conf's memory_limit: the memory budget of backup --all (--memory wins),
// a size with K, M or G of at least 96M; anything else is one line naming it.
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/configError';
import { parseFerryConfig, parseMemoryLimit } from '../../src/config/ferryConfig';

const FILE = '/etc/ferry/ferry.conf';
const MiB = 1024 * 1024;

describe('memory_limit in ferry.conf', () => {
  it('is a size in bytes, absent by default', () => {
    expect(parseFerryConfig('memory_limit = "160M"\n', FILE).memoryLimit).toBe(160 * MiB);
    expect(parseFerryConfig('memory_limit = "1G"\n', FILE).memoryLimit).toBe(1024 * MiB);
    expect(parseFerryConfig('memory_limit = "98304KiB"\n', FILE).memoryLimit).toBe(96 * MiB);
    expect(parseFerryConfig('concurrency = 2\n', FILE).memoryLimit).toBeUndefined();
  });

  it('refuses less than 96M, a bare number or a non-string, naming file, line and key', () => {
    for (const value of ['"64M"', '"160"', '"lots"', '160']) {
      let message = '';
      try {
        parseFerryConfig(`concurrency = 2\nmemory_limit = ${value}\n`, FILE);
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        message = (err as Error).message;
      }
      expect(message, value).toMatch(/^\/etc\/ferry\/ferry\.conf:2: .*memory_limit/);
    }
    expect(parseMemoryLimit('95M')).toBeUndefined();
    expect(parseMemoryLimit('96M')).toBe(96 * MiB);
  });
});
