// `s3:http://` reaches only this machine unless the user passes
// --insecure-http: the real RGW is reached through the host's own network
// address (a TCP relay on eth0's address), as a server on the LAN would be.
import * as net from 'node:net';
import * as os from 'node:os';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { EXIT, expectCleanFailure, expectSuccess, FAST_KDF, ferry, useScratch } from '../support';
import { useS3Server } from '../support/s3server';

const scratch = useScratch('s3-transport');
const s3 = useS3Server();
process.env.XDG_CACHE_HOME = scratch.path('cache');
const env = { FERRY_PASSWORD: 'transport' };

let relay: net.Server;
let lanEndpoint: string;

/** This host's first non-loopback IPv4 address: what another machine would use to reach it. */
function lanAddress(): string {
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  throw new Error('this machine has no non-loopback IPv4 address to test with');
}

beforeAll(async () => {
  const target = new URL(s3.server.endpoint);
  relay = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  const address = lanAddress();
  await new Promise<void>((resolve) => relay.listen(0, address, resolve));
  lanEndpoint = `http://${address}:${(relay.address() as net.AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => (relay ? relay.close(() => resolve()) : resolve())));

it('refuses s3:http:// to another host in one line naming --insecure-http, touching nothing; the flag allows it', async () => {
  const bucket = await s3.server.createBucket();
  const location = s3.server.location(bucket, 'ferry', lanEndpoint);
  const refused = await ferry(['init', '--repo', location, ...FAST_KDF], { env });
  expectCleanFailure(refused, { code: EXIT.usage, message: /plain http to another host .* pass --insecure-http to allow it/ });
  // Nothing was written: the same location can still be initialised.
  expectSuccess(await ferry(['--insecure-http', 'init', '--repo', location, ...FAST_KDF], { env }));
  expectSuccess(await ferry(['--insecure-http', 'list', '--repo', location], { env }));
  expectCleanFailure(await ferry(['list', '--repo', location], { env }), { code: EXIT.usage, message: /--insecure-http/ });
});

it('allows plain http to this machine by address or by name', async () => {
  const port = new URL(s3.server.endpoint).port;
  const byName = await s3.server.newLocation('ferry', `http://localhost:${port}`);
  expectSuccess(await ferry(['init', '--repo', byName, ...FAST_KDF], { env }));
  const byAddress = await s3.server.newLocation('ferry');
  expect(byAddress).toMatch(/^s3:http:\/\/127\./);
  expectSuccess(await ferry(['init', '--repo', byAddress, ...FAST_KDF], { env }));
});
