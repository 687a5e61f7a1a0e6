// A small, strict XML reader for what libvirt prints (domain, checkpoint and
// backup XML). libvirt writes well-formed XML through libxml2 with no DTD and
// no namespaces that matter to ferry, so a tree of elements, attributes and
// text is all we need; anything malformed is an error, never a guess, because
// a misread disk list means a disk that is silently not backed up.
import { HypervisorError } from '../../errors';

export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  /** Concatenated character data directly inside this element (entities decoded). */
  text: string;
}

export class XmlParseError extends HypervisorError {}

const NAME = /[A-Za-z_:][\w:.-]*/y;

/** Parses one XML document into its root element. `what` names the source in errors (e.g. `dumpxml web01`). */
export function parseXml(input: string, what: string): XmlElement {
  let pos = 0;
  const fail = (msg: string): never => {
    const line = input.slice(0, pos).split('\n').length;
    throw new XmlParseError(`${what}: malformed XML at line ${line}: ${msg}`);
  };

  const skipMisc = () => {
    // Whitespace, comments, processing instructions and a doctype between elements.
    for (;;) {
      while (pos < input.length && /\s/.test(input[pos]!)) pos++;
      if (input.startsWith('<!--', pos)) {
        const end = input.indexOf('-->', pos + 4);
        if (end < 0) fail('unterminated comment');
        pos = end + 3;
      } else if (input.startsWith('<?', pos)) {
        const end = input.indexOf('?>', pos + 2);
        if (end < 0) fail('unterminated processing instruction');
        pos = end + 2;
      } else if (input.startsWith('<!DOCTYPE', pos)) {
        const end = input.indexOf('>', pos);
        if (end < 0) fail('unterminated doctype');
        pos = end + 1;
      } else {
        return;
      }
    }
  };

  const readName = (): string => {
    NAME.lastIndex = pos;
    const m = NAME.exec(input);
    if (!m) fail(`expected a name, found ${JSON.stringify(input.slice(pos, pos + 10))}`);
    pos += m![0].length;
    return m![0];
  };

  const readElement = (): XmlElement => {
    if (input[pos] !== '<') fail('expected an element');
    pos++;
    const name = readName();
    const attrs: Record<string, string> = {};
    for (;;) {
      const before = pos;
      while (pos < input.length && /\s/.test(input[pos]!)) pos++;
      if (input.startsWith('/>', pos)) {
        pos += 2;
        return { name, attrs, children: [], text: '' };
      }
      if (input[pos] === '>') {
        pos++;
        break;
      }
      if (pos === before) fail(`expected whitespace or the end of <${name}>`);
      const attr = readName();
      while (/\s/.test(input[pos] ?? '')) pos++;
      if (input[pos] !== '=') fail(`attribute ${attr} of <${name}> has no value`);
      pos++;
      while (/\s/.test(input[pos] ?? '')) pos++;
      const quote = input[pos];
      if (quote !== '"' && quote !== "'") fail(`attribute ${attr} of <${name}> is not quoted`);
      const end = input.indexOf(quote!, pos + 1);
      if (end < 0) fail(`unterminated value of attribute ${attr}`);
      if (attr in attrs) fail(`attribute ${attr} repeated in <${name}>`);
      attrs[attr] = decodeEntities(input.slice(pos + 1, end), fail);
      pos = end + 1;
    }
    const children: XmlElement[] = [];
    let text = '';
    for (;;) {
      if (pos >= input.length) fail(`<${name}> is not closed`);
      if (input.startsWith('</', pos)) {
        pos += 2;
        const closing = readName();
        if (closing !== name) fail(`<${name}> closed by </${closing}>`);
        while (/\s/.test(input[pos] ?? '')) pos++;
        if (input[pos] !== '>') fail(`expected > after </${closing}`);
        pos++;
        return { name, attrs, children, text };
      }
      if (input.startsWith('<!--', pos) || input.startsWith('<?', pos)) {
        skipMisc();
        continue;
      }
      if (input.startsWith('<![CDATA[', pos)) {
        const end = input.indexOf(']]>', pos);
        if (end < 0) fail('unterminated CDATA section');
        text += input.slice(pos + 9, end);
        pos = end + 3;
        continue;
      }
      if (input[pos] === '<') {
        children.push(readElement());
        continue;
      }
      const next = input.indexOf('<', pos);
      const end = next < 0 ? input.length : next;
      text += decodeEntities(input.slice(pos, end), fail);
      pos = end;
    }
  };

  skipMisc();
  if (pos >= input.length) fail('no root element (empty output)');
  const root = readElement();
  skipMisc();
  if (pos < input.length) fail('content after the root element');
  return root;
}

function decodeEntities(raw: string, fail: (msg: string) => never): string {
  if (!raw.includes('&')) return raw;
  return raw.replace(/&([^;]*);|&/g, (whole, entity: string | undefined) => {
    switch (entity) {
      case 'lt': return '<';
      case 'gt': return '>';
      case 'amp': return '&';
      case 'quot': return '"';
      case 'apos': return "'";
      case undefined: return fail('bare & in text');
      default: {
        const m = /^#(?:x([0-9A-Fa-f]+)|([0-9]+))$/.exec(entity);
        if (!m) return fail(`unknown entity ${whole}`);
        const code = m[1] !== undefined ? parseInt(m[1], 16) : parseInt(m[2]!, 10);
        if (code > 0x10ffff) return fail(`character reference ${whole} out of range`);
        return String.fromCodePoint(code);
      }
    }
  });
}

/** The first child element called `name`, if any. */
export function child(el: XmlElement, name: string): XmlElement | undefined {
  return el.children.find((c) => c.name === name);
}

/** Every child element called `name`, in document order. */
export function childrenNamed(el: XmlElement, name: string): XmlElement[] {
  return el.children.filter((c) => c.name === name);
}

/** Follows a path of child names (first match at each step). */
export function descend(el: XmlElement, ...names: string[]): XmlElement | undefined {
  let cur: XmlElement | undefined = el;
  for (const n of names) {
    if (!cur) return undefined;
    cur = child(cur, n);
  }
  return cur;
}

/** Escapes text for an attribute value or element content that ferry writes. */
export function escapeXml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}
