// The progress display itself (src/cli/progress.ts), on a captured stream with
// its own clock: what a terminal gets (rows redrawn in place, log lines above
// them) and what cron gets (timestamped lines, at most one per row per
// interval, the final one always). The commands' use of it: progress.test.ts.
import { describe, expect, it } from 'vitest';
import { ProgressBoard, ProgressLine, dedupeField, progressOutput, type ProgressOutput } from '../../src/cli/progress';
import { UsageError } from '../../src/errors';

const MiB = 1024 * 1024;

/** A stream that keeps what is written, and a clock the test moves. */
function capture(mode: ProgressOutput['mode'], opts: { intervalMs?: number; columns?: number } = {}) {
  const writes: string[] = [];
  const clock = { t: Date.UTC(2026, 11, 1, 2, 0, 0) };
  const output: ProgressOutput = {
    mode,
    intervalMs: opts.intervalMs ?? 60_000,
    stream: { write: (s: string) => writes.push(s), isTTY: mode === 'bar', columns: opts.columns ?? 120 },
    now: () => clock.t,
  };
  return { writes, clock, output, text: () => writes.join('') };
}

describe('progress on a terminal', () => {
  it('redraws one row in place with a bar, bytes done/total, rate and ETA, and ends below it', () => {
    const c = capture('bar');
    const line = new ProgressLine('backup web01', c.output);
    line.update(0, 100 * MiB, ['dedupe -']);
    c.clock.t += 2000;
    line.update(40 * MiB, 100 * MiB, ['new 10.0 MiB', 'dedupe 4.0x']);
    line.finish();
    expect(c.writes).toHaveLength(4);
    for (const w of c.writes.slice(0, 3)) expect(w.startsWith('\r\x1b[K')).toBe(true);
    expect(c.writes[1]).toMatch(/^\r\x1b\[Kbackup web01 \[#{12}\.{18}\]  40% 40\.0 MiB\/100 MiB 20\.0 MiB\/s ETA 0:03 new 10\.0 MiB dedupe 4\.0x$/);
    // The last state stays on the screen: the bar of where it stopped, its time instead of an ETA.
    expect(c.writes[2]).toMatch(/^\r\x1b\[Kbackup web01 \[.*\]  40% 40\.0 MiB\/100 MiB 20\.0 MiB\/s in 2\.0 s new 10\.0 MiB dedupe 4\.0x$/);
    expect(c.writes[3]).toBe('\n');
  });

  it('redraws at most every 150 ms, and always the final state', () => {
    const c = capture('bar');
    const line = new ProgressLine('restore web01', c.output);
    for (let i = 0; i <= 100; i++) {
      line.update(i * MiB, 100 * MiB);
      c.clock.t += 10;
    }
    line.finish();
    // 1 s of updates every 10 ms: one redraw per 150 ms at most, plus the final one and the newline.
    expect(c.writes.length).toBeLessThanOrEqual(Math.ceil(1010 / 150) + 1 + 2);
    expect(c.writes.at(-2)).toMatch(/ 100% 100 MiB\/100 MiB /);
  });

  it('keeps each row within the terminal width, dropping the bar before any figure', () => {
    const c = capture('bar', { columns: 60 });
    const line = new ProgressLine('backup a-guest-with-a-long-name', c.output);
    line.update(5 * MiB, 100 * MiB, ['new 1.00 MiB', 'dedupe 5.0x']);
    line.finish();
    for (const row of c.text().split(/\r\x1b\[K|\n/)) expect(row.length).toBeLessThanOrEqual(59);
    expect(c.writes[0]).not.toMatch(/\[[#.]/);
  });

  it('redraws several rows together with cursor-up (each from its first update on), and prints log lines above them', () => {
    const c = capture('bar');
    const board = new ProgressBoard(c.output);
    const a = board.row('new01');
    const b = board.row('new02');
    board.row('new03'); // nothing to show yet: not drawn
    a.update(0, 10 * MiB, ['0/2 guests']);
    c.clock.t += 1000;
    b.update(5 * MiB, 10 * MiB, ['1/2 guests']);
    c.clock.t += 200;
    a.update(1 * MiB, 10 * MiB, ['0/2 guests']);
    // Two rows on the screen: back up one line to the start of the first, then both rows.
    expect(c.writes.at(-1)).toMatch(/^\x1b\[1A\r\x1b\[Knew01 .*0\/2 guests\n\x1b\[Knew02 .*ETA 0:01 1\/2 guests$/);
    board.log('2026-12-01T02:00:01Z new01: web01 xvda.img → /srv/pool/web01/xvda.img');
    // The rows are cleared (cursor up, clear to the end of the screen), the line printed, the rows drawn again below it.
    expect(c.writes.at(-3)).toBe('\x1b[1A\r\x1b[J');
    expect(c.writes.at(-2)).toBe('2026-12-01T02:00:01Z new01: web01 xvda.img → /srv/pool/web01/xvda.img\n');
    expect(c.writes.at(-1)).toMatch(/^\r\x1b\[Knew01 .*\n\x1b\[Knew02 /);
    a.finish('done');
    b.finish('failed');
    board.close();
    expect(c.writes.at(-2)).toMatch(/new02 .*FAILED/);
    expect(c.writes.at(-1)).toBe('\n');
    expect(c.text()).not.toContain('new03');
  });
});

describe('progress without a terminal', () => {
  it('writes timestamped lines: at most one per interval, the first after one, the final one always', () => {
    const c = capture('lines', { intervalMs: 30_000 });
    const line = new ProgressLine('backup web01', c.output);
    for (let s = 0; s <= 100; s++) {
      line.update(s * MiB, 100 * MiB, ['dedupe 2.0x']);
      c.clock.t += 1000; // 101 updates over 101 s
    }
    line.finish();
    const lines = c.text().split('\n').filter(Boolean);
    // t = 30, 60, 90 s and the final line.
    expect(lines).toHaveLength(4);
    expect(lines[0]).toBe('2026-12-01T02:00:30Z backup web01: 30%, 30.0 MiB of 100 MiB, 1.00 MiB/s, ETA 1:10, dedupe 2.0x');
    expect(lines[1]).toBe('2026-12-01T02:01:00Z backup web01: 60%, 60.0 MiB of 100 MiB, 1.00 MiB/s, ETA 0:40, dedupe 2.0x');
    expect(lines[3]).toBe('2026-12-01T02:01:41Z backup web01: done, 100 MiB of 100 MiB in 1 min 41 s, 1014 KiB/s, dedupe 2.0x');
    expect(c.writes.join('')).not.toMatch(/\r|\x1b/);
  });

  it('keeps the interval per row, and prints log lines as they come', () => {
    const c = capture('lines', { intervalMs: 10_000 });
    const board = new ProgressBoard(c.output);
    const a = board.row('new01');
    a.update(1, 4);
    c.clock.t += 5000;
    const b = board.row('new02');
    b.update(1, 4);
    board.log('a log line');
    c.clock.t += 5000;
    a.update(2, 4); // 10 s since new01 started: due
    b.update(3, 4); // 5 s since new02 started: not yet
    b.finish('done');
    board.close();
    expect(c.text().split('\n').filter(Boolean).map((l) => l.replace(/^\S+Z /, ''))).toEqual([
      'a log line',
      'new01: 50%, 2 B of 4 B, 0 B/s, ETA 0:20',
      'new02: done, 3 B of 4 B in 5.0 s, 1 B/s',
    ]);
  });

  it('a failure leaves the last word to the error line, unless progress lines came before', () => {
    const c = capture('lines', { intervalMs: 10_000 });
    const quick = new ProgressLine('restore web01', c.output);
    quick.update(1 * MiB, 10 * MiB);
    c.clock.t += 3000;
    quick.finish('failed');
    expect(c.text()).toBe('');
    const slow = new ProgressLine('restore web02', c.output);
    c.clock.t += 10_000;
    slow.update(1 * MiB, 10 * MiB);
    c.clock.t += 3000;
    slow.finish('failed');
    expect(c.text().split('\n').filter(Boolean).map((l) => l.replace(/^\S+Z /, ''))).toEqual([
      'restore web02: 10%, 1.00 MiB of 10.0 MiB, 102 KiB/s, ETA 1:30',
      'restore web02: FAILED after 1.00 MiB of 10.0 MiB in 13.0 s, 78.8 KiB/s',
    ]);
  });
});

describe('choosing the presentation', () => {
  const tty = { write: () => true, isTTY: true };
  const pipe = { write: () => true, isTTY: false };

  it('bar on a terminal, lines otherwise, nothing with --json or --no-progress', () => {
    expect(progressOutput({}, tty).mode).toBe('bar');
    expect(progressOutput({}, pipe).mode).toBe('lines');
    expect(progressOutput({ json: true }, tty).mode).toBe('off');
    expect(progressOutput({ progress: false }, tty).mode).toBe('off');
    expect(progressOutput({ progress: false }, pipe).mode).toBe('off');
    expect(progressOutput({}, pipe).intervalMs).toBe(60_000);
    expect(progressOutput({ progressInterval: '5m' }, pipe).intervalMs).toBe(300_000);
  });

  it('refuses an interval under a second or not a duration, naming the flag', () => {
    for (const bad of ['0', '500ms', 'often', '-5s']) {
      expect(() => progressOutput({ progressInterval: bad }, pipe)).toThrow(UsageError);
      expect(() => progressOutput({ progressInterval: bad }, pipe)).toThrow(`--progress-interval: '${bad}' is not a duration of at least 1 s; use e.g. 30s or 5m`);
    }
  });

  it('an off display writes nothing but log lines', () => {
    const c = capture('off');
    const board = new ProgressBoard(c.output);
    board.row('x').update(1, 2);
    board.log('only this');
    board.close();
    expect(c.text()).toBe('only this\n');
  });

  it('the dedupe ratio is read bytes over stored bytes', () => {
    expect(dedupeField(300 * MiB, 100 * MiB)).toBe('dedupe 3.0x');
    expect(dedupeField(300 * MiB, 0)).toBe('all deduplicated');
    expect(dedupeField(0, 0)).toBe('dedupe -');
  });
});
