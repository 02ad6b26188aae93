/**
 * `idleTimeout` tells a client that stops sending its body from a backend that stops reading
 * it. The first is the client's doing: 408 SCGI_ERR_REQUEST_TIMEOUT with `Connection: close`,
 * and nothing charged to the backend, or a few stalled clients would take every healthy backend
 * of a pool out (503 for everyone). The second stays a 504 SCGI_ERR_IDLE_TIMEOUT.
 */
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import { createScgiServer } from 'scgi-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Front, type FrontKind, startFront } from './helpers/fronts.js';
import { headerValue, type RawResponse, rawRequest } from './helpers/http.js';

const MiB = 1024 * 1024;
const backends: NetServer[] = [];
const upstreams: string[] = [];
const sockets = new Set<Socket>();

beforeAll(async () => {
  for (let i = 0; i < 2; i++) {
    // `/sink` reads the whole body, then answers; `/stuck` never reads it nor answers;
    // anything else answers at once.
    const server = createScgiServer((req, res) => {
      if (req.env.PATH_INFO === '/stuck') return;
      if (req.env.PATH_INFO === '/sink') {
        req.resume();
        req.on('end', () => res.end('sunk\n'));
        return;
      }
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end(`backend ${i}\n`);
    });
    // A `/stuck` connection never reads, so it would not see our side close: tracked, to be
    // destroyed at the end.
    server.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    backends.push(server);
    upstreams.push(`127.0.0.1:${(server.address() as AddressInfo).port}`);
  }
});
afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  for (const s of backends) {
    await new Promise<void>((r) => s.close(() => r()));
  }
});

describe.each(['fastify', 'express'] as FrontKind[])('%s, idleTimeout 300 ms', (kind) => {
  let front: Front;
  beforeAll(async () => {
    front = await startFront(kind, upstreams as unknown as string, '/app', {
      idleTimeout: 300,
      failTimeout: 10_000,
      ...(kind === 'fastify' ? {} : { respondOnError: true }),
    });
  });
  afterAll(() => front.close());

  /** A POST announcing `total` bytes that sends only `sent` of them. */
  const upload = (path: string, total: number, sent: number): Promise<RawResponse> =>
    rawRequest(
      front.url,
      Buffer.concat([
        Buffer.from(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: ${total}\r\n\r\n`),
        Buffer.alloc(sent, 1),
      ]),
    );
  const codeOf = (res: RawResponse) => JSON.parse(res.body.toString()).code as string;

  it('two clients that stall their uploads get 408, and both backends stay in the pool', async () => {
    const stalled = await Promise.all([
      upload('/app/sink', MiB, 100),
      upload('/app/sink', MiB, 100),
    ]);
    for (const res of stalled) {
      expect(res.statusCode).toBe(408);
      expect(codeOf(res)).toBe('SCGI_ERR_REQUEST_TIMEOUT');
      expect(headerValue(res, 'connection')).toBe('close');
    }
    // Both backends answer next: none was taken out (that would be 503 SCGI_ERR_NO_BACKEND
    // here, with both out for failTimeout).
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const res = await rawRequest(front.url, 'GET /app/ok HTTP/1.1\r\nHost: x\r\n\r\n');
      expect(res.statusCode).toBe(200);
      seen.add(res.body.toString());
    }
    expect([...seen].sort()).toEqual(['backend 0\n', 'backend 1\n']);
  });

  it('a backend that stops reading the upload is still a 504 SCGI_ERR_IDLE_TIMEOUT', async () => {
    const res = await upload('/app/stuck', 8 * MiB, 8 * MiB);
    expect(res.statusCode).toBe(504);
    expect(codeOf(res)).toBe('SCGI_ERR_IDLE_TIMEOUT');
  });
});
