/**
 * What operators see of the pool: `stats()` after a known sequence of requests, the
 * `node:diagnostics_channel` events of one request (in order, one id, one `:upstream` per try),
 * and Fastify's log line per proxied exchange (upstream, status, connect/head/total timings).
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import Fastify from 'fastify';
import fastifyScgi from 'fastify-scgi';
import { afterEach, describe, expect, it } from 'vitest';
import { startFastifyFront } from './helpers/fronts.js';
import { errorCode, eventually, type NodeBackend, send, startNodeBackend } from './helpers/pool.js';
import { makeTempDir } from './helpers/tmp.js';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function backend(name: string): Promise<NodeBackend> {
  const b = await startNodeBackend(name);
  cleanups.push(() => b.kill());
  return b;
}
const missing = () => `unix:${join(makeTempDir('scgi-pl-'), 'missing.sock')}`;

interface Event {
  channel: string;
  id: number;
  url: string;
  upstream?: string;
  attempt?: number;
  statusCode?: number;
  headMs?: number;
  code?: string;
}

const CHANNELS = ['start', 'upstream', 'head', 'end', 'error'] as const;

/** Records every scgi-core:request:* event until the test ends. */
function record(): Event[] {
  const events: Event[] = [];
  for (const name of CHANNELS) {
    const fn = (m: unknown) => {
      const msg = m as {
        id: number;
        request: { url?: string };
        upstream?: string;
        attempt?: number;
        statusCode?: number;
        timings?: { head: number };
        error?: { code: string };
      };
      events.push({
        channel: name,
        id: msg.id,
        url: msg.request.url ?? '',
        upstream: msg.upstream,
        attempt: msg.attempt,
        statusCode: msg.statusCode,
        headMs: msg.timings?.head,
        code: msg.error?.code,
      });
    };
    diagnosticsChannel.subscribe(`scgi-core:request:${name}`, fn);
    cleanups.push(() => diagnosticsChannel.unsubscribe(`scgi-core:request:${name}`, fn));
  }
  return events;
}

/** The events of the request whose URL is `url`, as `channel:upstream:attempt`. */
function trace(events: Event[], url: string): string[] {
  const id = events.find((e) => e.channel === 'start' && e.url === url)?.id;
  expect(id, `no start event for ${url}`).toBeDefined();
  return events
    .filter((e) => e.id === id)
    .map((e) =>
      [e.channel, e.upstream ?? '', e.attempt ?? e.statusCode ?? e.code ?? ''].join(' ').trim(),
    );
}

describe('stats()', () => {
  it('after a known sequence, bodies streamed (maxBufferedBody 0): state, active, served, failed, lastError, latencyEwma', async () => {
    const a = await backend('a');
    const dead = missing();
    const events = record();
    const front = await startFastifyFront({
      upstream: [a.address, dead],
      failTimeout: 60_000,
      maxBufferedBody: 0,
    });
    cleanups.push(() => front.close());
    const fresh = front.app.scgiProxy.stats();
    expect(fresh).toEqual({
      queued: 0,
      backends: [a.address, dead].map((address) => ({
        address,
        state: 'up',
        healthy: true,
        weight: 1,
        maxConnections: 0,
        active: 0,
        idle: 0,
        served: 0,
        failed: 0,
        lastError: null,
        latencyEwma: null,
      })),
    });
    expect((await send(`${front.url}/status/200?n=1`)).status).toBe(200); // a
    expect((await send(`${front.url}/status/200?n=2`)).status).toBe(200); // dead, then a
    expect((await send(`${front.url}/status/404?n=3`)).status).toBe(404); // a: an answer
    const cut = await send(`${front.url}/crash?after=10&cl=1`); // a: head, then a short body
    expect(cut).toMatchObject({ status: 200, cut: true });
    const s = await eventually(
      () => front.app.scgiProxy.stats(),
      (x) => x.backends[0]!.active === 0,
    );
    // The EWMA of the head times, in the order the exchanges ended (0.2 weight for the newest).
    const heads = events.filter((e) => e.channel === 'head').map((e) => e.headMs!);
    expect(heads.length).toBe(4);
    const ewma = heads.reduce((acc, h, i) => (i === 0 ? h : acc * 0.8 + h * 0.2));
    expect(s.queued).toBe(0);
    expect(s.backends[0]).toEqual({
      address: a.address,
      state: 'up',
      healthy: true,
      weight: 1,
      maxConnections: 0,
      active: 0,
      idle: 0,
      served: 4,
      failed: 0,
      // The body cut short is the backend's fault too, though it does not count against health.
      lastError: 'SCGI_ERR_UPSTREAM_BODY',
      latencyEwma: expect.closeTo(ewma, 6),
    });
    expect(s.backends[0]!.latencyEwma).toBeGreaterThan(0);
    expect(s.backends[1]).toEqual({
      address: dead,
      state: 'down',
      healthy: true,
      weight: 1,
      maxConnections: 0,
      active: 0,
      idle: 0,
      served: 0,
      failed: 1,
      lastError: 'SCGI_ERR_CONNECT',
      latencyEwma: null,
    });
  });
  it('after a known sequence, small bodies buffered (default): a body cut short is a 502 and no answer', async () => {
    const a = await backend('a');
    const dead = missing();
    const events = record();
    const front = await startFastifyFront({ upstream: [a.address, dead], failTimeout: 60_000 });
    cleanups.push(() => front.close());
    expect((await send(`${front.url}/status/200?n=1`)).status).toBe(200); // a
    expect((await send(`${front.url}/status/200?n=2`)).status).toBe(200); // dead, then a
    expect((await send(`${front.url}/status/404?n=3`)).status).toBe(404); // a: an answer
    // a: head, then a short body; collected whole, so nothing reached the client: a clean 502.
    const failed = await send(`${front.url}/crash?after=10&cl=1`);
    expect([failed.status, failed.cut, errorCode(failed)]).toEqual([
      502,
      false,
      'SCGI_ERR_UPSTREAM_BODY',
    ]);
    const s = await eventually(
      () => front.app.scgiProxy.stats(),
      (x) => x.backends[0]!.active === 0,
    );
    // Only the three answers published a head; the failed exchange adds no latency sample.
    const heads = events.filter((e) => e.channel === 'head').map((e) => e.headMs!);
    expect(heads.length).toBe(3);
    const ewma = heads.reduce((acc, h, i) => (i === 0 ? h : acc * 0.8 + h * 0.2));
    expect(s.queued).toBe(0);
    expect(s.backends[0]).toEqual({
      address: a.address,
      state: 'up',
      healthy: true,
      weight: 1,
      maxConnections: 0,
      active: 0,
      idle: 0,
      // The cut-short body is no answer for the pool (not served) and, as a body failure, not
      // a health failure either.
      served: 3,
      failed: 0,
      lastError: 'SCGI_ERR_UPSTREAM_BODY',
      latencyEwma: expect.closeTo(ewma, 6),
    });
    expect(s.backends[1]).toMatchObject({
      address: dead,
      state: 'down',
      served: 0,
      failed: 1,
      lastError: 'SCGI_ERR_CONNECT',
    });
  });
});

describe('diagnostics_channel', () => {
  it('start, upstream, head, end in order with one id; a failover publishes upstream twice; a small body cut short publishes error', async () => {
    const a = await backend('a');
    const dead = missing();
    const events = record();
    const front = await startFastifyFront({ upstream: [a.address, dead], failTimeout: 60_000 });
    // No waits for a restart (retryDelay): the lone dead backend is tried once.
    const lone = await startFastifyFront({ upstream: dead, retryDelay: 0 });
    // Bodies stream as they arrive: a failure after the head reaches the client as a cut.
    const streamed = await startFastifyFront({ upstream: a.address, maxBufferedBody: 0 });
    cleanups.push(
      () => front.close(),
      () => lone.close(),
      () => streamed.close(),
    );
    // Bodies of every size: a head with the whole body in one read, a head alone, no body.
    await send(`${front.url}/status/200?n=1`); // a
    await send(`${front.url}/stream?bytes=300000&cl=1&n=2`); // dead, then a
    await send(`${front.url}/status/204?n=3`); // a
    await send(`${streamed.url}/crash?after=10&cl=1&n=4`); // a: body cut after the head
    const failed = await send(`${lone.url}/env?n=5`);
    // a: a small body cut short while it was collected: no head went out, an error instead.
    const bodyFailed = await send(`${front.url}/crash?after=10&cl=1&n=6`);
    expect(errorCode(failed)).toBe('SCGI_ERR_CONNECT');
    expect([bodyFailed.status, errorCode(bodyFailed)]).toEqual([502, 'SCGI_ERR_UPSTREAM_BODY']);
    await eventually(
      () => events.filter((e) => e.channel === 'end').length,
      (n) => n === 4,
    );
    expect(trace(events, '/status/200?n=1')).toEqual([
      'start',
      `upstream ${a.address} 1`,
      `head ${a.address} 200`,
      `end ${a.address}`,
    ]);
    expect(trace(events, '/stream?bytes=300000&cl=1&n=2')).toEqual([
      'start',
      `upstream ${dead} 1`,
      `upstream ${a.address} 2`,
      `head ${a.address} 200`,
      `end ${a.address}`,
    ]);
    expect(trace(events, '/status/204?n=3')).toEqual([
      'start',
      `upstream ${a.address} 1`,
      `head ${a.address} 204`,
      `end ${a.address}`,
    ]);
    expect(trace(events, '/crash?after=10&cl=1&n=4')).toEqual([
      'start',
      `upstream ${a.address} 1`,
      `head ${a.address} 200`,
      `end ${a.address} SCGI_ERR_UPSTREAM_BODY`,
    ]);
    expect(trace(events, '/env?n=5')).toEqual([
      'start',
      `upstream ${dead} 1`,
      `error ${dead} SCGI_ERR_CONNECT`,
    ]);
    expect(trace(events, '/crash?after=10&cl=1&n=6')).toEqual([
      'start',
      `upstream ${a.address} 1`,
      `error ${a.address} SCGI_ERR_UPSTREAM_BODY`,
    ]);
    // Exactly four exchanges ended with an answer.
    expect(events.filter((e) => e.channel === 'end').length).toBe(4);
  });
});

describe('Fastify logs', () => {
  it('one info line per proxied exchange with the upstream, status and connect/head/total', async () => {
    const a = await backend('a');
    const lines: Array<Record<string, unknown>> = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
        cb();
      },
    });
    const app = Fastify({ logger: { level: 'info', stream } });
    await app.register(fastifyScgi, { upstream: a.address });
    await app.listen({ port: 0, host: '127.0.0.1' });
    cleanups.push(() => app.close());
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    expect((await send(`${url}/stream?bytes=200000`)).status).toBe(200);
    expect((await send(`${url}/status/503`)).status).toBe(503);
    const logged = await eventually(
      () => lines.filter((l) => l.msg === 'scgi response'),
      (l) => l.length === 2,
    );
    expect(logged.map((l) => [l.level, l.upstream, l.statusCode])).toEqual([
      [30, a.address, 200],
      [30, a.address, 503],
    ]);
    for (const l of logged) {
      const t = l.timings as { connect: number; head: number; total: number };
      expect(t.connect).toBeGreaterThanOrEqual(0);
      expect(t.head).toBeGreaterThanOrEqual(t.connect);
      expect(t.total).toBeGreaterThanOrEqual(t.head);
      // Each line belongs to its request (Fastify's request logger adds reqId).
      expect(l.reqId).toBeDefined();
    }
  });

  it('one line too when onResponse sends its own reply, for a body collected whole or streamed', async () => {
    const a = await backend('a');
    const lines: Array<Record<string, unknown>> = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
        cb();
      },
    });
    const app = Fastify({ logger: { level: 'info', stream } });
    await app.register(fastifyScgi, {
      upstream: a.address,
      onResponse: (_request, reply, response) => {
        // Replaces the backend's answer; a streamed body must then be consumed or destroyed.
        if (response.bodyBuffer === null) response.body.destroy();
        reply.code(299).send('replaced');
      },
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    cleanups.push(() => app.close());
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    for (const path of ['/status/200', '/stream?bytes=200000&cl=1']) {
      const res = await send(`${url}${path}`);
      expect([res.status, res.body.toString()]).toEqual([299, 'replaced']);
    }
    const logged = await eventually(
      () => lines.filter((l) => l.msg === 'scgi response'),
      (l) => l.length === 2,
    );
    expect(logged.map((l) => [l.level, l.upstream, l.statusCode])).toEqual([
      [30, a.address, 200],
      [30, a.address, 200],
    ]);
    await eventually(
      () => app.scgiProxy.inFlight,
      (n) => n === 0,
    );
    expect(app.scgiProxy.stats().backends[0]!.active).toBe(0);
  });
});
