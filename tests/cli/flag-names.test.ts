// Library errors about one input name it in the library's words (Culprit in
// src/errors.ts); a command words them with the flag that fed that input.
import { describe, expect, it } from 'vitest';
import { InputError, LockedError, UsageError } from '../../src/errors';
import { withFlagName, withFlagNames } from '../../src/cli/flagNames';

const inTheWay = () => InputError.about({
  parameter: 'restore target', value: '/srv/out.img', detail: 'already exists',
  override: { parameter: 'force', effect: 'overwrite it' },
});

describe('errors about one input', () => {
  it('read in the library\'s words without the CLI', () => {
    const err = inTheWay();
    expect(err.message).toBe('restore target /srv/out.img: already exists; force would overwrite it');
    expect(err.exitCode).toBe(7);
  });

  it('are worded with the flags of the command, keeping class and exit code', () => {
    const err = withFlagName(inTheWay(), { 'restore target': '--to', force: '--force' });
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).message).toBe('--to /srv/out.img: already exists; add --force to overwrite it');
    expect((err as InputError).exitCode).toBe(7);
  });

  it('leave out the override when the command has no flag for it', () => {
    const err = withFlagName(inTheWay(), { 'restore target': '--to' }) as InputError;
    expect(err.message).toBe('--to /srv/out.img: already exists');
  });

  it('stay as they are when the command feeds that input by no flag, and other errors are untouched', async () => {
    expect((withFlagName(inTheWay(), { 'guest name': '--guest' }) as Error).message).toBe('restore target /srv/out.img: already exists; force would overwrite it');
    const locked = new LockedError('locked by someone');
    await expect(withFlagNames({ 'restore target': '--to' }, () => { throw locked; })).rejects.toBe(locked);
    await expect(withFlagNames({ 'disk number': '--disk' }, () => {
      throw UsageError.about({ parameter: 'disk number', value: '3', detail: 'restore point 1234abcd has 1 disk(s), numbered from 0' });
    })).rejects.toThrow(/^--disk 3: restore point 1234abcd has 1 disk\(s\), numbered from 0$/);
  });
});
