// fastify-scgi against the Node SCGI server of scgi-core (a real backend on a Unix socket):
// registration, options validation, hooks, the error handler, body passthrough, reply.scgi(),
// HTTPS and HTTP/2.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNodeApp } from '../../../examples/node-app.mjs';
import fastifyScgi, { fastifyScgi as named } from '../src/index.js';

let dir: string;
let backend: Server;
let upstream: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fastify-scgi-test-'));
  upstream = `unix:${join(dir, 'app.sock')}`;
  backend = await startNodeApp(upstream);
});
afterAll(async () => {
  await new Promise((r) => backend.close(r));
  rmSync(dir, { recursive: true, force: true });
});

async function build(
  opts: Record<string, unknown> = {},
  setup?: (app: FastifyInstance) => void | Promise<void>,
) {
  const app = Fastify();
  await setup?.(app);
  await app.register(fastifyScgi, { upstream, prefix: '/app', ...opts });
  await app.ready();
  return app;
}

describe('registration', () => {
  it('has a default and a named export that are the same plugin', () => {
    expect(named).toBe(fastifyScgi);
  });

  it.each([
    [{ upstream: undefined }, 'upstream'],
    [{ upstream: 42 }, 'upstream'],
    [{ prefix: 'app' }, 'prefix'],
    [{ prefix: '/app/' }, 'prefix'],
    [{ prefix: '/a?b' }, 'prefix'],
    [{ onResponse: 'nope' }, 'onResponse'],
    [{ rewriteEnv: 1 }, 'rewriteEnv'],
    [{ onError: {} }, 'onError'],
    [{ connectTimeout: -1 }, 'connectTimeout'],
    [{ maxHeadSize: 0 }, 'maxHeadSize'],
    [{ trustProxy: {} }, 'trustProxy'],
  ])('rejects bad options %j naming the option', async (bad, name) => {
    const app = Fastify();
    await expect(
      app.register(fastifyScgi, { upstream, prefix: '/app', ...bad } as never),
    ).rejects.toMatchObject({
      code: expect.stringMatching(/^SCGI_ERR_INVALID_(OPTION|ADDRESS)$/),
      message: expect.stringContaining(name),
    });
    await app.close();
  });

  it('rejects a malformed upstream address', async () => {
    const app = Fastify();
    await expect(app.register(fastifyScgi, { upstream: 'nonsense' })).rejects.toMatchObject({
      code: 'SCGI_ERR_INVALID_ADDRESS',
    });
    await app.close();
  });

  it('serves from the root without a prefix, SCRIPT_NAME ""', async () => {
    const app = await build({ prefix: undefined });
    const res = await app.inject({ url: '/env/x' });
    expect(res.json()).toMatchObject({ SCRIPT_NAME: '', PATH_INFO: '/env/x' });
    await app.close();
  });

  it('serves the prefix itself and everything under it', async () => {
    const app = await build();
    expect((await app.inject({ url: '/app' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/app/' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/app/env' })).json()).toMatchObject({
      SCRIPT_NAME: '/app',
      PATH_INFO: '/env',
    });
    expect((await app.inject({ url: '/application' })).statusCode).toBe(404);
    await app.close();
  });

  it('inside a prefixed context, SCRIPT_NAME is the whole mount path', async () => {
    const app = Fastify();
    await app.register(
      async (v1) => {
        await v1.register(fastifyScgi, { upstream, prefix: '/app' });
      },
      { prefix: '/v1' },
    );
    const res = await app.inject({ url: '/v1/app/env/x' });
    expect(res.json()).toMatchObject({
      SCRIPT_NAME: '/v1/app',
      PATH_INFO: '/env/x',
      REQUEST_URI: '/v1/app/env/x',
    });
    // A path that is not UTF-8 after decoding: over a real connection (inject() bypasses the
    // server's 'request' event, where the plugin lets such paths through the router).
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    const bad = await fetch(`http://127.0.0.1:${port}/v1/app/env/%E9`);
    expect(await bad.json()).toMatchObject({
      SCRIPT_NAME: '/v1/app',
      PATH_INFO_hex: '2f656e762fe9',
    });
    await app.close();
  });

  it('forwards methods Fastify does not route by default, with methods: all', async () => {
    const app = await build({ methods: 'all' });
    for (const method of ['PROPFIND', 'MKCOL', 'LOCK', 'PURGE', 'OPTIONS', 'DELETE']) {
      const res = await app.inject({ method: method as 'GET', url: '/app/env' });
      expect(res.json().REQUEST_METHOD).toBe(method);
    }
    await app.close();
  });

  it('can be registered twice with different prefixes and backends', async () => {
    const app = Fastify();
    await app.register(fastifyScgi, { upstream, prefix: '/one' });
    await app.register(fastifyScgi, { upstream, prefix: '/two', params: { WHICH: 'two' } });
    const one = await app.inject({ url: '/one/env' });
    const two = await app.inject({ url: '/two/env' });
    expect(one.json()).toMatchObject({ SCRIPT_NAME: '/one' });
    expect(one.json().WHICH).toBeUndefined();
    expect(two.json()).toMatchObject({ SCRIPT_NAME: '/two', WHICH: 'two' });
    await app.close();
  });
});

describe('Fastify integration', () => {
  it('leaves body parsing of other routes alone while passing raw bodies under the prefix', async () => {
    const app = await build({}, (a) => {
      a.post('/json', async (req) => ({ got: req.body }));
    });
    const parsed = await app.inject({ method: 'POST', url: '/json', payload: { a: 1 } });
    expect(parsed.json()).toEqual({ got: { a: 1 } });
    // Under the prefix even an unknown content type and a body Fastify would refuse pass through.
    const raw = await app.inject({
      method: 'POST',
      url: '/app/sha256',
      headers: { 'content-type': 'application/x-weird' },
      payload: '{not json',
    });
    expect(raw.json()).toMatchObject({ length: 9 });
    await app.close();
  });

  it('runs route hooks and exposes errors to the error handler with their code', async () => {
    const seen: string[] = [];
    const app = await build({ upstream: `unix:${join(dir, 'missing.sock')}` }, (a) => {
      a.addHook('onRequest', async (req) => {
        seen.push(`onRequest ${req.url}`);
      });
      a.addHook('onResponse', async (_req, reply) => {
        seen.push(`onResponse ${reply.statusCode}`);
      });
      a.setErrorHandler((err: Error & { code?: string; statusCode?: number }, _req, reply) => {
        seen.push(`error ${err.code}`);
        reply.code(err.statusCode ?? 500).send({ custom: err.code });
      });
    });
    const res = await app.inject({ url: '/app/env' });
    expect(res.statusCode).toBe(502);
    expect(res.json()).toEqual({ custom: 'SCGI_ERR_CONNECT' });
    expect(seen).toEqual(['onRequest /app/env', 'error SCGI_ERR_CONNECT', 'onResponse 502']);
    await app.close();
  });

  it('does not reveal the socket path in the default error response', async () => {
    const app = await build({ upstream: `unix:${join(dir, 'missing.sock')}` });
    const res = await app.inject({ url: '/app/env' });
    expect(res.statusCode).toBe(502);
    expect(res.json()).toMatchObject({ code: 'SCGI_ERR_CONNECT', statusCode: 502 });
    expect(res.body).not.toContain(dir);
    expect(res.body).not.toContain('missing.sock');
    await app.close();
  });

  it('rewriteEnv, onResponse and onError hooks', async () => {
    const app = await build({
      rewriteEnv: (env: [string, string][]) => [...env, ['X_EXTRA', 'yes']],
      onResponse: (
        _req: unknown,
        reply: { header: (k: string, v: string) => void },
        response: { upstream: string },
      ) => {
        reply.header('x-upstream-seen', response.upstream.startsWith('unix:') ? 'unix' : 'tcp');
      },
    });
    const res = await app.inject({ url: '/app/env' });
    expect(res.json().X_EXTRA).toBe('yes');
    expect(res.headers['x-upstream-seen']).toBe('unix');
    await app.close();

    const failing = await build({
      upstream: `unix:${join(dir, 'missing.sock')}`,
      onError: (
        reply: { code: (n: number) => { send: (b: unknown) => void } },
        { error }: { error: { code: string } },
      ) => {
        reply.code(503).send({ down: error.code });
      },
    });
    const down = await failing.inject({ url: '/app/env' });
    expect(down.statusCode).toBe(503);
    expect(down.json()).toEqual({ down: 'SCGI_ERR_CONNECT' });
    await failing.close();
  });

  it('reply.scgi() serves custom routes; a parsed body goes byte for byte or is refused', async () => {
    const app = await build({ routes: false }, (a) => {
      a.post('/custom', (_req, reply) => reply.scgi({ scriptName: '/custom' }));
      a.get('/custom-env', (_req, reply) => reply.scgi());
    });
    const text = 'héllo wörld';
    const res = await app.inject({
      method: 'POST',
      url: '/custom?x=1',
      headers: { 'content-type': 'text/plain; charset=utf-8' },
      payload: text,
    });
    // The route's URL is /custom, so PATH_INFO is "" and the app answers its index page.
    expect(res.statusCode).toBe(200);
    const env = await app.inject({ url: '/custom-env' });
    expect(env.statusCode).toBe(404); // PATH_INFO /custom-env is not an app route
    await app.close();

    const sha = await build({ routes: false }, (a) => {
      a.post('/sha256', (_req, reply) => reply.scgi());
    });
    // Fastify's text parser leaves the UTF-8 string of exactly Content-Length bytes: exact.
    const hashed = await sha.inject({
      method: 'POST',
      url: '/sha256',
      headers: { 'content-type': 'text/plain' },
      payload: text,
    });
    expect(hashed.json()).toEqual({
      length: Buffer.byteLength(text),
      sha256: createHash('sha256').update(text).digest('hex'),
    });
    // Its JSON parser leaves a value that cannot be turned back into the client's bytes.
    const parsed = await sha.inject({
      method: 'POST',
      url: '/sha256',
      payload: '{"id": 12345678901234567890}',
      headers: { 'content-type': 'application/json' },
    });
    expect(parsed.statusCode).toBe(500);
    expect(parsed.json().code).toBe('SCGI_ERR_BODY_CONSUMED');
    await sha.close();
  });

  it('passes the backend reason phrase and status through', async () => {
    const app = await build();
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    const res = await fetch(`http://127.0.0.1:${port}/app/status/418`);
    expect(res.status).toBe(418);
    expect(await res.text()).toBe('status 418\n');
    await app.close();
  });

  it('closes cleanly: onClose runs, no proxy listener stays on the server', async () => {
    const app = await build();
    const before = app.server.listenerCount('request');
    await app.close();
    expect(app.server.listenerCount('request')).toBeLessThan(before);
  });
});

describe('HTTPS and HTTP/2', () => {
  let key: Buffer;
  let cert: Buffer;
  beforeAll(() => {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    key = readFileSync(join(dir, 'key.pem'));
    cert = readFileSync(join(dir, 'cert.pem'));
  });

  function h2get(
    url: string,
    path: string,
    ca?: Buffer,
  ): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const client = http2.connect(url, ca ? { ca, servername: 'localhost' } : {});
      client.on('error', reject);
      const req = client.request({ ':path': path });
      let status = 0;
      let body = '';
      req.on('response', (h) => {
        status = Number(h[':status']);
      });
      req.setEncoding('utf8');
      req.on('data', (c) => {
        body += c;
      });
      req.on('end', () => {
        client.close();
        resolve({ status, body });
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('HTTPS over HTTP/1.1 sets HTTPS=on and REQUEST_SCHEME=https', async () => {
    const app = Fastify({ https: { key, cert } });
    await app.register(fastifyScgi, { upstream, prefix: '/app' });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    const { request } = await import('node:https');
    const env = await new Promise<Record<string, string>>((resolve, reject) => {
      request(`https://127.0.0.1:${port}/app/env`, { ca: cert, servername: 'localhost' }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => {
          text += c;
        });
        res.on('end', () => resolve(JSON.parse(text)));
      })
        .on('error', reject)
        .end();
    });
    expect(env).toMatchObject({
      HTTPS: 'on',
      REQUEST_SCHEME: 'https',
      SERVER_PROTOCOL: 'HTTP/1.1',
    });
    await app.close();
  });

  it('HTTP/2 cleartext: SERVER_PROTOCOL HTTP/2.0, HTTP_HOST from :authority, no HTTPS', async () => {
    const app = Fastify({ http2: true });
    await app.register(fastifyScgi, { upstream, prefix: '/app' });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    const res = await h2get(`http://127.0.0.1:${port}`, '/app/env?q=1');
    expect(res.status).toBe(200);
    const env = JSON.parse(res.body);
    expect(env).toMatchObject({
      SERVER_PROTOCOL: 'HTTP/2.0',
      REQUEST_SCHEME: 'http',
      QUERY_STRING: 'q=1',
    });
    expect(env.HTTPS).toBeUndefined();
    expect(env.HTTP_HOST).toBe(`127.0.0.1:${port}`);
    const cookies = await h2get(`http://127.0.0.1:${port}`, '/app/cookies');
    expect(cookies.body).toBe('cookies\n');
    await app.close();
  });

  it('HTTP/2 request bodies: with content-length streamed, without it spooled; both whole', async () => {
    const app = Fastify({ http2: true });
    await app.register(fastifyScgi, { upstream, prefix: '/app', spoolMemory: 1024 });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    const body = Buffer.alloc(200_000, 3);
    const { createHash } = await import('node:crypto');
    const expected = {
      length: body.length,
      sha256: createHash('sha256').update(body).digest('hex'),
    };
    const post = (headers: Record<string, string | number>) =>
      new Promise<{ status: number; json: unknown }>((resolve, reject) => {
        const client = http2.connect(`http://127.0.0.1:${port}`);
        client.on('error', reject);
        const req = client.request({ ':method': 'POST', ':path': '/app/sha256', ...headers });
        let status = 0;
        let text = '';
        req.on('response', (h) => {
          status = Number(h[':status']);
        });
        req.setEncoding('utf8');
        req.on('data', (c) => {
          text += c;
        });
        req.on('end', () => {
          client.close();
          resolve({ status, json: JSON.parse(text) });
        });
        req.on('error', reject);
        req.end(body);
      });
    expect(await post({ 'content-length': body.length })).toEqual({ status: 200, json: expected });
    // No content-length on HTTP/2: the length is learnt by spooling (here past spoolMemory, to a file).
    expect(await post({})).toEqual({ status: 200, json: expected });
    await app.close();
  });

  it('HTTP/2 over TLS: HTTPS=on', async () => {
    const app = Fastify({ http2: true, https: { key, cert } });
    await app.register(fastifyScgi, { upstream, prefix: '/app' });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    const res = await h2get(`https://127.0.0.1:${port}`, '/app/env', cert);
    expect(JSON.parse(res.body)).toMatchObject({
      HTTPS: 'on',
      REQUEST_SCHEME: 'https',
      SERVER_PROTOCOL: 'HTTP/2.0',
    });
    await app.close();
  });
});
