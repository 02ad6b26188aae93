/**
 * The idioms of each framework (issue 15), against a real SCGI backend (scgi-core's Node server
 * on a Unix socket): two Fastify registrations each with their own engine, route hooks that run
 * before the proxy, route log levels and one log line per failure, pools picked per request,
 * methods not widened unless asked, Express's logger and onError, byte sizes as strings, and
 * errors under their own class names.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import express from 'express';
import { scgiProxy } from 'express-scgi';
import Fastify, { type FastifyInstance } from 'fastify';
import fastifyScgi from 'fastify-scgi';
import * as core from 'scgi-core';
import { createScgiServer, resolveProxyOptions } from 'scgi-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNodeApp } from '../examples/node-app.mjs';
import { startExpressFront } from './helpers/fronts.js';

let dir: string;
let backend: Server;
let upstream: string;
/** A second backend that counts the requests it gets and answers who it is. */
let counted: Server;
let countedUpstream: string;
let hits = 0;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'idioms-'));
  upstream = `unix:${join(dir, 'app.sock')}`;
  backend = (await startNodeApp(upstream)) as Server;
  counted = createScgiServer((req, res) => {
    hits++;
    req.resume();
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end(`counted ${req.env.PATH_INFO}`);
  });
  countedUpstream = `unix:${join(dir, 'counted.sock')}`;
  await new Promise<void>((r) => counted.listen(countedUpstream.slice(5), r));
});
afterAll(async () => {
  await new Promise((r) => backend.close(r));
  await new Promise((r) => counted.close(r));
  rmSync(dir, { recursive: true, force: true });
});

/** A Fastify app whose log lines are collected as objects. */
function loggedApp(level = 'info'): { app: FastifyInstance; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l !== '') lines.push(JSON.parse(l));
      cb();
    },
  });
  return { app: Fastify({ logger: { level, stream } }), lines };
}

describe('fastify: two registrations', () => {
  it('reply.scgi() uses the engine of the registration that owns the route', async () => {
    // One registration at the root, one in a child context: a route of the child is owned by
    // the child's registration, although the root already decorated `reply.scgi`.
    const app = Fastify();
    await app.register(fastifyScgi, { upstream, routes: false, params: { WHICH: 'root' } });
    app.get('/env/root', (_request, reply) => reply.scgi());
    await app.register(async (child) => {
      await child.register(fastifyScgi, { upstream, routes: false, params: { WHICH: 'child' } });
      child.get('/env/child', (_request, reply) => reply.scgi());
      expect(child.scgiProxy).not.toBe(app.scgiProxy);
    });
    expect((await app.inject({ url: '/env/root' })).json().WHICH).toBe('root');
    expect((await app.inject({ url: '/env/child' })).json().WHICH).toBe('child');
    await app.close();
  });

  it('two mounts in one context keep their own engines', async () => {
    const app = Fastify();
    await app.register(fastifyScgi, { upstream, prefix: '/one', params: { WHICH: 'one' } });
    await app.register(fastifyScgi, { upstream: countedUpstream, prefix: '/two' });
    expect((await app.inject({ url: '/one/env' })).json().WHICH).toBe('one');
    expect((await app.inject({ url: '/two/env' })).body).toBe('counted /env');
    await app.close();
  });
});

describe('fastify: route options of the proxy routes', () => {
  it('onRequest and preHandler run before the proxy; config and constraints apply', async () => {
    const app = Fastify();
    const seen: unknown[] = [];
    await app.register(fastifyScgi, {
      upstream: countedUpstream,
      prefix: '/app',
      config: { area: 'admin' },
      constraints: { host: 'app.example' },
      onRequest: async (request, reply) => {
        if (request.headers.authorization !== 'Bearer ok') await reply.code(401).send('no');
      },
      preHandler: (request, _reply, done) => {
        seen.push((request.routeOptions.config as { area?: string }).area);
        done();
      },
    });
    const before = hits;
    const denied = await app.inject({ url: '/app/x', headers: { host: 'app.example' } });
    expect(denied.statusCode).toBe(401);
    expect(hits).toBe(before);
    const other = await app.inject({
      url: '/app/x',
      headers: { host: 'other.example', authorization: 'Bearer ok' },
    });
    expect(other.statusCode).toBe(404);
    const ok = await app.inject({
      url: '/app/x',
      headers: { host: 'app.example', authorization: 'Bearer ok' },
    });
    expect(ok.statusCode).toBe(200);
    expect(ok.body).toBe('counted /x');
    expect(hits).toBe(before + 1);
    expect(seen).toEqual(['admin']);
    await app.close();
  });
});

describe('fastify: logs', () => {
  const responses = (lines: Record<string, unknown>[]) =>
    lines.filter((l) => l.msg === 'scgi response');

  it('one line per exchange, filtered by the route logLevel, off with exchangeLog: false', async () => {
    for (const [opts, want] of [
      [{}, 1],
      [{ logLevel: 'warn' }, 0],
      [{ exchangeLog: false }, 0],
      [{ exchangeLog: 'debug' }, 0],
    ] as const) {
      const { app, lines } = loggedApp();
      await app.register(fastifyScgi, { upstream, prefix: '/app', ...opts });
      expect((await app.inject({ url: '/app/env' })).statusCode).toBe(200);
      await app.close();
      expect(responses(lines), JSON.stringify(opts)).toHaveLength(want);
      if (want === 1) {
        expect(responses(lines)[0]).toMatchObject({ level: 30, statusCode: 200, upstream });
      }
    }
  });

  it('a failure is logged once, under its own class name', async () => {
    const { app, lines } = loggedApp();
    await app.register(fastifyScgi, { upstream: `unix:${join(dir, 'nobody.sock')}` });
    const res = await app.inject({ url: '/x' });
    expect(res.statusCode).toBe(502);
    expect(res.json().code).toBe('SCGI_ERR_CONNECT');
    await app.close();
    const failures = lines.filter((l) => (l.err as { code?: string })?.code === 'SCGI_ERR_CONNECT');
    expect(failures).toHaveLength(1);
    expect(failures[0]!.err).toMatchObject({ type: 'ConnectError' });
    expect(JSON.stringify(lines)).not.toContain('FastifyError');
  });
});

describe('fastify: a pool per request', () => {
  const pools = () => ({ upstreams: { main: upstream, count: { upstream: countedUpstream } } });

  it('getUpstream picks a declared pool on the proxy routes', async () => {
    const app = Fastify();
    await app.register(fastifyScgi, {
      ...pools(),
      prefix: '/app',
      getUpstream: (request) => (request.headers['x-pool'] as string | undefined) ?? undefined,
    });
    const main = await app.inject({ url: '/app/env' });
    expect(main.json().SCRIPT_NAME).toBe('/app');
    const count = await app.inject({ url: '/app/env', headers: { 'x-pool': 'count' } });
    expect(count.body).toBe('counted /env');
    // A name from request data never makes a pool.
    const unknown = await app.inject({ url: '/app/env', headers: { 'x-pool': 'evil' } });
    expect(unknown.statusCode).toBe(500);
    expect(unknown.json().code).toBe('SCGI_ERR_UNKNOWN_UPSTREAM');
    await app.close();
  });

  it('reply.scgi({ upstream }) picks a declared pool on a route of your own', async () => {
    const app = Fastify();
    await app.register(fastifyScgi, { upstream, ...pools(), routes: false });
    app.get('/p/:pool', (request, reply) =>
      reply.scgi({ upstream: (request.params as { pool: string }).pool }),
    );
    expect((await app.inject({ url: '/p/count' })).body).toBe('counted /p/count');
    expect((await app.inject({ url: '/p/nope' })).json().code).toBe('SCGI_ERR_UNKNOWN_UPSTREAM');
    await app.close();
  });
});

describe('fastify: HTTP methods', () => {
  it('registering does not widen the methods of the app unless asked', async () => {
    const app = Fastify();
    const before = [...app.supportedMethods];
    await app.register(fastifyScgi, { upstream, prefix: '/app' });
    expect(app.supportedMethods).toEqual(before);
    expect((await app.inject({ method: 'PROPFIND' as 'GET', url: '/app/env' })).statusCode).toBe(
      404,
    );
    await app.close();

    const widened = Fastify();
    await widened.register(fastifyScgi, { upstream, prefix: '/app', methods: ['GET', 'MKCOL'] });
    const res = await widened.inject({ method: 'MKCOL' as 'GET', url: '/app/env' });
    expect(res.json().REQUEST_METHOD).toBe('MKCOL');
    expect((await widened.inject({ method: 'POST', url: '/app/env' })).statusCode).toBe(404);
    await widened.close();
  });

  it('refuses a method Node does not parse', async () => {
    const app = Fastify();
    await expect(app.register(fastifyScgi, { upstream, methods: ['FROB'] })).rejects.toMatchObject({
      code: 'SCGI_ERR_INVALID_OPTION',
      message: expect.stringContaining('a list of methods Node parses'),
    });
    await app.close();
  });
});

describe('express: logger and onError', () => {
  it('writes the line per exchange on `logger` and hands failures to onError', async () => {
    const lines: Array<[string, Record<string, unknown>, string?]> = [];
    const logger = {
      info: (o: object, m?: string) => lines.push(['info', o as Record<string, unknown>, m]),
      warn: (o: object, m?: string) => lines.push(['warn', o as Record<string, unknown>, m]),
      error: (o: object, m?: string) => lines.push(['error', o as Record<string, unknown>, m]),
    };
    const handled: string[] = [];
    const app = express();
    app.use('/app', scgiProxy({ upstream, logger }));
    app.use(
      '/down',
      scgiProxy({
        upstream: `unix:${join(dir, 'nobody.sock')}`,
        logger,
        onError: (err, _req, res) => {
          handled.push(`${err.name} ${err.code}`);
          res.status(599).end('handled');
        },
      }),
    );
    const front = await startExpressFront({ upstream }, 5, (a) => a.use(app));
    const ok = await fetch(`${front.url}/app/env`);
    expect((await ok.json()).SCRIPT_NAME).toBe('/app');
    const down = await fetch(`${front.url}/down/x`);
    expect(down.status).toBe(599);
    expect(await down.text()).toBe('handled');
    await front.close();
    expect(handled).toEqual(['ConnectError SCGI_ERR_CONNECT']);
    const exchange = lines.filter(([, , m]) => m === 'scgi response');
    expect(exchange).toHaveLength(1);
    expect(exchange[0]![1]).toMatchObject({ upstream, statusCode: 200 });
    expect(lines.filter(([, , m]) => m === 'scgi request failed')).toHaveLength(1);
  });
});

describe('byte sizes as strings', () => {
  it('resolves sizes as body-parser does, and refuses nonsense naming the option', () => {
    const o = resolveProxyOptions({
      upstream,
      maxBodySize: '10mb',
      spoolMemory: '512kb',
      maxHeadSize: '8KB',
      maxBufferedBody: 1000,
    });
    expect(o.maxBodySize).toBe(10 * 1024 * 1024);
    expect(o.spoolMemory).toBe(512 * 1024);
    expect(o.maxHeadSize).toBe(8192);
    expect(o.maxBufferedBody).toBe(1000);
    expect(() => resolveProxyOptions({ upstream, maxBodySize: '10 parsecs' })).toThrow(
      expect.objectContaining({
        code: 'SCGI_ERR_INVALID_OPTION',
        message: expect.stringContaining('maxBodySize'),
      }),
    );
  });

  it('a body over a maxBodySize given as a string is 413', async () => {
    const app = Fastify();
    await app.register(fastifyScgi, { upstream, prefix: '/app', maxBodySize: '1kb' });
    const small = await app.inject({
      method: 'POST',
      url: '/app/sha256',
      payload: 'x'.repeat(1024),
    });
    expect(small.json().length).toBe(1024);
    const big = await app.inject({ method: 'POST', url: '/app/sha256', payload: 'x'.repeat(1025) });
    expect(big.statusCode).toBe(413);
    expect(big.json().code).toBe('SCGI_ERR_BODY_TOO_LARGE');
    await app.close();
  });
});

describe('error classes', () => {
  it('every error class has its own name, for logs and consoles', () => {
    const classes = Object.entries(core).filter(
      ([, v]) =>
        typeof v === 'function' && v.prototype instanceof core.ScgiError && v !== core.ScgiError,
    ) as Array<[string, new (...a: unknown[]) => Error]>;
    expect(classes.length).toBe(core.listErrorCodes().length);
    for (const [exported, Class] of classes) {
      const err = new Class('a', 'b');
      expect(err.name).toBe(exported);
      expect(Class.name).toBe(exported);
      expect(String(err).startsWith(`${exported} [`)).toBe(true);
      expect(err.stack?.startsWith(`${exported}: `)).toBe(true);
      expect(err).toBeInstanceOf(core.ScgiError);
    }
  });
});
