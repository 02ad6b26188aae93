/**
 * `requestIdHeader`: the backend gets an id for every request, as HTTP_<HEADER>. fastify-scgi
 * sends Fastify's `request.id` (in place of a client's header: Fastify's own `requestIdHeader`
 * decides whether to trust one); without an adapter id the client's header passes, or a UUID
 * is made. Off by default: the environment is then exactly what the client sent.
 */
import type { AddressInfo, Server as NetServer } from 'node:net';
import express from 'express';
import { scgiProxy } from 'express-scgi';
import Fastify, { type FastifyInstance } from 'fastify';
import fastifyScgi from 'fastify-scgi';
import { createScgiServer } from 'scgi-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFront } from './helpers/fronts.js';
import { rawRequest } from './helpers/http.js';

let backend: NetServer;
let upstream: string;

beforeAll(async () => {
  // Echoes the request id variables it received.
  backend = createScgiServer((req) => {
    const body = JSON.stringify({
      id: req.env.HTTP_X_REQUEST_ID ?? null,
      corr: req.env.HTTP_X_CORRELATION_ID ?? null,
    });
    req.socket.end(`Status: 200 OK\r\nContent-Type: application/json\r\n\r\n${body}`);
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  upstream = `127.0.0.1:${(backend.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => backend.close(() => r())));

const ids = async (url: string, header = '') => {
  const res = await rawRequest(
    url,
    `GET /app/x HTTP/1.1\r\nHost: x\r\n${header}Connection: close\r\n\r\n`,
  );
  expect(res.statusCode).toBe(200);
  return JSON.parse(res.body.toString()) as { id: string | null; corr: string | null };
};
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('fastify-scgi', () => {
  let app: FastifyInstance;
  let url: string;
  let n = 0;
  beforeAll(async () => {
    app = Fastify({ logger: false, genReqId: () => `fastify-${++n}` });
    await app.register(fastifyScgi, { upstream, prefix: '/app', requestIdHeader: 'X-Request-Id' });
    await app.listen({ port: 0, host: '127.0.0.1' });
    url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  });
  afterAll(() => app.close());

  it("sends request.id, in place of the client's header", async () => {
    const first = await ids(url);
    expect(first.id).toMatch(/^fastify-\d+$/);
    const second = await ids(url, 'X-Request-Id: from-the-client\r\n');
    expect(second.id).toMatch(/^fastify-\d+$/);
    expect(second.id).not.toBe(first.id);
  });
});

describe('express-scgi', () => {
  let server: ReturnType<ReturnType<typeof express>['listen']>;
  let url: string;
  beforeAll(async () => {
    const app = express();
    app.use('/app', scgiProxy({ upstream, requestIdHeader: 'x-correlation-id' }));
    server = await new Promise((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it("forwards the client's id, or makes a UUID", async () => {
    expect((await ids(url, 'X-Correlation-Id: abc-123\r\n')).corr).toBe('abc-123');
    const made = await ids(url);
    expect(made.corr).toMatch(UUID);
    expect((await ids(url)).corr).not.toBe(made.corr);
  });
});

describe('off by default', () => {
  it.each(['fastify', 'express'] as const)('%s: nothing is added', async (kind) => {
    const front = await startFront(kind, upstream, '/app');
    try {
      expect(await ids(front.url)).toEqual({ id: null, corr: null });
      expect((await ids(front.url, 'X-Request-Id: mine\r\n')).id).toBe('mine');
    } finally {
      await front.close();
    }
  });
});

describe('an adapter id the SCGI head cannot carry', () => {
  it('fails with SCGI_ERR_HEAD_NUL before any backend is asked, as any other NUL in the head', async () => {
    let asked = 0;
    const counting = createScgiServer((req) => {
      asked++;
      req.socket.end('Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nok');
    });
    await new Promise<void>((r) => counting.listen(0, '127.0.0.1', r));
    const port = (counting.address() as AddressInfo).port;
    const app = Fastify({ logger: false, genReqId: () => 'id\0with-nul' });
    await app.register(fastifyScgi, {
      upstream: `127.0.0.1:${port}`,
      prefix: '/app',
      requestIdHeader: 'X-Request-Id',
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const res = await rawRequest(
        `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`,
        'GET /app/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      );
      expect(res.statusCode).toBe(400);
      expect(JSON.parse(res.body.toString()).code).toBe('SCGI_ERR_HEAD_NUL');
      expect(asked).toBe(0);
    } finally {
      await app.close();
      await new Promise<void>((r) => counting.close(() => r()));
    }
  });
});
