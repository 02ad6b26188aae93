/**
 * The one Node internal the adapters read (scgi-core http/connect-method.ts `serverOf`): Node
 * offers no public way from a request to the server it came in on, and express-scgi needs the
 * server to answer CONNECT and to close with it. This fails when Node stops setting it, so the
 * change is seen here and not as CONNECT requests closed unanswered.
 */
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serverOf } from 'scgi-core/adapter';
import { describe, expect, it } from 'vitest';

describe('Node internals the adapters rely on', () => {
  it('an accepted request socket names its server (`socket.server`)', async () => {
    let seen: unknown = null;
    const server = createServer((req, res) => {
      try {
        seen = serverOf(req);
      } finally {
        res.end();
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve, reject) => {
      request({ port, host: '127.0.0.1', agent: false }, (res) => {
        res.resume();
        res.on('end', resolve);
      })
        .on('error', reject)
        .end();
    });
    await new Promise<void>((r) => server.close(() => r()));
    expect(seen).toBe(server);
  });
});
