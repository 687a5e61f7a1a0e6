// A restored libvirt domain logs its serial console to a file site restore
// knows (so a `health = { serial = ... }` check can read it): the rewritten
// XML gives its first <serial> a <log file= append='off'/> — the console
// itself stays as the domain had it (a file, a pty for `virsh console`) — or,
// without a serial, gets a pty serial that logs; made from the spec, the
// serial is a file. Real `virsh dumpxml` output from tests/fixtures/libvirt.
import * as fs from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { imageGuestSpec } from '../../src/backup/guestSpec';
import { parseDomainXml } from '../../src/hypervisor/libvirt/domainXml';
import { rewriteDomainXml } from '../../src/site/domainXmlRewrite';
import { guestConfigFiles } from '../../src/site/guestConfigFiles';
import type { DiskTarget } from '../../src/site/guestRewrite';

const LIBVIRT = join(__dirname, '..', 'fixtures', 'libvirt');
const LOG = '/etc/ferry/site/libvirt/run/web01.serial';

function rewrite(xml: string): { text: string; notes: string[] } {
  const d = parseDomainXml(xml, 'recorded');
  const spec = imageGuestSpec(d.disks.filter((x) => !x.cdrom).map((x) => ({ name: `${x.device}.img`, path: x.path })), { fileName: `${d.name}.xml`, text: xml });
  const disks = new Map<string, DiskTarget>(spec.disks.map((x) => [x.name, { path: `/srv/pool/web01/${x.name}`, format: 'raw', storage: 'file' }]));
  return rewriteDomainXml(xml, 'web01.xml', spec, { disks, serialLog: LOG });
}

describe('the serial console of a restored libvirt domain is logged to a file', () => {
  it('a file serial (recorded web01) keeps its source and gets a <log> as its first child', () => {
    const xml = fs.readFileSync(join(LIBVIRT, 'dumpxml-web01.stdout'), 'utf8');
    const out = rewrite(xml);
    expect(out.text).toContain(`    <serial type='file'>\n      <log file='${LOG}' append='off'/>\n      <source path='/var/tmp/ferry-libvirt-fixtures/web01.console'/>`);
    expect(out.text.split('\n').length).toBe(xml.split('\n').length + 1);
  });

  it('a pty serial written as <serial type=\'pty\'/> gets the <log> inside it; a <log> already there is pointed at the file', () => {
    const xml = fs.readFileSync(join(LIBVIRT, 'dumpxml-web01.stdout'), 'utf8');
    const pty = xml.replace(/    <serial type='file'>[\s\S]*?<\/serial>\n/, "    <serial type='pty'/>\n");
    expect(rewrite(pty).text).toContain(`    <serial type='pty'><log file='${LOG}' append='off'/></serial>\n`);
    const logged = xml.replace(/    <serial type='file'>[\s\S]*?<\/serial>\n/, "    <serial type='pty'>\n      <log file='/var/log/old.log' append='on'/>\n    </serial>\n");
    expect(rewrite(logged).text).toContain(`    <serial type='pty'>\n      <log file='${LOG}' append='on'/>\n    </serial>\n`);
  });

  it('a domain without a serial gets a pty serial that logs, and the note says so', () => {
    const xml = fs.readFileSync(join(LIBVIRT, 'dumpxml-web01.stdout'), 'utf8')
      .replace(/    <serial type='file'>[\s\S]*?<\/serial>\n/, '').replace(/    <console type='file'>[\s\S]*?<\/console>\n/, '');
    const out = rewrite(xml);
    expect(out.text).toContain(`  <serial type='pty'><log file='${LOG}' append='off'/></serial>\n  </devices>`);
    expect(out.notes).toContain(`web01.xml: it has no serial console; a pty one was added whose output is logged to ${LOG}`);
    parseDomainXml(out.text, 'rewritten');
  });

  it('guestConfigFiles passes the log on: rewritten and generated domains both log there', () => {
    const xml = fs.readFileSync(join(LIBVIRT, 'dumpxml-web01.stdout'), 'utf8');
    const d = parseDomainXml(xml, 'recorded');
    const spec = imageGuestSpec(d.disks.filter((x) => !x.cdrom).map((x) => ({ name: `${x.device}.img`, path: x.path })), { fileName: 'web01.xml', text: xml });
    const disks = new Map<string, DiskTarget>(spec.disks.map((x) => [x.name, { path: `/srv/pool/web01/${x.name}`, format: 'raw', storage: 'file' }]));
    const rewritten = guestConfigFiles({ guest: 'web01', hypervisor: 'libvirt', spec, original: { fileName: 'web01.xml', content: Buffer.from(xml).toString('base64') }, dir: '/etc/ferry/site/libvirt', disks, serialLog: LOG });
    expect(rewritten.files[0]!.content.toString()).toContain(`<log file='${LOG}' append='off'/>`);
    const generated = guestConfigFiles({ guest: 'web01', hypervisor: 'libvirt', spec, dir: '/etc/ferry/site/libvirt', disks, serialLog: LOG });
    expect(generated.files[0]!.content.toString()).toContain(`<serial type='file'>\n      <source path='${LOG}'/>`);
  });
});
