import { describe, expect, it } from 'vitest';
import { parseFerryConfig, settingsForGuest } from '../../src/config/ferryConfig';

const FILE = '/etc/ferry/ferry.conf';

describe('retention policy in ferry.conf', () => {
  const config = parseFerryConfig(
    `
[retention]
keep_last = 3
keep_daily = 7
keep_within = "2w"
keep_tags = ["keep"]

[guest."db*"]
keep_daily = 30
keep_last = 0
`,
    FILE,
  );

  it('gives every guest [retention], and a matching [guest] table replaces the keys it sets', () => {
    expect(settingsForGuest(config, 'web01').retention).toMatchObject({ last: 3, daily: 7, within: { days: 14, text: '2w' }, tags: ['keep'] });
    expect(settingsForGuest(config, 'db01').retention).toMatchObject({ last: 0, daily: 30, within: { days: 14 }, tags: ['keep'] });
  });

  it('has no policy when the file sets none', () => {
    expect(settingsForGuest(parseFerryConfig('', FILE), 'web01').retention).toBeUndefined();
  });

  it('names the line of a bad retention key', () => {
    expect(() => parseFerryConfig('[retention]\nkeep_within = "two weeks"\n', FILE)).toThrow(
      `${FILE}:2: key 'retention.keep_within': expected a duration such as "14d", "2w", "6m" or "1y", got "two weeks"`,
    );
    expect(() => parseFerryConfig('[retention]\nkeep_dayly = 7\n', FILE)).toThrow(/key 'retention\.keep_dayly': unknown key; .*did you mean 'keep_daily'/);
    expect(() => parseFerryConfig('[guest."x"]\nkeep_daily = -1\n', FILE)).toThrow(/key 'guest\.x\.keep_daily': expected an integer from 0 to 1000000, got -1/);
  });
});
