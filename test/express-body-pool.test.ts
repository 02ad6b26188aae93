/**
 * express-scgi gives a small body's buffer back to scgi-core's pool once `res` emitted 'finish'
 * and only when nothing else can hold it: Node's own `res.end`, no `onResponse` hook. A buffer
 * given back too early, or one a middleware still holds, would put a later body's bytes into an
 * earlier response: every test checks the bytes (SHA-256 of pseudo-random bodies).
 */
import { get, type Server } from 'node:http';
import type { AddressInfo, Server as NetServer } from 'node:net';
import express from 'express';
import { scgiProxy } from 'express-scgi';
import { createScgiServer } from 'scgi-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { count64KiBAllocations, pseudoRandomBytes, sha256 } from './helpers/bytes.js';

function fetchBytes(port: number, path: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    }).on('error', reject);
  });
}

let backend: NetServer;
let upstream: string;

// `/N/S`: a body of N bytes of seed S with its Content-Length, in two writes a tick apart.
beforeAll(async () => {
  backend = createScgiServer((req, res) => {
    const [, n, s] = (req.env.PATH_INFO ?? '').split('/');
    const body = pseudoRandomBytes(Number(s), Number(n));
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': n });
    res.write(body.subarray(0, 1000));
    setImmediate(() => res.end(body.subarray(1000)));
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  upstream = `127.0.0.1:${(backend.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => backend.close(() => r())));

async function listen(app: express.Express): Promise<{ server: Server; port: number }> {
  const server = await new Promise<Server>((r) => {
    const s = app.listen(0, '127.0.0.1', () => r(s));
  });
  return { server, port: (server.address() as AddressInfo).port };
}

describe('express-scgi: body buffers reused only when nothing else holds them', () => {
  const mws: Array<ReturnType<typeof scgiProxy>> = [];
  const servers: Server[] = [];
  afterAll(async () => {
    for (const mw of mws) await mw.close(0);
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  });

  async function front(setup: (app: express.Express) => void): Promise<number> {
    const app = express();
    setup(app);
    const mw = scgiProxy({ upstream });
    mws.push(mw);
    app.use(mw);
    const { server, port } = await listen(app);
    servers.push(server);
    return port;
  }

  it('one request after another: later bodies take the buffers earlier ones gave back', async () => {
    const port = await front(() => {});
    const made = await count64KiBAllocations(async () => {
      for (let i = 0; i < 40; i++) {
        const n = 5_000 + i * 1_500;
        const got = await fetchBytes(port, `/${n}/${i + 1}`);
        expect(got.status).toBe(200);
        expect(sha256(got.body), `body ${i}`).toBe(sha256(pseudoRandomBytes(i + 1, n)));
      }
    });
    // Without reuse each of the 40 bodies (5 to 64 KiB) takes a new buffer.
    expect(made).toBeGreaterThan(0);
    expect(made).toBeLessThan(10);
  });

  it('many at once: every client gets its own bytes', async () => {
    const port = await front(() => {});
    for (let round = 0; round < 5; round++) {
      const jobs = [];
      for (let i = 0; i < 16; i++) {
        const n = 4_096 + (((round * 16 + i) * 3_989) % 61_000);
        const seed = 100 + round * 16 + i;
        jobs.push(fetchBytes(port, `/${n}/${seed}`).then((got) => ({ got, n, seed })));
      }
      for (const { got, n, seed } of await Promise.all(jobs)) {
        expect(got.status).toBe(200);
        expect(sha256(got.body), `${n}/${seed}`).toBe(sha256(pseudoRandomBytes(seed, n)));
      }
    }
  });

  it('a middleware that wraps res.end and keeps the body keeps it intact', async () => {
    // As a response cache does (apicache wraps res.end the same way): it holds the very chunk.
    const kept: Array<{ path: string; chunk: Buffer }> = [];
    const port = await front((app) =>
      app.use((req, res, next) => {
        const end = res.end;
        res.end = ((...args: Parameters<typeof end>) => {
          if (Buffer.isBuffer(args[0])) kept.push({ path: req.url, chunk: args[0] });
          return end.apply(res, args);
        }) as typeof res.end;
        next();
      }),
    );
    const made = await count64KiBAllocations(async () => {
      for (let i = 0; i < 24; i++) {
        const n = 10_000 + i * 2_000;
        const got = await fetchBytes(port, `/${n}/${500 + i}`);
        expect(sha256(got.body)).toBe(sha256(pseudoRandomBytes(500 + i, n)));
      }
    });
    expect(kept).toHaveLength(24);
    for (const { path, chunk } of kept) {
      const [, n, s] = path.split('/');
      expect(sha256(chunk), path).toBe(sha256(pseudoRandomBytes(Number(s), Number(n))));
    }
    // Nothing was taken from the pool: plain buffers of the exact size.
    expect(made).toBe(0);
  });
});
