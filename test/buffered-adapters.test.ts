/**
 * Response buffering through the adapters: a body collected whole (`bodyBuffer`, sent in one
 * write) must reach the client with exactly the bytes and header fields it has when it streams
 * (`maxBufferedBody: 0`), through Fastify, Express 5 and Express 4. Then the client-abort paths
 * of the adapters: a request waiting in a saturated pool queue, and a large streamed download.
 */
import type { Server } from 'node:http';
import {
  type AddressInfo,
  connect,
  createServer,
  type Server as NetServer,
  type Socket,
} from 'node:net';
import express from 'express';
import { type ExpressScgiOptions, scgiProxy } from 'express-scgi';
import express4 from 'express4';
import Fastify from 'fastify';
import fastifyScgi, { type FastifyScgiOptions } from 'fastify-scgi';
import { type PoolStats, ScgiHeadDecoder, type ScgiResponse } from 'scgi-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fields, send } from './helpers/corpus.js';
import type { FrontKind } from './helpers/fronts.js';
import { eventually } from './helpers/pool.js';

const bytes = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 13) & 255));
const BODY = bytes(40_000);

/**
 * What the backend answers per PATH_INFO: the parts it writes (a few ms apart, so a body arrives
 * in several reads), then it closes.
 */
const ANSWERS: Record<string, Array<string | Buffer>> = {
  '/typed': [
    `Status: 201 Made It\r\nContent-Type: application/x-thing\r\nContent-Length: ${BODY.length}\r\nX-Extra: 1\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n`,
    BODY.subarray(0, 7),
    BODY.subarray(7, 20_000),
    BODY.subarray(20_000),
  ],
  // No Content-Type: none may reach the client (Fastify would label a Buffer octet-stream).
  '/untyped': [
    `Status: 200 OK\r\nContent-Length: ${BODY.length}\r\n\r\n`,
    BODY.subarray(0, 100),
    BODY.subarray(100),
  ],
  '/head': ['Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12345\r\n\r\n'],
  '/head-untyped': ['Status: 200 OK\r\nContent-Length: 12345\r\n\r\n'],
  '/empty': ['Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n'],
  '/empty-untyped': ['Status: 200 OK\r\nContent-Length: 0\r\n\r\n'],
  '/no-content': ['Status: 204 No Content\r\nX-Extra: 1\r\n\r\n', 'stray bytes'],
  '/not-modified': ['Status: 304 Not Modified\r\nETag: "abc"\r\n\r\n'],
  '/extra': [
    'Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhel',
    'lo and more',
  ],
};

interface Backend {
  address: string;
  connections: number;
  held: Socket[];
  closed: number[];
  server: NetServer;
}

async function startBackend(): Promise<Backend> {
  const b = { connections: 0, held: [], closed: [] } as unknown as Backend;
  b.server = createServer((socket) => {
    b.connections++;
    socket.on('error', () => {});
    const decoder = new ScgiHeadDecoder();
    const onData = (c: Buffer) => {
      const head = decoder.push(c);
      if (head === null) return;
      socket.removeListener('data', onData);
      socket.resume();
      const path = head.env.PATH_INFO ?? '';
      if (path === '/hold') {
        b.held.push(socket); // answers when the test says so
        return;
      }
      if (path === '/endless') {
        // 100 MiB announced, far over maxBufferedBody: it streams, 16 KiB every 5 ms.
        socket.write(
          'Status: 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 104857600\r\n\r\n',
        );
        const timer = setInterval(() => socket.write(Buffer.alloc(16384, 1)), 5);
        socket.once('close', () => {
          clearInterval(timer);
          b.closed.push(Date.now());
        });
        return;
      }
      const parts = ANSWERS[path] ?? ['Status: 404 Not Found\r\nContent-Length: 0\r\n\r\n'];
      let i = 0;
      const next = () => {
        if (socket.destroyed) return;
        const part = parts[i++]!;
        if (i === parts.length) socket.end(part);
        else socket.write(part, () => setTimeout(next, 5));
      };
      next();
    };
    socket.on('data', onData);
  });
  await new Promise<void>((r) => b.server.listen(0, '127.0.0.1', r));
  b.address = `127.0.0.1:${(b.server.address() as AddressInfo).port}`;
  return b;
}

interface Front {
  url: string;
  port: number;
  stats(): PoolStats;
  close(): Promise<void>;
}

async function startFront(
  kind: FrontKind,
  options: FastifyScgiOptions & ExpressScgiOptions,
): Promise<Front> {
  if (kind === 'fastify') {
    const app = Fastify({ logger: false });
    await app.register(fastifyScgi, { prefix: '/app', ...options });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    return {
      url: `http://127.0.0.1:${port}`,
      port,
      stats: () => app.scgiProxy.stats(),
      close: () => app.close(),
    };
  }
  const mw = scgiProxy({ respondOnError: true, ...options });
  const app = (kind === 'express4' ? express4 : express)() as ReturnType<typeof express>;
  app.use('/app', mw);
  const server: Server = await new Promise((r) => {
    const s = app.listen(0, '127.0.0.1', () => r(s));
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    stats: () => mw.stats(),
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

const KINDS: FrontKind[] = ['fastify', 'express', 'express4'];

describe.each(KINDS)('through %s', (kind) => {
  let backend: Backend;
  let buffered: Front;
  let streamed: Front;
  beforeAll(async () => {
    backend = await startBackend();
    buffered = await startFront(kind, { upstream: backend.address });
    streamed = await startFront(kind, { upstream: backend.address, maxBufferedBody: 0 });
  });
  afterAll(async () => {
    await buffered?.close();
    await streamed?.close();
    await new Promise((r) => backend?.server.close(r));
  });

  /** The same request through the buffering and the streaming front: the same answer. */
  async function both(target: string, method = 'GET') {
    const a = await send(buffered, { target, method });
    const b = await send(streamed, { target, method });
    const view = (r: typeof a) => ({
      status: `${r.statusCode} ${r.statusMessage}`,
      fields: fields(r),
      body: r.body,
      closedEarly: r.closedEarly,
    });
    expect(view(a)).toEqual(view(b));
    return a;
  }

  it('a body with a Content-Type, in several backend reads: the exact bytes and fields', async () => {
    const res = await both('/app/typed');
    expect(res.statusCode).toBe(201);
    expect(res.statusMessage).toBe('Made It');
    expect(fields(res)).toEqual([
      ['content-type', 'application/x-thing'],
      ['content-length', String(BODY.length)],
      ['x-extra', '1'],
      ['set-cookie', 'a=1'],
      ['set-cookie', 'b=2'],
    ]);
    expect(res.body.equals(BODY)).toBe(true);
    expect(res.closedEarly).toBe(false);
  });

  it('onResponse sees bodyBuffer; once the body is sent the response lets go of it (the exact bytes still arrive)', async () => {
    const seen: Array<{ length: number | undefined; response: ScgiResponse }> = [];
    const record = (response: ScgiResponse) => {
      seen.push({ length: response.bodyBuffer?.length, response });
    };
    const front = await startFront(kind, {
      upstream: backend.address,
      onResponse: (_a: unknown, _b: unknown, response: ScgiResponse) => record(response),
    } as FastifyScgiOptions & ExpressScgiOptions);
    try {
      const res = await send(front, { target: '/app/typed', method: 'GET' });
      expect(res.body.equals(BODY)).toBe(true);
      expect(seen.map((s) => s.length)).toEqual([BODY.length]);
      // Sent: the buffer is the framework's or the socket's now, not the response's.
      expect(seen[0]!.response.bodyBuffer).toBeNull();
    } finally {
      await front.close();
    }
  });

  it('a hook that throws or rejects ends its exchange with a 500, and the front serves on', async () => {
    const boom = () => {
      throw new Error('hook failed');
    };
    const hooks = [
      { onResponse: boom },
      { onResponse: async () => boom() },
      // A backend that is not there (tried once): the request fails, then its error hook.
      { onError: boom, upstream: 'unix:/nonexistent/scgi.sock', retryTimeout: 0 },
      { onError: async () => boom(), upstream: 'unix:/nonexistent/scgi.sock', retryTimeout: 0 },
    ];
    for (const hook of hooks) {
      const front = await startFront(kind, {
        upstream: backend.address,
        ...hook,
      } as unknown as FastifyScgiOptions & ExpressScgiOptions);
      try {
        // The hook's failure, not the gateway's: 500 from the framework's error handler.
        const res = await send(front, { target: '/app/typed', method: 'GET' });
        expect(res.statusCode).toBe(500);
        const again = await send(front, { target: '/app/typed', method: 'GET' });
        expect(again.statusCode).toBe(500);
      } finally {
        await front.close();
      }
    }
    // The backend still answers through a front without hooks.
    expect((await send(buffered, { target: '/app/typed', method: 'GET' })).statusCode).toBe(201);
  });

  it('a body without a Content-Type reaches the client without one', async () => {
    const res = await both('/app/untyped');
    expect(fields(res)).toEqual([['content-length', String(BODY.length)]]);
    expect(res.body.equals(BODY)).toBe(true);
  });

  it.each([
    '/app/head',
    '/app/head-untyped',
  ])('HEAD %s keeps the backend Content-Length', async (target) => {
    const res = await both(target, 'HEAD');
    expect(res.statusCode).toBe(200);
    expect(fields(res)).toEqual(
      target.endsWith('untyped')
        ? [['content-length', '12345']]
        : [
            ['content-type', 'text/plain'],
            ['content-length', '12345'],
          ],
    );
    expect(res.body.length).toBe(0);
  });

  it.each(['/app/empty', '/app/empty-untyped'])('%s: Content-Length 0, no body', async (target) => {
    const res = await both(target);
    expect(res.statusCode).toBe(200);
    expect(fields(res)).toEqual(
      target.endsWith('untyped')
        ? [['content-length', '0']]
        : [
            ['content-type', 'text/plain'],
            ['content-length', '0'],
          ],
    );
    expect(res.body.length).toBe(0);
  });

  it('204 and 304: no body, the backend headers', async () => {
    const none = await both('/app/no-content');
    expect([none.statusCode, fields(none), none.body.length]).toEqual([204, [['x-extra', '1']], 0]);
    const same = await both('/app/not-modified');
    expect([same.statusCode, fields(same), same.body.length]).toEqual([
      304,
      [['etag', '"abc"']],
      0,
    ]);
  });

  it('bytes past the Content-Length are dropped', async () => {
    const res = await both('/app/extra');
    expect(fields(res)).toEqual([
      ['content-type', 'text/plain'],
      ['content-length', '5'],
    ]);
    expect(res.body.toString()).toBe('hello');
  });

  describe('client aborts', () => {
    it('a client that disconnects while its request waits in a saturated pool queue leaves the queue and never reaches a backend', async () => {
      const b = await startBackend();
      const front = await startFront(kind, {
        upstream: [{ address: b.address, maxConnections: 1 }],
        maxQueue: 10,
        queueTimeout: 10_000,
      });
      try {
        const first = send(front, { target: '/app/hold' });
        expect(
          await eventually(
            () => b.held.length,
            (n) => n === 1,
          ),
        ).toBe(1);
        const client = connect(front.port, '127.0.0.1');
        client.on('error', () => {});
        client.write(`GET /app/typed HTTP/1.1\r\nHost: 127.0.0.1:${front.port}\r\n\r\n`);
        expect(
          await eventually(
            () => front.stats().queued,
            (n) => n === 1,
          ),
        ).toBe(1);
        client.destroy();
        expect(
          await eventually(
            () => front.stats().queued,
            (n) => n === 0,
            1000,
          ),
        ).toBe(0);
        // The slot frees up with nobody waiting for it: the backend sees no second request.
        b.held[0]!.end('Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok');
        expect((await first).body.toString()).toBe('ok');
        await new Promise((r) => setTimeout(r, 100));
        expect(b.connections).toBe(1);
        expect(front.stats()).toMatchObject({ queued: 0, backends: [{ active: 0, served: 1 }] });
      } finally {
        await front.close();
        await new Promise((r) => b.server.close(r));
      }
    });

    it('a client that disconnects mid-download of a large streamed body closes the backend socket at once', async () => {
      const before = backend.closed.length;
      const socket = connect(buffered.port, '127.0.0.1');
      socket.on('error', () => {});
      const firstData = await new Promise<number>((resolve) => {
        socket.once('data', () => resolve(Date.now()));
        socket.write(`GET /app/endless HTTP/1.1\r\nHost: 127.0.0.1:${buffered.port}\r\n\r\n`);
      });
      socket.destroy();
      expect(
        await eventually(
          () => backend.closed.length,
          (n) => n > before,
          2000,
        ),
      ).toBe(before + 1);
      expect(backend.closed.at(-1)! - firstData).toBeLessThan(500);
      expect(
        await eventually(
          () => buffered.stats().backends[0]!.active,
          (n) => n === 0,
        ),
      ).toBe(0);
    });
  });
});
