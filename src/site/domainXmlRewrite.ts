// A libvirt domain XML rewritten for its new host (issue 7 §3): each disk's
// <source> points at the restored storage, with the disk's type ('file' or
// 'block') and <driver type=> (raw, qcow2) to match; bridge interfaces are
// mapped; MACs kept or made anew; the rest of the document is left byte for
// byte. The edit is textual — only the attributes and elements that change
// are touched, located by a scan of the tags with their offsets — because
// re-serialising the whole tree would reorder and re-quote what libvirt
// wrote. The document is read with hypervisor/libvirt's parser before (it
// judges the XML) and after (to prove it says what was meant).
import { FerryError, InputError } from '../errors';
import { escapeXml } from '../hypervisor/libvirt/libvirtXml';
import { parseDomainXml } from '../hypervisor/libvirt/domainXml';
import type { GuestSpec } from '../repo/restorePoint';
import { type DiskTarget, type GuestRewriteOptions, type RewrittenConfig, diskTarget, macFor, mapBridge, mapNetwork, specDiskFor } from './guestRewrite';

const QEMU_OUI = '52:54:00';

export interface DomainXmlRewriteOptions extends GuestRewriteOptions {
  /** `drop` removes <uuid>, so libvirt makes a new one (a copy beside the original); default keep. */
  uuid?: 'keep' | 'drop';
  /**
   * A file the first serial console is also logged to (`<log file= append='off'/>`,
   * libvirt's virtlogd writes it; the console itself stays as it was), so site
   * restore's serial health check can read it; a domain without a serial gets a pty one that logs.
   */
  serialLog?: string;
}

/** `text` (`virsh dumpxml` output; `what` names it in messages) rewritten for the new host. */
export function rewriteDomainXml(text: string, what: string, spec: GuestSpec, options: DomainXmlRewriteOptions): RewrittenConfig {
  const described = parseDomainXml(text, what);
  const root = scanElements(text, what);
  const edits: Edit[] = [];
  const notes: string[] = [];
  const devices = only(root, 'devices');
  const attached = new Set<string>();

  for (const disk of devices ? named(devices, 'disk') : []) {
    const dev = only(disk, 'target')?.attrs.get('dev')?.value ?? '';
    const source = only(disk, 'source');
    const found = described.disks.find((d) => d.device === dev);
    if (!found) continue; // a removable drive without medium: nothing to point anywhere
    const at = `${what}: disk ${dev}`;
    const specDisk = specDiskFor(spec, dev, found.path);
    if (!specDisk) {
      if (found.cdrom || found.deviceKind === 'floppy') {
        edits.push(removeElement(text, source!));
        notes.push(`${at}: ${found.deviceKind} held ${found.path}, which was not backed up: the drive is left empty`);
        continue;
      }
      throw new InputError(`${at} (${found.path}) is in the domain XML but in no disk of the restore point; restore from a restore point that holds it, or remove it from the XML`);
    }
    if (!['file', 'block', 'volume'].includes(found.sourceType)) {
      throw new InputError(`${at} is a '${found.sourceType}' disk (${found.path}), which ferry cannot point at local storage; change it to a file or block disk before the restore`);
    }
    attached.add(specDisk.name);
    edits.push(...diskEdits(text, disk, source!, diskTarget(options, specDisk, at)));
  }
  for (const d of spec.disks) {
    if (!attached.has(d.name)) notes.push(`${what}: disk ${d.name} (${d.origin}) is restored, but the XML attaches no disk ${d.device ?? 'at that path'}`);
  }

  const taken = new Set<string>();
  const guest = options.name ?? described.name;
  (devices ? named(devices, 'interface') : []).forEach((nic, index) => edits.push(...interfaceEdits(text, nic, index, guest, options, taken)));

  if (options.serialLog !== undefined && devices) edits.push(serialLogEdit(text, devices, options.serialLog, what, notes));
  if (options.name !== undefined) edits.push(replaceText(only(root, 'name')!, escapeXml(options.name)));
  if (options.uuid === 'drop') {
    const uuid = only(root, 'uuid');
    if (uuid) edits.push(removeElement(text, uuid));
  }
  const rewritten = applyEdits(text, edits);
  parseDomainXml(rewritten, `${what} (rewritten)`);
  return { text: rewritten, notes };
}

/** A domain XML for a guest backed up without one: its machine and disks, booting from the first disk. */
export function generateDomainXml(
  name: string,
  spec: GuestSpec,
  options: GuestRewriteOptions & {
    /** `kvm` where /dev/kvm works on the host, `qemu` (TCG) otherwise; default kvm. */
    domainType?: 'kvm' | 'qemu';
    /** A file the serial console is written to (site restore health checks read it); a pty otherwise. */
    serialLog?: string;
  },
): RewrittenConfig {
  const notes: string[] = [];
  if (spec.memoryMiB === undefined) notes.push(`${name}: the restore point records no memory size: 512 MiB assumed`);
  if (spec.vcpus === undefined) notes.push(`${name}: the restore point records no vCPU count: 1 assumed`);
  const memory = spec.memoryMiB ?? 512;
  const taken = new Set<string>();
  const used = new Set<string>();
  const disks = spec.disks.map((d, i) => {
    const target = diskTarget(options, d, name);
    const { dev, bus } = libvirtDevice(d.device, i, used);
    return [
      `    <disk type='${target.storage}' device='disk'>`,
      `      <driver name='qemu' type='${target.format}'/>`,
      `      <source ${target.storage === 'block' ? 'dev' : 'file'}='${escapeXml(target.path)}'/>`,
      `      <target dev='${dev}' bus='${bus}'/>`,
      ...(d.readOnly ? ['      <readonly/>'] : []),
      '    </disk>',
    ];
  });
  const nics = spec.nics.map((n, i) => {
    const mac = macFor(options, QEMU_OUI, name, i, n.mac, taken);
    const network = n.network !== undefined ? networkOrBridge(options, n.network) : undefined;
    const source = network ?? (n.bridge !== undefined ? { kind: 'bridge', name: mapBridge(options, n.bridge) } : undefined);
    return [
      `    <interface type='${source ? (source.kind === 'bridge' ? 'bridge' : 'network') : 'user'}'>`,
      ...(mac ? [`      <mac address='${escapeXml(mac)}'/>`] : []),
      ...(source ? [`      <source ${source.kind}='${escapeXml(source.name)}'/>`] : []),
      `      <model type='${escapeXml(n.model ?? 'virtio')}'/>`,
      '    </interface>',
    ];
  });
  const text = [
    `<domain type='${options.domainType ?? 'kvm'}'>`,
    `  <name>${escapeXml(options.name ?? name)}</name>`,
    `  <memory unit='MiB'>${Math.max(spec.maxMemoryMiB ?? memory, memory)}</memory>`,
    `  <currentMemory unit='MiB'>${memory}</currentMemory>`,
    `  <vcpu placement='static'>${spec.vcpus ?? 1}</vcpu>`,
    '  <os>',
    "    <type arch='x86_64'>hvm</type>",
    "    <boot dev='hd'/>",
    '  </os>',
    '  <features>',
    '    <acpi/>',
    '    <apic/>',
    '  </features>',
    '  <on_poweroff>destroy</on_poweroff>',
    '  <on_reboot>restart</on_reboot>',
    '  <on_crash>destroy</on_crash>',
    '  <devices>',
    ...disks.flat(),
    ...nics.flat(),
    ...(options.serialLog === undefined
      ? ["    <serial type='pty'/>", "    <console type='pty'/>"]
      : [`    <serial type='file'>`, `      <source path='${escapeXml(options.serialLog)}'/>`, '    </serial>', `    <console type='file'>`, `      <source path='${escapeXml(options.serialLog)}'/>`, "      <target type='serial'/>", '    </console>']),
    '  </devices>',
    '</domain>',
    '',
  ].join('\n');
  parseDomainXml(text, `${name} (generated)`);
  return { text, notes };
}

/** The guest device on a libvirt host: vd*, hd*, sd* kept with their bus; Xen's xvd* and unknown names become the next free vd*. */
function libvirtDevice(device: string | undefined, index: number, used: Set<string>): { dev: string; bus: string } {
  const bus = device && /^vd[a-z]+$/.test(device) ? 'virtio' : device && /^hd[a-z]$/.test(device) ? 'ide' : device && /^sd[a-z]+$/.test(device) ? 'scsi' : undefined;
  if (device && bus && !used.has(device)) {
    used.add(device);
    return { dev: device, bus };
  }
  for (let i = index; ; i++) {
    const dev = `vd${String.fromCharCode(97 + (i % 26))}${i >= 26 ? String(Math.floor(i / 26)) : ''}`;
    if (!used.has(dev)) {
      used.add(dev);
      return { dev, bus: 'virtio' };
    }
  }
}

/** A libvirt network's place on the new host: the map's `network:NAME` value, a bridge or another network (`network:OTHER`). */
function networkOrBridge(options: GuestRewriteOptions, network: string): { kind: 'network' | 'bridge'; name: string } {
  const mapped = mapNetwork(options, network);
  if (mapped === network) return { kind: 'network', name: network };
  return mapped.startsWith('network:') ? { kind: 'network', name: mapped.slice('network:'.length) } : { kind: 'bridge', name: mapped };
}

function diskEdits(text: string, disk: Element, source: Element, target: DiskTarget): Edit[] {
  const edits: Edit[] = [setAttribute(disk, 'type', target.storage)];
  const pathAttr = target.storage === 'block' ? 'dev' : 'file';
  // The attributes that name the old storage (and the live XML's index) give way to the new path's.
  const stale = [...source.attrs.values()].filter((a) => ['file', 'dev', 'pool', 'volume', 'mode', 'index'].includes(a.name));
  const pathText = `${pathAttr}='${escapeXml(target.path)}'`;
  if (stale.length === 0) edits.push({ start: source.openTagEnd, end: source.openTagEnd, text: ` ${pathText}` });
  else edits.push({ start: stale[0]!.start, end: stale[0]!.end, text: pathText }, ...stale.slice(1).map((a) => removeAttribute(text, a)));
  const driver = only(disk, 'driver');
  if (driver) edits.push(setAttribute(driver, 'type', target.format));
  else edits.push(insertBefore(text, disk.children[0]!, `<driver name='qemu' type='${target.format}'/>`));
  // The restored disk is the guest's whole view, flattened: an old backing chain no longer applies.
  for (const backing of named(disk, 'backingStore').filter((b) => b.children.length > 0)) edits.push(removeElement(text, backing));
  return edits;
}

function interfaceEdits(text: string, nic: Element, index: number, guest: string, options: GuestRewriteOptions, taken: Set<string>): Edit[] {
  const edits: Edit[] = [];
  const type = nic.attrs.get('type')?.value;
  const source = only(nic, 'source');
  if (type === 'bridge' && source?.attrs.has('bridge')) {
    const bridge = source.attrs.get('bridge')!.value;
    const mapped = mapBridge(options, bridge);
    if (mapped !== bridge) edits.push(setAttribute(source, 'bridge', mapped));
  } else if (type === 'network' && source?.attrs.has('network')) {
    const network = source.attrs.get('network')!.value;
    const place = networkOrBridge(options, network);
    if (place.kind === 'bridge') {
      edits.push(setAttribute(nic, 'type', 'bridge'));
      const attr = source.attrs.get('network')!;
      edits.push({ start: attr.start, end: attr.end, text: `bridge='${escapeXml(place.name)}'` });
      // A network's port group or port means nothing on a bridge.
      for (const a of ['portgroup', 'portid']) if (source.attrs.has(a)) edits.push(removeAttribute(text, source.attrs.get(a)!));
    } else if (place.name !== network) {
      edits.push(setAttribute(source, 'network', place.name));
    }
  }
  const macElement = only(nic, 'mac');
  const old = macElement?.attrs.get('address')?.value;
  const mac = macFor(options, QEMU_OUI, guest, index, old?.toLowerCase(), taken);
  if (mac !== undefined && mac !== old?.toLowerCase()) {
    edits.push(macElement ? setAttribute(macElement, 'address', mac) : insertBefore(text, nic.children[0]!, `<mac address='${mac}'/>`));
  }
  return edits;
}

/** The first <serial> logs to `file` as well (its own <log> pointed there, or one added); no serial: a logging pty serial is added. */
function serialLogEdit(text: string, devices: Element, file: string, what: string, notes: string[]): Edit {
  const log = `<log file='${escapeXml(file)}' append='off'/>`;
  const serial = only(devices, 'serial');
  if (!serial) {
    notes.push(`${what}: it has no serial console; a pty one was added whose output is logged to ${file}`);
    return { start: devices.contentEnd, end: devices.contentEnd, text: `  <serial type='pty'>${log}</serial>\n  ` };
  }
  const existing = only(serial, 'log');
  if (existing) return setAttribute(existing, 'file', file);
  if (serial.contentStart === serial.end) return { start: serial.openTagEnd, end: serial.end, text: `>${log}</serial>` };
  return serial.children[0] ? insertBefore(text, serial.children[0], log) : { start: serial.contentStart, end: serial.contentStart, text: log };
}

// ---- tags with their offsets ----

interface Attribute {
  name: string;
  value: string;
  /** From the name to the closing quote. */
  start: number;
  end: number;
  valueStart: number;
  valueEnd: number;
}

interface Element {
  name: string;
  attrs: Map<string, Attribute>;
  children: Element[];
  /** The start tag's `<` … the end tag's `>` (or the `/>`). */
  start: number;
  end: number;
  /** Just before the start tag's `>` or `/>`. */
  openTagEnd: number;
  /** Content between the tags (empty for `<x/>`). */
  contentStart: number;
  contentEnd: number;
}

/** The elements of a document libvirt's parser has read already, with offsets. */
function scanElements(text: string, what: string): Element {
  const stack: Element[] = [];
  let root: Element | undefined;
  let pos = 0;
  const skip = (open: string, close: string): boolean => {
    if (!text.startsWith(open, pos)) return false;
    pos = text.indexOf(close, pos + open.length) + close.length;
    return true;
  };
  while ((pos = text.indexOf('<', pos)) >= 0) {
    if (skip('<!--', '-->') || skip('<?', '?>') || skip('<![CDATA[', ']]>') || skip('<!', '>')) continue;
    if (text[pos + 1] === '/') {
      const close = text.indexOf('>', pos);
      const el = stack.pop()!;
      el.contentEnd = pos;
      el.end = close + 1;
      pos = close + 1;
      continue;
    }
    const name = /^<([A-Za-z_:][\w:.-]*)/.exec(text.slice(pos, pos + 200))![1]!;
    const el: Element = { name, attrs: new Map(), children: [], start: pos, end: 0, openTagEnd: 0, contentStart: 0, contentEnd: 0 };
    let at = pos + 1 + name.length;
    const attr = /\s+([A-Za-z_:][\w:.-]*)\s*=\s*(?:"([^"]*)"|'([^']*)')/y;
    for (;;) {
      attr.lastIndex = at;
      const m = attr.exec(text);
      if (!m) break;
      const valueEnd = attr.lastIndex - 1;
      const raw = m[2] ?? m[3]!;
      el.attrs.set(m[1]!, { name: m[1]!, value: decode(raw), start: m.index + m[0].indexOf(m[1]!), end: attr.lastIndex, valueStart: valueEnd - raw.length, valueEnd });
      at = attr.lastIndex;
    }
    const tail = /^\s*(\/?)>/.exec(text.slice(at, at + 200));
    if (!tail) throw new FerryError(`${what}: ferry's tag scan lost its way at offset ${at} (a bug in ferry; the XML parser accepted the document)`);
    el.openTagEnd = at;
    (stack[stack.length - 1]?.children ?? []).push(el);
    root ??= el;
    pos = at + tail[0].length;
    el.contentStart = pos;
    if (tail[1] === '/') {
      el.end = pos;
      el.contentEnd = pos;
    } else {
      stack.push(el);
    }
  }
  return root!;
}

function decode(raw: string): string {
  return raw.replace(/&(lt|gt|amp|quot|apos|#x[0-9A-Fa-f]+|#[0-9]+);/g, (_, e: string) =>
    ({ lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" } as Record<string, string>)[e] ?? String.fromCodePoint(e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10)));
}

const only = (el: Element, name: string) => el.children.find((c) => c.name === name);
const named = (el: Element, name: string) => el.children.filter((c) => c.name === name);

interface Edit { start: number; end: number; text: string }

function applyEdits(text: string, edits: Edit[]): string {
  let out = text;
  for (const e of [...edits].sort((a, b) => b.start - a.start)) out = out.slice(0, e.start) + e.text + out.slice(e.end);
  return out;
}

function setAttribute(el: Element, name: string, value: string): Edit {
  const a = el.attrs.get(name);
  return a ? { start: a.valueStart, end: a.valueEnd, text: escapeXml(value) } : { start: el.openTagEnd, end: el.openTagEnd, text: ` ${name}='${escapeXml(value)}'` };
}

function removeAttribute(text: string, a: Attribute): Edit {
  let start = a.start;
  while (start > 0 && /[ \t]/.test(text[start - 1]!)) start--;
  return { start, end: a.end, text: '' };
}

function replaceText(el: Element, text: string): Edit {
  return { start: el.contentStart, end: el.contentEnd, text };
}

/** Removes an element, and its line when it stands alone on it. */
function removeElement(text: string, el: Element): Edit {
  const lineStart = text.lastIndexOf('\n', el.start - 1) + 1;
  const nl = text.indexOf('\n', el.end);
  if (text.slice(lineStart, el.start).trim() === '' && text.slice(el.end, nl < 0 ? text.length : nl).trim() === '') {
    return { start: lineStart, end: nl < 0 ? text.length : nl + 1, text: '' };
  }
  return { start: el.start, end: el.end, text: '' };
}

/** Inserts `markup` before `sibling`, on a line of its own with the sibling's indentation. */
function insertBefore(text: string, sibling: Element, markup: string): Edit {
  const lineStart = text.lastIndexOf('\n', sibling.start - 1) + 1;
  const indent = text.slice(lineStart, sibling.start);
  return /^[ \t]*$/.test(indent) ? { start: sibling.start, end: sibling.start, text: `${markup}\n${indent}` } : { start: sibling.start, end: sibling.start, text: markup };
}
