// Property-based fuzzing of every parser that reads user or guest-controlled
// text: ferry.conf, xl guest configs and disk specs, libvirt domain XML and
// the manifest of an imported tar. Whatever the input, the parser returns or
// throws a FerryError with its exit code; nothing reaches "internal error".
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseFerryConfig } from '../../src/config/ferryConfig';
import { parseXlConfig } from '../../src/hypervisor/xen/xlConfig';
import { guestFromConfig } from '../../src/hypervisor/xen/guestConfig';
import { parseDiskSpec } from '../../src/hypervisor/xen/diskSpec';
import { parseDomainXml } from '../../src/hypervisor/libvirt/domainXml';
import { parseManifest } from '../../src/tar/manifest';
import { FUZZ_RUNS, fixtureTexts, mutated, returnsOrFerryError, tokenSoup } from '../support/fuzz';
import * as fs from 'node:fs';
import * as path from 'node:path';

const params = { numRuns: FUZZ_RUNS };

describe('ferry.conf', () => {
  const example = fs.readFileSync(path.join(__dirname, '..', '..', 'docs', 'ferry.conf.example'), 'utf8');
  const tokens = [
    '[xen]', '[libvirt]', '[qemu]', '[[static.guest]]', '[guest."web*"]', '[guest."[z-a]"]', 'repository = ', 'password_file = ', 'concurrency = ',
    'include = ', 'exclude = ', 'qmp_sockets = ', 'disks = ', 'name = ', 'quiesce = ', 'snapshot = ', 'boot_group = ', 'pre_hook = ',
    '"', "'", '"""', '[', ']', '{', '}', ',', '=', '.', '\n', '#', '0', '-1', '1e400', 'true', '1979-05-27T07:32:00Z', '{ path = "/x", device = "xvda" }',
  ];
  it('returns a config or a ConfigError for mutated example files', () => {
    fc.assert(fc.property(mutated([example], tokens), (text) => returnsOrFerryError(() => parseFerryConfig(text, '/etc/ferry/ferry.conf'))), params);
  });
  it('returns a config or a ConfigError for token soup', () => {
    fc.assert(fc.property(tokenSoup(tokens), (text) => returnsOrFerryError(() => parseFerryConfig(text, '/etc/ferry/ferry.conf'))), params);
  });
});

describe('xl guest config', () => {
  const seeds = fixtureTexts('xen', /\.cfg$|^xlexample\./);
  const tokens = [
    'name = ', 'disk = ', 'vif = ', 'memory = ', 'maxmem = ', 'vcpus = ', '+=', '=', '[', ']', ',', '"', "'", '\n', '#', ';',
    '\\x4', '\\0', '\\q', "'phy:/dev/vg0/x,xvda,w'", "'format=raw, vdev=xvda, access=rw, target=/x'", "'mac=00:16:3e:00:00:01,bridge=br0'",
    '0x10', '1e999', '-5', '"a', "'b",
  ];
  const parse = (text: string) => guestFromConfig(parseXlConfig(text, '/etc/xen/guest.cfg'));
  it('returns a guest or a FerryError for mutated real configs', () => {
    fc.assert(fc.property(mutated(seeds, tokens), (text) => returnsOrFerryError(() => parse(text))), params);
  });
  it('returns a guest or a FerryError for token soup', () => {
    fc.assert(fc.property(tokenSoup(tokens), (text) => returnsOrFerryError(() => parse(text))), params);
  });
});

describe('xl disk spec', () => {
  const seeds = (JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'xen', 'xl-disk-specs.json'), 'utf8')) as unknown[])
    .map((x) => (typeof x === 'string' ? x : (x as { spec?: string }).spec))
    .filter((x): x is string => typeof x === 'string');
  const tokens = [
    ',', '=', ':', 'phy:', 'file:', 'tap:aio:', 'tap:qcow2:', 'iscsi:', 'raw:', 'target=', 'format=', 'vdev=', 'access=', 'devtype=',
    'backendtype=', 'script=', 'backend=', 'cdrom', 'w', 'r', 'ro', 'rw', 'xvda', 'hdc', '/dev/vg0/x', 'discard', 'no-discard', 'specification=',
  ];
  it('returns a spec or a DiskSpecError (a FerryError) for mutated real specs and token soup', () => {
    fc.assert(fc.property(fc.oneof(mutated(seeds.length > 0 ? seeds : ['phy:/dev/x,xvda,w'], tokens), tokenSoup(tokens)), (spec) => returnsOrFerryError(() => parseDiskSpec(spec))), params);
  });
});

describe('libvirt domain XML', () => {
  const seeds = fixtureTexts('libvirt', /dumpxml.*\.stdout$/).filter((t) => t.includes('<domain'));
  const tokens = [
    '<', '>', '/>', '</', '<domain>', '</domain>', '<disk type="file" device="disk">', '</disk>', '<source file="/x"/>', '<target dev="vda"/>',
    '<memory unit="KiB">', '</memory>', '<vcpu current="x">', '<name>', '</name>', '<![CDATA[', ']]>', '<!--', '-->', '&amp;', '&#0;', '&#xFFFFFFFF;',
    '&bogus;', '"', "'", '=', '<?xml version="1.0"?>', '<!DOCTYPE domain>', 'unit="EiB"', '99999999999999999999',
  ];
  it('returns a description or a FerryError for mutated real dumpxml output', () => {
    fc.assert(fc.property(mutated(seeds, tokens), (text) => returnsOrFerryError(() => parseDomainXml(text, 'virsh dumpxml web01'))), params);
  });
  it('returns a description or a FerryError for token soup', () => {
    fc.assert(fc.property(tokenSoup(tokens), (text) => returnsOrFerryError(() => parseDomainXml(text, 'virsh dumpxml web01'))), params);
  });
});

describe('tar manifest', () => {
  const sha = 'ab'.repeat(32);
  const genuine = JSON.stringify({
    format: 'ferry-export', version: 1, guest: 'web01', time: '2026-11-27T01:00:00.000Z', hostname: 'dom0-a', tags: ['nightly'],
    restorePoint: 'cd'.repeat(32), exported: '2026-11-28T01:00:00.000Z', config: { file: 'web01.cfg', size: 20, sha256: sha },
    disks: [{ file: 'web01-disk0.img', name: 'web01-disk0.img', size: 1048576, dataBytes: 4096, sourcePath: '/dev/vg0/web01', sha256: sha }],
  });
  const tokens = ['{', '}', '[', ']', ',', ':', '"', 'null', 'true', '0', '-1', '1e400', '"../x"', '""', '"\\u0000"', '"2099-01-01T00:00:00Z"', '"disks"', '"config"', '"time"', '"tags"', '{"a":1}', '[null]'];
  // Structured manifests whose every field may be any JSON value: shapes a mutation of text rarely reaches.
  const shaped = fc
    .record({
      format: fc.oneof(fc.constant('ferry-export'), fc.jsonValue()),
      version: fc.oneof(fc.constant(1), fc.jsonValue()),
      guest: fc.oneof(fc.string(), fc.jsonValue()),
      time: fc.oneof(fc.constant('2026-11-27T01:00:00.000Z'), fc.string(), fc.jsonValue()),
      tags: fc.oneof(fc.array(fc.string()), fc.jsonValue()),
      config: fc.oneof(fc.constant(undefined), fc.record({ file: fc.oneof(fc.string(), fc.jsonValue()), size: fc.jsonValue(), sha256: fc.oneof(fc.constant(sha), fc.jsonValue()) }), fc.jsonValue()),
      disks: fc.oneof(
        fc.array(fc.record({
          file: fc.oneof(fc.string(), fc.jsonValue()), name: fc.oneof(fc.string(), fc.jsonValue()), size: fc.oneof(fc.nat(), fc.jsonValue()),
          sha256: fc.oneof(fc.constant(sha), fc.jsonValue()), sourcePath: fc.oneof(fc.string(), fc.jsonValue()),
        }, { requiredKeys: [] }), { maxLength: 3 }),
        fc.jsonValue(),
      ),
    }, { requiredKeys: [] })
    .map((m) => JSON.stringify(m));
  it('names a non-string format or version without calling its own toString (found by this fuzzer once)', () => {
    expect(parseManifest(Buffer.from('{"format":{"toString":{}}}')).problem).toBe(`format is '{"toString":{}}', not 'ferry-export'`);
    expect(parseManifest(Buffer.from('{"format":"ferry-export","version":{"toString":1}}')).problem).toMatch(/^version \{"toString":1\} is not supported/);
  });

  it('returns a manifest or a reason (never throws) for mutated, shaped and arbitrary JSON', () => {
    fc.assert(
      fc.property(fc.oneof(mutated([genuine], tokens), shaped, fc.jsonValue().map((v) => JSON.stringify(v) ?? '')), (text) => {
        // parseManifest reports problems as a value; import-tar turns them into InputError.
        returnsOrFerryError(() => {
          const { manifest, problem } = parseManifest(Buffer.from(text));
          if (!manifest && typeof problem !== 'string') throw new Error('neither a manifest nor a problem');
        });
      }),
      params,
    );
  });
});
