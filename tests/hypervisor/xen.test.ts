// The Xen driver, tested at the command boundary against recorded xl output
// and real xl config files (see tests/fixtures/xen/README.md). No hypervisor runs.
import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseXlConfig, configString, configStringList } from '../../src/hypervisor/xen/xlConfig';
import { parseDiskSpec, DiskSpecError } from '../../src/hypervisor/xen/diskSpec';
import { parseVifSpec } from '../../src/hypervisor/xen/vifSpec';
import { parseXlList, parseXlListLong } from '../../src/hypervisor/xen/xlList';
import { guestFromConfig } from '../../src/hypervisor/xen/guestConfig';
import { XenDriver, XL_NOT_PAUSED } from '../../src/hypervisor/xen/xenDriver';
import { RecordedCommandRunner, recordedOutput, type RecordedReply } from '../support/recordedRunner';
import { withQuiesced } from '../support/quiesce';
import { HypervisorError, InputError } from '../../src/errors';

const FIXTURES = join(__dirname, '..', 'fixtures', 'xen');
const fixture = (name: string) => readFileSync(join(FIXTURES, name), 'utf8');
const xl = (args: string[], output: string, extra: Partial<RecordedReply> = {}): RecordedReply => ({
  cmd: 'xl', args, ...recordedOutput(FIXTURES, output), ...extra,
});

describe('xl config file parser', () => {
  const examples = readdirSync(join(FIXTURES, 'xlexample'));

  it('has the three example configs shipped by Debian xen-utils-common 4.17', () => {
    expect(examples.sort()).toEqual(['xlexample.hvm', 'xlexample.pvhlinux', 'xlexample.pvlinux']);
  });

  for (const file of examples) {
    it(`reads ${file} as real xl does (name, memory, vcpus, disks)`, () => {
      const text = fixture(`xlexample/${file}`);
      const guest = guestFromConfig(parseXlConfig(text, `/etc/xen/${file}`));
      // What the real xl 4.17 parsed from the same file (`xl -N create`, recorded).
      const real = JSON.parse(fixture(`xl-dryrun/${file}.json`));
      expect(guest.name).toBe(real.c_info.name);
      expect(guest.memoryMiB! * 1024).toBe(real.b_info.target_memkb);
      expect(guest.vcpus).toBe(real.b_info.max_vcpus);
      expect(guest.disks).toEqual(real.disks.map((d: { pdev_path: string; vdev: string; format: string }) => ({
        device: d.vdev, path: d.pdev_path, format: d.format, readOnly: false,
      })));
      expect(guest.config).toEqual({ fileName: file, text });
    });
  }

  it('keeps keys ferry does not interpret, and comments do not become settings', () => {
    const config = parseXlConfig(fixture('xlexample/xlexample.hvm'), 'xlexample.hvm');
    expect(configString(config, 'sdl')).toBe('1');
    expect(configString(config, 'type')).toBe('hvm');
    expect(config.settings.has('uuid')).toBe(false); // commented out in the file
    expect(config.settings.has('viridian')).toBe(false);
  });

  it('reads lists over several lines with comments, trailing commas, both quote styles and `;`', () => {
    const config = parseXlConfig(fixture('fleet/db01.cfg'), 'db01.cfg');
    expect(configStringList(config, 'vif').map((v) => v.value)).toEqual([
      'mac=00:16:3e:1a:2b:02, bridge=xenbr0',
      'mac=00:16:3e:1a:2b:12,bridge=xenbr1',
    ]);
    expect(configStringList(config, 'disk').map((d) => d.line)).toEqual([12, 13]);
    const mail = parseXlConfig(fixture('fleet/mail01.cfg'), 'mail01.cfg');
    expect([configString(mail, 'memory'), configString(mail, 'vcpus')]).toEqual(['512', '1']);
  });

  it('handles escapes, `+=`, nested lists and hex numbers', () => {
    const config = parseXlConfig(
      'extra = "console=hvc0 \\"quoted\\""\nextra += " rw"\npci = [ [ "a" ], "b" ]\nshadow = 0x10\n',
      'x.cfg',
    );
    expect(configString(config, 'extra')).toBe('console=hvc0 "quoted" rw');
    expect(config.settings.get('pci')?.value).toMatchObject({ kind: 'list', items: [{ kind: 'list' }, { kind: 'string', value: 'b' }] });
    expect(configString(config, 'shadow')).toBe('0x10');
  });

  it('reports a syntax error with file and line', () => {
    expect(() => parseXlConfig('name = "a"\nmemory = \nvcpus = 2\n', '/etc/xen/a.cfg'))
      .toThrow(new InputError('/etc/xen/a.cfg:2: expected a value (string, number or [list]), found end of line'));
    expect(() => parseXlConfig('disk = [ "x",\n  "y"\n', '/etc/xen/b.cfg')).toThrow(/b\.cfg:3: .*list starting on line 1/);
    expect(() => parseXlConfig('name = "unterminated\n', 'c.cfg')).toThrow(/c\.cfg:1: unterminated string/);
  });

  it('names file and line of a malformed disk spec, as xl refuses the same file', () => {
    const file = join(FIXTURES, 'broken', 'bad01.cfg');
    const parse = () => guestFromConfig(parseXlConfig(readFileSync(file, 'utf8'), file));
    expect(parse).toThrow(InputError);
    // Real xl 4.17: "unknown value for access: near `wr' in `/dev/vg0/bad01-data,raw,xvdb,wr'"
    expect(parse).toThrow(`${file}:7: bad disk spec: unknown value for access: near 'wr' in '/dev/vg0/bad01-data,raw,xvdb,wr'`);
  });
});

describe('xl disk spec parser', () => {
  // Every spec here was also given to the real xl 4.17 (`xl -N block-attach`); its verdict is recorded.
  const recorded: { spec: string; exitCode: number; disk?: Record<string, unknown>; stderr?: string }[] =
    JSON.parse(fixture('xl-disk-specs.json'));
  // Accepted by the lexer since Xen 4.18 (trusted/untrusted flags); 4.17's xl rejects it.
  const newerThan417 = new Set(['/dev/vg0/x,raw,xvdm,rw,direct-io-safe,no-discard,trusted']);

  it('covers at least 30 recorded specs', () => expect(recorded.length).toBeGreaterThanOrEqual(30));

  for (const entry of recorded.filter((e) => !newerThan417.has(e.spec))) {
    if (entry.exitCode === 0) {
      it(`parses ${JSON.stringify(entry.spec)} exactly as xl does`, () => {
        const d = entry.disk!;
        const parsed = parseDiskSpec(entry.spec);
        expect({
          target: parsed.target, vdev: parsed.vdev, format: parsed.format,
          readWrite: parsed.readWrite, cdrom: parsed.cdrom, script: parsed.script, backendType: parsed.backendType,
        }).toEqual({
          target: d.pdev_path, vdev: d.vdev, format: d.format,
          readWrite: d.readwrite === 1, cdrom: d.is_cdrom === 1, script: d.script, backendType: d.backend,
        });
      });
    } else {
      it(`refuses ${JSON.stringify(entry.spec)} as xl does`, () => {
        expect(() => parseDiskSpec(entry.spec)).toThrow(DiskSpecError);
        const reason = /disk specification: ([^:]+)/.exec(entry.stderr!)![1]!;
        expect(() => parseDiskSpec(entry.spec)).toThrow(reason.replace(/ in `.*/, ''));
      });
    }
  }

  it('accepts the trusted flag of newer Xen releases', () => {
    expect(parseDiskSpec('/dev/vg0/x,raw,xvdm,rw,direct-io-safe,no-discard,trusted').options)
      .toEqual({ 'direct-io-safe': true, discard: false, trusted: true });
  });

  it('lets target= swallow commas, colons and trailing spaces', () => {
    expect(parseDiskSpec('vdev=xvda,target=/srv/a,b:c.img ').target).toBe('/srv/a,b:c.img ');
  });
});

describe('xl vif spec parser', () => {
  it('reads mac and bridge and keeps other keys', () => {
    expect(parseVifSpec('mac=00:16:3E:1a:2b:05, bridge=xenbr0,model=e1000')).toEqual({
      mac: '00:16:3e:1a:2b:05', bridge: 'xenbr0', options: { mac: '00:16:3E:1a:2b:05', bridge: 'xenbr0', model: 'e1000' },
    });
    expect(parseVifSpec('')).toEqual({ options: {} });
    expect(() => parseVifSpec('bridge')).toThrow(/not key=value/);
  });
});

describe('xl list output', () => {
  it('reads name, domid and the paused letter', () => {
    const list = parseXlList(fixture('xl-list.stdout'));
    expect(list.map((d) => [d.name, d.domid, d.paused])).toEqual([
      ['Domain-0', 0, false], ['web01', 3, false], ['db01', 5, false], ['mail01', 7, true],
    ]);
  });

  it('reads xl list -l: disks with read-only when libxl omits readwrite, nics, memory', () => {
    const [web01, db01] = parseXlListLong(fixture('xl-list-l.stdout'));
    expect(web01).toMatchObject({ domid: 3, name: 'web01', vcpus: 2, memoryMiB: 1024, maxMemoryMiB: 2048 });
    expect(db01!.disks).toEqual([
      { device: 'xvda', path: '/dev/vg0/db01-disk', format: 'raw', readOnly: false },
      { device: 'xvdb', path: '/var/lib/xen/images/db01-swap.img', format: 'raw', readOnly: false },
    ]);
    const cdrom = parseXlListLong('[{"domid":9,"config":{"c_info":{"name":"x"},"disks":[{"pdev_path":"/a.iso","vdev":"hdc","format":"raw","removable":1,"is_cdrom":1}]}}]');
    expect(cdrom[0]!.disks).toEqual([{ device: 'hdc', path: '/a.iso', format: 'raw', readOnly: true, cdrom: true }]);
  });

  it('says what to change when xl.conf selects SXP output', () => {
    expect(() => parseXlListLong('(domain\n  (domid 3)\n)')).toThrow(/output_format="json"/);
  });
});

describe('XenDriver', () => {
  const fleet = join(FIXTURES, 'fleet');
  const listReplies = (): RecordedReply[] => [xl(['list'], 'xl-list'), xl(['list', '-l'], 'xl-list-l')];

  it('lists running guests from xl and shut-off guests from /etc/xen/*.cfg', async () => {
    const runner = new RecordedCommandRunner(listReplies());
    const guests = await new XenDriver({ runner, configDir: fleet }).listGuests();
    expect(runner.commandLines()).toEqual(['xl list', 'xl list -l']);
    expect(guests.map((g) => [g.name, g.state, g.id])).toEqual([
      ['web01', 'running', 3], ['db01', 'running', 5], ['mail01', 'paused', 7],
      ['app01', 'shutoff', undefined], ['win01', 'shutoff', undefined],
    ]);
  });

  it('takes a running guest\'s disks from xl list -l and keeps its config file text', async () => {
    const runner = new RecordedCommandRunner(listReplies());
    const guests = await new XenDriver({ runner, configDir: fleet }).listGuests();
    const db01 = guests.find((g) => g.name === 'db01')!;
    expect(db01.nics).toEqual([{ mac: '00:16:3e:1a:2b:02', bridge: 'xenbr0' }, { mac: '00:16:3e:1a:2b:12', bridge: 'xenbr1' }]);
    expect(db01.config).toEqual({ fileName: 'db01.cfg', text: readFileSync(join(fleet, 'db01.cfg'), 'utf8') });
    expect(guests.find((g) => g.name === 'mail01')!.disks).toEqual([
      { device: 'xvda', path: '/dev/mapper/vg--data-mail--store', format: 'raw', readOnly: false },
    ]);
  });

  it('reads a shut-off guest\'s disks from its cfg: qcow2 file, ISO, no empty CD drive', async () => {
    const runner = new RecordedCommandRunner(listReplies());
    const win01 = (await new XenDriver({ runner, configDir: fleet }).listGuests()).find((g) => g.name === 'win01')!;
    expect(win01).toMatchObject({ state: 'shutoff', vcpus: 2, memoryMiB: 4096, maxMemoryMiB: 4096 });
    expect(win01.disks).toEqual([
      { device: 'hda', path: '/var/lib/xen/images/win01.qcow2', format: 'qcow2', readOnly: false },
      { device: 'hdc', path: '/srv/iso/virtio-win.iso', format: 'raw', readOnly: true, cdrom: true },
    ]);
    expect(win01.nics).toEqual([{ mac: '00:16:3e:1a:2b:05', bridge: 'xenbr0', model: 'e1000' }]); // an HVM guest's emulated NIC
  });

  it('fails with a clear error where xl cannot reach a hypervisor', async () => {
    const runner = new RecordedCommandRunner([xl(['list'], 'xl-no-hypervisor', { code: 1 })]);
    await expect(new XenDriver({ runner, configDir: fleet }).listGuests())
      .rejects.toThrow(new HypervisorError("xl list failed (exit 1): ERROR:  Can't find hypervisor information in sysfs!"));
  });

  it('refuses a config directory with a malformed disk spec, naming file and line', async () => {
    const runner = new RecordedCommandRunner([xl(['list'], 'xl-list'), xl(['list', '-l'], 'xl-list-l')]);
    await expect(new XenDriver({ runner, configDir: join(FIXTURES, 'broken') }).listGuests())
      .rejects.toThrow(/broken\/bad01\.cfg:7: bad disk spec/);
  });

  describe('quiesce', () => {
    const web01 = { name: 'web01', id: 3, state: 'running' as const, nics: [], disks: [] };

    it('pauses, runs the body, then unpauses', async () => {
      const runner = new RecordedCommandRunner([
        xl(['list', 'web01'], 'xl-list-web01'),
        { cmd: 'xl', args: ['pause', 'web01'] },
        { cmd: 'lvcreate', args: ['-s', 'stand-in-for-the-snapshot'] },
        { cmd: 'xl', args: ['unpause', 'web01'] },
      ]);
      const driver = new XenDriver({ runner, configDir: fleet });
      const handle = await withQuiesced(driver, web01, async (h) => {
        await runner.run('lvcreate', ['-s', 'stand-in-for-the-snapshot']);
        return h;
      });
      expect(runner.commandLines()).toEqual(['xl list web01', 'xl pause web01', 'lvcreate -s stand-in-for-the-snapshot', 'xl unpause web01']);
      expect(handle).toMatchObject({ quiesced: true, releaseArgv: ['xl', 'unpause', 'web01'] });
    });

    it('tells the guard before xl pause, with an unpause that counts "not paused" as done', async () => {
      const runner = new RecordedCommandRunner([
        xl(['list', 'web01'], 'xl-list-web01'),
        { cmd: 'xl', args: ['pause', 'web01'] },
      ]);
      const told: { argv: readonly string[]; commandsBefore: string[] }[] = [];
      await new XenDriver({ runner, configDir: fleet }).quiesce(web01, {}, {
        holding: (release) => {
          told.push({ argv: release.argv, commandsBefore: runner.commandLines() });
          expect(release.alreadyReleased).toBe(XL_NOT_PAUSED);
        },
      });
      expect(told).toEqual([{ argv: ['xl', 'unpause', 'web01'], commandsBefore: ['xl list web01'] }]);
      expect(XL_NOT_PAUSED.test('libxl: error: libxl_domain.c:670:libxl_domain_unpause: Domain 3:Unpausing domain: Invalid argument')).toBe(true);
    });

    it('unpauses even when the body throws, and the body\'s error is what the caller sees', async () => {
      const runner = new RecordedCommandRunner([
        xl(['list', 'web01'], 'xl-list-web01'), { cmd: 'xl', args: ['pause', 'web01'] }, { cmd: 'xl', args: ['unpause', 'web01'] },
      ]);
      const driver = new XenDriver({ runner, configDir: fleet });
      await expect(withQuiesced(driver, web01, async () => { throw new Error('snapshot failed'); }))
        .rejects.toThrow('snapshot failed');
      expect(runner.commandLines()).toEqual(['xl list web01', 'xl pause web01', 'xl unpause web01']);
    });

    it('release is idempotent: a second call runs nothing', async () => {
      const runner = new RecordedCommandRunner([
        xl(['list', 'web01'], 'xl-list-web01'), { cmd: 'xl', args: ['pause', 'web01'] }, { cmd: 'xl', args: ['unpause', 'web01'] },
      ]);
      const handle = await new XenDriver({ runner, configDir: fleet }).quiesce(web01);
      await Promise.all([handle.release(), handle.release()]);
      await handle.release();
      expect(runner.commandLines().filter((l) => l === 'xl unpause web01')).toHaveLength(1);
    });

    it('a failed unpause is retried by the next release', async () => {
      const runner = new RecordedCommandRunner([
        xl(['list', 'web01'], 'xl-list-web01'), { cmd: 'xl', args: ['pause', 'web01'] },
        { cmd: 'xl', args: ['unpause', 'web01'], code: 1, stderr: 'libxl: error: unpause failed\n' },
        { cmd: 'xl', args: ['unpause', 'web01'] },
      ]);
      const handle = await new XenDriver({ runner, configDir: fleet }).quiesce(web01);
      await expect(handle.release()).rejects.toThrow('xl unpause web01 failed (exit 1): libxl: error: unpause failed');
      await handle.release();
      expect(runner.commandLines().filter((l) => l === 'xl unpause web01')).toHaveLength(2);
    });

    it('runs the pre hook before the pause and the post hook after the unpause', async () => {
      const runner = new RecordedCommandRunner([
        xl(['list', 'web01'], 'xl-list-web01'),
        { cmd: 'ssh', args: ['web01', 'sync'] }, { cmd: 'xl', args: ['pause', 'web01'] },
        { cmd: 'xl', args: ['unpause', 'web01'] }, { cmd: 'logger', args: ['resumed web01'] },
      ]);
      const driver = new XenDriver({ runner, configDir: fleet });
      await withQuiesced(driver, web01, async () => undefined, { pre: ['ssh', '{name}', 'sync'], post: ['logger', 'resumed {name}'] });
      expect(runner.commandLines()).toEqual(['xl list web01', 'ssh web01 sync', 'xl pause web01', 'xl unpause web01', "logger 'resumed web01'"]);
    });

    it('does not pause when the pre hook fails', async () => {
      const runner = new RecordedCommandRunner([
        xl(['list', 'web01'], 'xl-list-web01'), { cmd: 'false', args: [], code: 1 },
      ]);
      await expect(new XenDriver({ runner, configDir: fleet }).quiesce(web01, { pre: ['false'] }))
        .rejects.toThrow('pre hook for guest web01: false failed (exit 1)');
      expect(runner.commandLines()).toEqual(['xl list web01', 'false']);
    });

    it('leaves a guest that someone else paused paused', async () => {
      const runner = new RecordedCommandRunner([xl(['list', 'mail01'], 'xl-list-mail01')]);
      const handle = await new XenDriver({ runner, configDir: fleet })
        .quiesce({ name: 'mail01', id: 7, state: 'running', nics: [], disks: [] });
      await handle.release();
      expect(handle.quiesced).toBe(false);
      expect(runner.commandLines()).toEqual(['xl list mail01']);
    });

    it('needs no command for a shut-off guest', async () => {
      const runner = new RecordedCommandRunner([]);
      const handle = await new XenDriver({ runner, configDir: fleet })
        .quiesce({ name: 'app01', state: 'shutoff', nics: [], disks: [] });
      await handle.release();
      expect(handle.quiesced).toBe(false);
      expect(runner.calls).toEqual([]);
    });

    it('throws a clear error when xl pause fails, and does not unpause', async () => {
      const runner = new RecordedCommandRunner([
        xl(['list', 'web01'], 'xl-list-web01'),
        { cmd: 'xl', args: ['pause', 'web01'], code: 1, stderr: 'test stub: Pausing domain failed\n' },
      ]);
      await expect(new XenDriver({ runner, configDir: fleet }).quiesce(web01)).rejects.toThrow(/xl pause web01 failed \(exit 1\): test stub: Pausing domain failed/);
      expect(runner.commandLines()).toEqual(['xl list web01', 'xl pause web01']);
    });
  });
});
