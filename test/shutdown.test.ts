/**
 * Graceful shutdown through both adapters, against a Node SCGI backend: requests in flight finish,
 * new ones are refused with 503, `closeGrace` bounds the wait (what is left is cut), and no
 * health-check timer or probe survives the close.
 */
import type { Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import express from 'express';
import { scgiProxy } from 'express-scgi';
import { afterEach, describe, expect, it } from 'vitest';
import { startFastifyFront } from './helpers/fronts.js';
import {
  errorCode,
  eventually,
  type NodeBackend,
  resourceCounts,
  send,
  startNodeBackend,
} from './helpers/pool.js';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const HEALTH = { interval: 100, path: '/status/200' } as const;

/** A Node backend that counts health probes, and whose /hang sends a head and part of a body. */
async function backend(): Promise<NodeBackend & { probes: () => number; last: () => Socket }> {
  let probes = 0;
  let last: Socket | null = null;
  const b = await startNodeBackend('a', 'unix', (req, res, next) => {
    if (req.env.PATH_INFO === '/status/200' && req.env.HTTP_USER_AGENT === 'scgi-core-health-check')
      probes++;
    else last = req.socket;
    if (req.env.PATH_INFO !== '/hang') return next();
    req.resume();
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 1000 });
    res.write('part of a body\n');
  });
  cleanups.push(() => b.kill());
  return Object.assign(b, { probes: () => probes, last: () => last! });
}

/** The health checks have stopped: no probe arrives for 300 ms, no timer is left. */
async function expectChecksStopped(b: { probes: () => number }, timeoutsBefore: number) {
  const seen = b.probes();
  await delay(300);
  expect(b.probes()).toBe(seen);
  const after = await eventually(resourceCounts, (c) => c.timeout <= timeoutsBefore, 1000);
  expect(after.timeout).toBeLessThanOrEqual(timeoutsBefore);
}

describe('Fastify: app.close()', () => {
  it('lets a request in flight finish 200; a new request meanwhile gets 503; checks stop', async () => {
    const b = await backend();
    const timeouts = resourceCounts().timeout;
    const front = await startFastifyFront({ upstream: b.address, healthCheck: HEALTH });
    await eventually(b.probes, (n) => n >= 1, 1000);
    const proxy = front.app.scgiProxy;
    const inFlight = send(`${front.url}/slow?delay=1`);
    await eventually(
      () => proxy.inFlight,
      (n) => n === 1,
      1000,
    );
    const started = Date.now();
    const closing = front.app.close();
    await delay(50);
    const late = await send(`${front.url}/status/200`);
    // Fastify itself answers 503 while it closes (the proxy routes are closed already).
    expect([late.status, late.headers.connection]).toEqual([503, 'close']);
    const first = await inFlight;
    expect(first).toMatchObject({ status: 200, cut: false });
    expect(JSON.parse(first.body.toString())).toEqual({ slept: 1000 });
    await closing;
    expect(Date.now() - started).toBeGreaterThan(800);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(proxy.inFlight).toBe(0);
    await expectChecksStopped(b, timeouts);
  });

  it('closeGrace 200: close() ends within ~1 s; a request still waiting for its head gets 503', async () => {
    const b = await backend();
    const timeouts = resourceCounts().timeout;
    const front = await startFastifyFront({
      upstream: b.address,
      closeGrace: 200,
      healthCheck: HEALTH,
    });
    const proxy = front.app.scgiProxy;
    const waiting = send(`${front.url}/slow?delay=5`);
    await eventually(
      () => proxy.inFlight,
      (n) => n === 1,
      1000,
    );
    const started = Date.now();
    await front.app.close();
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(180);
    expect(took).toBeLessThan(1000);
    const r = await waiting;
    // No head yet: the exchange fails with SCGI_ERR_CLOSING, answered 503 (never a clean 200).
    expect([r.status, errorCode(r)]).toEqual([503, 'SCGI_ERR_CLOSING']);
    expect(proxy.inFlight).toBe(0);
    // The proxy closed its connection to the backend (the backend sees EOF; the Node SCGI
    // server allows half-open connections, so the socket itself stays until the app answers).
    expect(
      await eventually(
        () => b.last().readableEnded,
        (x) => x,
        500,
      ),
    ).toBe(true);
    await expectChecksStopped(b, timeouts);
  });

  it('closeGrace 200 with a response streaming (maxBufferedBody 0): the client connection is cut', async () => {
    const b = await backend();
    const front = await startFastifyFront({
      upstream: b.address,
      closeGrace: 200,
      maxBufferedBody: 0,
    });
    const proxy = front.app.scgiProxy;
    const streaming = send(`${front.url}/hang`);
    await eventually(
      () => b.active,
      (n) => n === 1,
      1000,
    );
    await delay(50);
    const started = Date.now();
    await front.app.close();
    expect(Date.now() - started).toBeLessThan(1000);
    const r = await streaming;
    expect(r).toMatchObject({ status: 200, cut: true });
    expect(r.body.toString()).toBe('part of a body\n');
    expect(proxy.inFlight).toBe(0);
  });

  it('closeGrace 200 with a small body still being collected: 503 SCGI_ERR_CLOSING, none of the body', async () => {
    const b = await backend();
    const front = await startFastifyFront({ upstream: b.address, closeGrace: 200 });
    const proxy = front.app.scgiProxy;
    const collecting = send(`${front.url}/hang`);
    await eventually(
      () => b.active,
      (n) => n === 1,
      1000,
    );
    await delay(50);
    const started = Date.now();
    await front.app.close();
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(180);
    expect(took).toBeLessThan(1000);
    const r = await collecting;
    expect([r.status, r.cut, errorCode(r)]).toEqual([503, false, 'SCGI_ERR_CLOSING']);
    expect(r.body.toString()).not.toContain('part of a body');
    expect(proxy.inFlight).toBe(0);
    expect(
      await eventually(
        () => b.last().readableEnded,
        (x) => x,
        500,
      ),
    ).toBe(true);
  });
});

describe('Express: mw.close()', () => {
  async function expressFront(options: Parameters<typeof scgiProxy>[0]) {
    const mw = scgiProxy({ respondOnError: true, ...options });
    const app = express();
    app.use(mw);
    const server: Server = await new Promise((r) => {
      const s = app.listen(0, '127.0.0.1', () => r(s));
    });
    cleanups.push(
      () =>
        new Promise<void>((r) => {
          server.closeAllConnections();
          server.close(() => r());
        }),
    );
    return { mw, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
  }

  it('in-flight requests complete; new proxied requests get 503 SCGI_ERR_CLOSING; checks stop', async () => {
    const b = await backend();
    const timeouts = resourceCounts().timeout;
    const { mw, url } = await expressFront({ upstream: b.address, healthCheck: HEALTH });
    await eventually(b.probes, (n) => n >= 1, 1000);
    const inFlight = send(`${url}/slow?delay=0.5`);
    await eventually(
      () => mw.proxy.inFlight,
      (n) => n === 1,
      1000,
    );
    const closing = mw.close();
    const late = await send(`${url}/status/200`);
    expect([late.status, errorCode(late)]).toEqual([503, 'SCGI_ERR_CLOSING']);
    const first = await inFlight;
    expect(first).toMatchObject({ status: 200, cut: false });
    expect(JSON.parse(first.body.toString())).toEqual({ slept: 500 });
    await closing;
    expect(mw.stats().backends[0]!.active).toBe(0);
    await expectChecksStopped(b, timeouts);
  });

  it('mw.close(grace) cuts what is still streaming (maxBufferedBody 0) after the grace period', async () => {
    const b = await backend();
    const { mw, url } = await expressFront({ upstream: b.address, maxBufferedBody: 0 });
    const streaming = send(`${url}/hang`);
    await eventually(
      () => b.active,
      (n) => n === 1,
      1000,
    );
    await delay(50);
    const started = Date.now();
    await mw.close(100);
    expect(Date.now() - started).toBeLessThan(500);
    const r = await streaming;
    expect(r).toMatchObject({ status: 200, cut: true });
    expect(r.body.toString()).toBe('part of a body\n');
    expect(mw.proxy.inFlight).toBe(0);
  });

  it('mw.close(grace) answers 503 SCGI_ERR_CLOSING to a small body still being collected', async () => {
    const b = await backend();
    const { mw, url } = await expressFront({ upstream: b.address });
    const collecting = send(`${url}/hang`);
    await eventually(
      () => b.active,
      (n) => n === 1,
      1000,
    );
    await delay(50);
    const started = Date.now();
    await mw.close(100);
    expect(Date.now() - started).toBeLessThan(500);
    const r = await collecting;
    expect([r.status, r.cut, errorCode(r)]).toEqual([503, false, 'SCGI_ERR_CLOSING']);
    expect(r.body.toString()).not.toContain('part of a body');
    expect(mw.proxy.inFlight).toBe(0);
  });
});
