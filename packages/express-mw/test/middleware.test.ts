// express-scgi against the Node SCGI server of scgi-core (a real backend on a Unix socket), on
// Express 5 and Express 4: mount paths, bodies already read by body parsers, errors through
// next(err) or answered directly, options validation.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import express4 from 'express4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNodeApp } from '../../../examples/node-app.mjs';
import scgiProxyDefault, { keepRawBody, scgiProxy } from '../src/index.js';

let dir: string;
let backend: Server;
let upstream: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'express-scgi-test-'));
  upstream = `unix:${join(dir, 'app.sock')}`;
  backend = (await startNodeApp(upstream)) as Server;
});
afterAll(async () => {
  await new Promise((r) => backend.close(r));
  rmSync(dir, { recursive: true, force: true });
});

type App = ReturnType<typeof express>;
async function serve(app: App): Promise<{ url: string; close: () => Promise<void> }> {
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

describe.each([
  ['Express 5', express as unknown as () => App],
  ['Express 4', express4 as unknown as () => App],
])('%s', (_name, makeApp) => {
  it('takes SCRIPT_NAME from the mount path, also in nested routers', async () => {
    const app = makeApp();
    const router = express.Router();
    router.use('/inner', scgiProxy({ upstream }));
    app.use('/outer', router);
    app.use('/app', scgiProxy({ upstream }));
    const s = await serve(app);
    const env = await (await fetch(`${s.url}/app/env/x?y=1`)).json();
    expect(env).toMatchObject({
      SCRIPT_NAME: '/app',
      PATH_INFO: '/env/x',
      REQUEST_URI: '/app/env/x?y=1',
      QUERY_STRING: 'y=1',
    });
    const nested = await (await fetch(`${s.url}/outer/inner/env`)).json();
    expect(nested).toMatchObject({
      SCRIPT_NAME: '/outer/inner',
      PATH_INFO: '/env',
      REQUEST_URI: '/outer/inner/env',
    });
    await s.close();
  });

  it('re-sends bodies read by express.json / urlencoded (verify: keepRawBody) / raw / text byte for byte', async () => {
    const app = makeApp();
    app.use(express.json({ verify: keepRawBody }));
    app.use(express.urlencoded({ extended: false, verify: keepRawBody }));
    app.use(express.raw({ type: 'application/octet-stream' }));
    app.use(express.text());
    app.use('/app', scgiProxy({ upstream }));
    const s = await serve(app);
    // Neither would survive JSON.parse + JSON.stringify or a form re-encoding.
    const json = '{ "a": "\\u00e9", "n": [1.0, 2] }';
    const r1 = await (
      await fetch(`${s.url}/app/sha256`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: json,
      })
    ).json();
    expect(r1).toEqual({ length: Buffer.byteLength(json), sha256: sha(json) });
    const r2 = await (
      await fetch(`${s.url}/app/sha256`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'a=1&b=x+y%41',
      })
    ).json();
    expect(r2).toEqual({ length: 12, sha256: sha('a=1&b=x+y%41') });
    const bin = Buffer.from([0, 1, 2, 255, 254]);
    const r3 = await (
      await fetch(`${s.url}/app/sha256`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body: bin,
      })
    ).json();
    expect(r3).toEqual({ length: 5, sha256: sha(bin) });
    const r4 = await (
      await fetch(`${s.url}/app/sha256`, {
        method: 'POST',
        headers: { 'content-type': 'text/plain' },
        body: 'héllo',
      })
    ).json();
    expect(r4).toEqual({ length: 6, sha256: sha('héllo') });
    // A type no parser took stays a raw stream.
    const r5 = await (
      await fetch(`${s.url}/app/sha256`, {
        method: 'POST',
        headers: { 'content-type': 'image/png' },
        body: bin,
      })
    ).json();
    expect(r5).toEqual({ length: 5, sha256: sha(bin) });
    await s.close();
  });

  it('a body a parser consumed without keeping its bytes is a clear 500, never a hang', async () => {
    const app = makeApp();
    app.use((req, _res, next) => {
      // A stand-in for a multipart parser: reads the stream, leaves an object. No private
      // `req._body` flag: the public stream state tells the body was read.
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        (req as unknown as { body: unknown }).body = { files: chunks.length };
        next();
      });
    });
    app.use('/app', scgiProxy({ upstream, respondOnError: true }));
    const s = await serve(app);
    const res = await fetch(`${s.url}/app/sha256`, {
      method: 'POST',
      headers: { 'content-type': 'multipart/form-data; boundary=x' },
      body: '--x--',
    });
    expect(res.status).toBe(500);
    expect(await res.json()).toMatchObject({ code: 'SCGI_ERR_BODY_CONSUMED' });
    await s.close();
  });

  it('a body a middleware read in part is refused, never forwarded from the middle', async () => {
    const app = makeApp();
    let firstRead: () => void = () => {};
    const read = new Promise<void>((resolve) => {
      firstRead = resolve;
    });
    app.use((req, _res, next) => {
      req.once('data', () => {
        req.pause();
        firstRead();
        next();
      });
    });
    app.use('/app', scgiProxy({ upstream, respondOnError: true }));
    const s = await serve(app);
    const { port } = new URL(s.url);
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        { port, method: 'POST', path: '/app/sha256', headers: { 'content-length': 10 } },
        (r) => {
          let body = '';
          r.setEncoding('utf8');
          r.on('data', (c: string) => {
            body += c;
          });
          r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.write('12345');
      // The rest only once the middleware took the first piece: the proxy sees a stream read.
      void read.then(() => req.end('67890'));
    });
    expect(res.status).toBe(500);
    expect(JSON.parse(res.body)).toMatchObject({ code: 'SCGI_ERR_BODY_CONSUMED' });
    await s.close();
  });

  it('passes failures before the head to next(err) with code and statusCode', async () => {
    const app = makeApp();
    const seen: unknown[] = [];
    app.use('/app', scgiProxy({ upstream: `unix:${join(dir, 'missing.sock')}` }));
    app.use(
      (
        err: { code: string; statusCode: number },
        _req: unknown,
        res: express.Response,
        _next: unknown,
      ) => {
        seen.push(err.code);
        res.status(err.statusCode).json({ handled: err.code });
      },
    );
    const s = await serve(app);
    const res = await fetch(`${s.url}/app/env`);
    expect(res.status).toBe(502);
    expect(await res.json()).toEqual({ handled: 'SCGI_ERR_CONNECT' });
    expect(seen).toEqual(['SCGI_ERR_CONNECT']);
    await s.close();
  });

  it('respondOnError answers directly without revealing the socket path', async () => {
    const app = makeApp();
    app.use(
      '/app',
      scgiProxy({ upstream: `unix:${join(dir, 'missing.sock')}`, respondOnError: true }),
    );
    const s = await serve(app);
    const res = await fetch(`${s.url}/app/env`);
    expect(res.status).toBe(502);
    const text = await res.text();
    expect(JSON.parse(text)).toMatchObject({ statusCode: 502, code: 'SCGI_ERR_CONNECT' });
    expect(text).not.toContain(dir);
    const bad = await fetch(`${s.url}/app/env/%00`);
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ code: 'SCGI_ERR_PATH_NUL' });
    await s.close();
  });

  it('hooks: rewriteEnv and onResponse', async () => {
    const app = makeApp();
    app.use(
      '/app',
      scgiProxy({
        upstream,
        rewriteEnv: (env) => [...env, ['X_MW', 'on']],
        onResponse: (_req, res) => {
          res.setHeader('x-proxied-by', 'express-scgi');
          return undefined;
        },
      }),
    );
    const s = await serve(app);
    const res = await fetch(`${s.url}/app/env`);
    expect(res.headers.get('x-proxied-by')).toBe('express-scgi');
    expect((await res.json()).X_MW).toBe('on');
    await s.close();
  });
});

describe('options', () => {
  it('default export is the named export', () => {
    expect(scgiProxyDefault).toBe(scgiProxy);
    expect(scgiProxy({ upstream }).proxy.options.backends[0]!.address.kind).toBe('unix');
  });

  it.each([
    [{}, 'upstream'],
    [{ upstream: 'x' }, 'x'],
    [{ upstream: 'unix:/x.sock', rewriteEnv: 'no' }, 'rewriteEnv'],
    [{ upstream: 'unix:/x.sock', onResponse: 1 }, 'onResponse'],
    [{ upstream: 'unix:/x.sock', respondOnError: 'yes' }, 'respondOnError'],
    [{ upstream: 'unix:/x.sock', idleTimeout: 1.5 }, 'idleTimeout'],
  ])('rejects %j naming the option', (opts, name) => {
    expect(() => scgiProxy(opts as never)).toThrow(
      expect.objectContaining({ message: expect.stringContaining(name) }),
    );
  });
});
