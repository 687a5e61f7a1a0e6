// Sizes and durations as flags and config keys take them: one reading for all.
import { describe, expect, it } from 'vitest';
import { formatBytes, parseByteSize } from '../../src/units/byteSize';
import { parseDuration } from '../../src/units/duration';

describe('sizes', () => {
  it('reads K, M, G and T as powers of 1024, with or without B/iB, and a bare number as bytes', () => {
    expect(parseByteSize('4096')).toBe(4096);
    expect(parseByteSize('256K')).toBe(256 * 1024);
    expect(parseByteSize('160MiB')).toBe(160 * 1024 ** 2);
    expect(parseByteSize(' 2g ')).toBe(2 * 1024 ** 3);
    expect(parseByteSize('1.5T')).toBe(1.5 * 1024 ** 4);
  });

  it('is not a size: negative, words, unknown units', () => {
    for (const text of ['-1M', 'lots', '5X', '', 'M', '1e9']) expect(parseByteSize(text), text).toBeUndefined();
  });

  it('prints three significant digits in binary units', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.50 KiB');
    expect(formatBytes(150 * 1024 ** 2)).toBe('150 MiB');
    expect(formatBytes(3 * 1024 ** 5)).toBe('3.00 PiB');
  });
});

describe('durations', () => {
  it('reads ms, s, m (minutes), h and d', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('10m')).toBe(600_000);
    expect(parseDuration('1.5h')).toBe(5_400_000);
    expect(parseDuration('2d')).toBe(172_800_000);
  });

  it('takes a bare number only where a unit for it is given', () => {
    expect(parseDuration('90')).toBeUndefined();
    expect(parseDuration('90', { bareUnit: 's' })).toBe(90_000);
  });

  it('is not a duration: negative, words, calendar units', () => {
    for (const text of ['-5s', 'soon', '1y', '2w', '']) expect(parseDuration(text), text).toBeUndefined();
  });
});
