/**
 * fastify-scgi gives a collected body's buffer back to scgi-core's pool once Node wrote it out,
 * but only when nothing else can hold it (packages/fastify-plugin/src/recycle.ts): no onSend
 * hook on the route and no `onResponse` option. Every body must arrive intact under concurrency
 * either way, and a payload an onSend hook kept must never be overwritten by a later response.
 * The first test also fails when Fastify's route context (the private internal recycle.ts reads)
 * changes: nothing would be recycled any more.
 */
import type { AddressInfo, Server as NetServer } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import fastifyScgi, { type FastifyScgiOptions } from 'fastify-scgi';
import { createScgiServer } from 'scgi-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pooledBodyBuffers } from '../packages/scgi-core/src/http/body-pool.js';

/** Body of request `n`: 40,000 bytes that differ from those of any other n. */
const bodyOf = (n: number) => {
  const b = Buffer.alloc(40_000);
  for (let i = 0; i < b.length; i++) b[i] = (i * 7 + n * 31) & 255;
  b.writeUInt32BE(n, 0);
  return b;
};

let backend: NetServer;
let upstream: string;

beforeAll(async () => {
  backend = createScgiServer((req, res) => {
    const n = Number(req.env.QUERY_STRING);
    const body = bodyOf(n);
    res.writeHead(200, {
      'Content-Type': 'application/octet-stream',
      'Content-Length': String(body.length),
    });
    res.end(body);
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  upstream = `127.0.0.1:${(backend.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => backend.close(() => r())));

async function start(
  options: Partial<FastifyScgiOptions> = {},
  setup?: (app: FastifyInstance) => void,
): Promise<{ url: string; close(): Promise<void> }> {
  const app = Fastify();
  setup?.(app);
  await app.register(fastifyScgi, { upstream, prefix: '/app', ...options });
  await app.listen({ port: 0, host: '127.0.0.1' });
  return {
    url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`,
    close: () => app.close(),
  };
}

/** Requests n = from..from+count-1, `count` at a time, and checks every body. */
async function fetchAll(url: string, from: number, count: number): Promise<void> {
  const bodies = await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const res = await fetch(`${url}/app/x?${from + i}`);
      expect(res.status).toBe(200);
      return Buffer.from(await res.arrayBuffer());
    }),
  );
  bodies.forEach((b, i) => {
    expect(b.equals(bodyOf(from + i)), `body ${from + i}`).toBe(true);
  });
}

describe('fastify-scgi body buffer recycling', () => {
  it('a route without onSend hooks gives its buffers back, and every body arrives intact', async () => {
    const front = await start();
    try {
      // The first test of its process (vitest runs each file in a fork of its own).
      expect(pooledBodyBuffers()).toBe(0);
      await fetchAll(front.url, 0, 16);
      // Each buffer was made for the pool and came back after 'finish' (as many as overlapped).
      await expect.poll(pooledBodyBuffers).toBeGreaterThan(0);
      // Buffers taken from the pool again: still every body intact.
      for (let round = 1; round <= 4; round++) await fetchAll(front.url, round * 100, 24);
    } finally {
      await front.close();
    }
  });

  it('a payload an onSend hook keeps is not recycled, so no later response overwrites it', async () => {
    const kept: Array<{ n: number; payload: Buffer }> = [];
    const front = await start({}, (app) => {
      app.addHook('onSend', async (request, _reply, payload) => {
        if (Buffer.isBuffer(payload)) kept.push({ n: Number(request.url.split('?')[1]), payload });
        return payload;
      });
    });
    try {
      const before = pooledBodyBuffers();
      await fetchAll(front.url, 1000, 16);
      expect(kept).toHaveLength(16);
      for (let round = 1; round <= 4; round++) await fetchAll(front.url, 1000 + round * 100, 24);
      expect(pooledBodyBuffers()).toBe(before);
      for (const { n, payload } of kept.slice(0, 16)) {
        expect(payload.equals(bodyOf(n)), `kept payload ${n}`).toBe(true);
      }
    } finally {
      await front.close();
    }
  });

  it('the onResponse option (user code gets the response) turns recycling off', async () => {
    const seen: Buffer[] = [];
    const front = await start({
      onResponse: (_request, _reply, response) => {
        if (response.bodyBuffer !== null) seen.push(response.bodyBuffer);
      },
    });
    try {
      const before = pooledBodyBuffers();
      await fetchAll(front.url, 2000, 16);
      await fetchAll(front.url, 2100, 16);
      expect(seen).toHaveLength(32);
      expect(pooledBodyBuffers()).toBe(before);
      seen.slice(0, 16).forEach((b, i) => {
        expect(b.equals(bodyOf(2000 + i)), `seen body ${2000 + i}`).toBe(true);
      });
    } finally {
      await front.close();
    }
  });
});
