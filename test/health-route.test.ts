/**
 * `proxy.health()` and the adapters' ready-made health routes (fastify-scgi `scgiHealthRoute`,
 * express-scgi `mw.health`): 200 while a backend can take a request, 503 once every backend is
 * marked down (here by real connect failures) or the proxy is closing; no backend address in
 * the body.
 */
import type { AddressInfo, Server as NetServer } from 'node:net';
import express from 'express';
import { type ScgiMiddleware, scgiProxy } from 'express-scgi';
import Fastify, { type FastifyInstance } from 'fastify';
import fastifyScgi, { scgiHealthRoute } from 'fastify-scgi';
import { createScgiServer } from 'scgi-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawRequest } from './helpers/http.js';

async function listening(): Promise<{ server: NetServer; address: string }> {
  const server = createScgiServer((req) => {
    req.socket.end('Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nok');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, address: `127.0.0.1:${(server.address() as AddressInfo).port}` };
}
const closeServer = (s: NetServer) => new Promise<void>((r) => s.close(() => r()));

const get = (url: string, path: string, method = 'GET') =>
  rawRequest(url, `${method} ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);

interface Kind {
  name: string;
  start(
    upstream: string[],
  ): Promise<{ url: string; close(): Promise<void>; closeProxy(): Promise<void> }>;
}

const kinds: Kind[] = [
  {
    name: 'fastify',
    async start(upstream) {
      const app: FastifyInstance = Fastify({ logger: false });
      await app.register(fastifyScgi, { upstream, prefix: '/app', failTimeout: 60_000 });
      app.route(scgiHealthRoute('/healthz'));
      await app.listen({ port: 0, host: '127.0.0.1' });
      return {
        url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`,
        close: () => app.close(),
        closeProxy: () => app.scgiProxy.close(0),
      };
    },
  },
  {
    name: 'express',
    async start(upstream) {
      const app = express();
      const mw: ScgiMiddleware = scgiProxy({ upstream, failTimeout: 60_000 });
      app.get('/healthz', mw.health);
      app.use('/app', mw);
      const server = await new Promise<ReturnType<typeof app.listen>>((resolve) => {
        const s = app.listen(0, '127.0.0.1', () => resolve(s));
      });
      return {
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        close: () => new Promise<void>((r) => server.close(() => r())),
        closeProxy: () => mw.close(0),
      };
    },
  },
];

describe.each(kinds)('$name', (kind) => {
  let a: { server: NetServer; address: string };
  let b: { server: NetServer; address: string };
  let front: Awaited<ReturnType<Kind['start']>>;
  beforeAll(async () => {
    a = await listening();
    b = await listening();
    front = await kind.start([a.address, b.address]);
  });
  afterAll(async () => {
    await front.close();
    await closeServer(b.server);
  });

  it('200 while a backend is up, 503 once none is, 503 when closing', async () => {
    let res = await get(front.url, '/healthz');
    expect(res.statusCode).toBe(200);
    expect(res.headers.find(([n]) => n.toLowerCase() === 'cache-control')?.[1]).toBe('no-store');
    expect(JSON.parse(res.body.toString())).toEqual({ status: 'up', up: 2, total: 2 });
    expect(res.body.toString()).not.toContain('127.0.0.1');

    // Backend A goes away: a request fails over to B and A is marked down.
    await closeServer(a.server);
    for (let i = 0; i < 2; i++) expect((await get(front.url, '/app/x')).statusCode).toBe(200);
    res = await get(front.url, '/healthz');
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(res.body.toString())).toEqual({ status: 'up', up: 1, total: 2 });

    // B goes away too: every backend is down.
    b.server.close();
    b.server.unref();
    await new Promise((r) => b.server.once('close', r));
    expect((await get(front.url, '/app/x')).statusCode).toBe(502);
    res = await get(front.url, '/healthz');
    expect(res.statusCode).toBe(503);
    expect(JSON.parse(res.body.toString())).toEqual({ status: 'down', up: 0, total: 2 });
    const head = await get(front.url, '/healthz', 'HEAD');
    expect(head.statusCode).toBe(503);
    expect(head.body.length).toBe(0);
  });

  it('503 when the proxy is closing', async () => {
    const c = await listening();
    const other = await kind.start([c.address]);
    try {
      expect((await get(other.url, '/healthz')).statusCode).toBe(200);
      await other.closeProxy();
      const res = await get(other.url, '/healthz');
      expect(res.statusCode).toBe(503);
      expect(JSON.parse(res.body.toString()).status).toBe('down');
    } finally {
      await other.close();
      await closeServer(c.server);
    }
  });
});
