// A TCP proxy between the S3 client and the real server that breaks things on
// command, so failure handling is tested against real sockets and real SDK
// parsing, not mocks. It understands just enough HTTP/1.1 to tell requests
// apart on a keep-alive connection (request head + Content-Length body); the
// client does not pipeline, so every server byte after a request belongs to
// that request's response.
import * as net from 'node:net';

export type Fault =
  /** Answer this status with an S3 XML error body instead of forwarding, then close. */
  | { kind: 'status'; status: number; code: string }
  /** Forward, then reset the connection (RST) after `afterBytes` bytes of the response. */
  | { kind: 'drop'; afterBytes: number }
  /** Forward, then close the connection cleanly (FIN) after `afterBytes` bytes: a response cut short. */
  | { kind: 'truncate'; afterBytes: number }
  /** Hold the request for `ms` before forwarding it. */
  | { kind: 'stall'; ms: number };

export interface FaultRule {
  fault: Fault;
  /** Only requests with this method (GET, PUT, HEAD, …). */
  method?: string;
  /** Only requests whose path (with query) matches. */
  path?: RegExp;
  /** How many matching requests get the fault (default 1). */
  times?: number;
}

export interface SeenRequest {
  method: string;
  path: string;
  /** The fault applied, if any. */
  fault?: Fault['kind'];
}

export class FaultProxy {
  /** Every request that passed, in order: the tests count retries with it. */
  readonly requests: SeenRequest[] = [];
  private rules: Array<FaultRule & { left: number }> = [];
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private port = 0;

  private constructor(private readonly targetHost: string, private readonly targetPort: number) {
    this.server = net.createServer((client) => this.handle(client));
  }

  /** Start a proxy on 127.0.0.1 in front of `target` (`http://host:port`). */
  static async start(target: string): Promise<FaultProxy> {
    const url = new URL(target);
    const proxy = new FaultProxy(url.hostname, Number(url.port || 80));
    await new Promise<void>((resolve, reject) => {
      proxy.server.once('error', reject);
      proxy.server.listen(0, '127.0.0.1', () => resolve());
    });
    proxy.port = (proxy.server.address() as net.AddressInfo).port;
    return proxy;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Arm a fault for the next matching request(s). */
  inject(rule: FaultRule): void {
    this.rules.push({ ...rule, left: rule.times ?? 1 });
  }

  /** Forget armed faults and the request log. */
  reset(): void {
    this.rules = [];
    this.requests.length = 0;
  }

  /** Faults armed but not yet triggered. */
  get pending(): number {
    return this.rules.reduce((n, r) => n + r.left, 0);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private takeFault(method: string, path: string): Fault | undefined {
    const rule = this.rules.find(
      (r) => r.left > 0 && (!r.method || r.method === method) && (!r.path || r.path.test(path)),
    );
    if (!rule) return undefined;
    rule.left--;
    return rule.fault;
  }

  private handle(client: net.Socket): void {
    const upstream = net.connect(this.targetPort, this.targetHost);
    this.sockets.add(client);
    this.sockets.add(upstream);
    const done = (): void => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('error', done);
    upstream.on('error', done);
    client.on('close', done);
    upstream.on('close', done);

    let buf: Buffer = Buffer.alloc(0);
    let bodyLeft = 0;
    // Where the current request's bytes go.
    let sink: (chunk: Buffer) => void = (c) => upstream.write(c);
    let onBodyDone: (() => void) | undefined;
    // Response budget for drop/truncate faults on the request in flight.
    let responseCut: { left: number; how: 'drop' | 'truncate' } | undefined;

    upstream.on('data', (data: Buffer) => {
      if (!responseCut) {
        client.write(data);
        return;
      }
      const cut = responseCut;
      if (data.length < cut.left) {
        cut.left -= data.length;
        client.write(data);
        return;
      }
      client.write(data.subarray(0, cut.left), () => {
        if (cut.how === 'drop') client.resetAndDestroy();
        else client.end();
        upstream.destroy();
      });
      responseCut = undefined;
      upstream.pause();
    });

    const startRequest = (head: Buffer): void => {
      const text = head.toString('latin1');
      const [requestLine, ...headerLines] = text.split('\r\n');
      const [method = '', path = ''] = requestLine.split(' ');
      const headers = new Map<string, string>();
      for (const line of headerLines) {
        const i = line.indexOf(':');
        if (i > 0) headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
      }
      bodyLeft = Number(headers.get('content-length') ?? 0);
      const expectContinue = (headers.get('expect') ?? '').toLowerCase() === '100-continue';
      const fault = this.takeFault(method, path);
      this.requests.push({ method, path, fault: fault?.kind });
      onBodyDone = undefined;

      if (!fault) {
        sink = (c) => upstream.write(c);
        upstream.write(head);
        return;
      }
      switch (fault.kind) {
        case 'status': {
          const respond = (): void => {
            const body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${fault.code}</Code><Message>injected by FaultProxy</Message></Error>`;
            client.end(
              `HTTP/1.1 ${fault.status} Injected\r\nContent-Type: application/xml\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
                `Connection: close\r\n\r\n${method === 'HEAD' ? '' : body}`,
            );
            upstream.destroy();
          };
          sink = () => undefined; // swallow the body; the server never sees this request
          // A client waiting for "100 Continue" may get the final status at once (RFC 9110 §10.1.1).
          if (expectContinue || bodyLeft === 0) respond();
          else onBodyDone = respond;
          return;
        }
        case 'drop':
        case 'truncate':
          responseCut = { left: fault.afterBytes, how: fault.kind };
          sink = (c) => upstream.write(c);
          upstream.write(head);
          return;
        case 'stall': {
          const held: Buffer[] = [head];
          let released = false;
          sink = (c) => (released ? upstream.write(c) : held.push(c));
          setTimeout(() => {
            released = true;
            if (!upstream.destroyed) for (const c of held) upstream.write(c);
          }, fault.ms);
          return;
        }
      }
    };

    client.on('data', (data: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, data]) : data;
      while (buf.length > 0) {
        if (bodyLeft > 0) {
          const n = Math.min(bodyLeft, buf.length);
          sink(buf.subarray(0, n));
          buf = buf.subarray(n);
          bodyLeft -= n;
          if (bodyLeft === 0) onBodyDone?.();
          continue;
        }
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return; // wait for the rest of the head
        const head = buf.subarray(0, end + 4);
        buf = buf.subarray(end + 4);
        startRequest(head);
      }
    });
  }
}
