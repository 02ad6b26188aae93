// A backend that restarts (issue 16): once every backend failed the way a restart looks (refused,
// socket missing, reset or closed before the head), an idempotent request waits up to
// `retryDelay` (full jitter) and tries the same backend again, within `retryTimeout` and
// `maxTries`; a POST is not resent; the client going away ends the wait with no timer left.
import diagnosticsChannel from 'node:diagnostics_channel';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createScgiServer, ScgiProxy, type ScgiProxyOptions } from '../src/index.js';
import { get, serveProxy } from './http-client.js';

const dir = mkdtempSync(join(tmpdir(), 'scgi-rl-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const socketPath = () => join(dir, `b${++n}.sock`);

/** Attempts per request URL, from the engine's `upstream` channel. */
const attempts = new Map<string, number>();
const onUpstream = (m: unknown) => {
  const url = (m as { request: IncomingMessage }).request.url ?? '';
  attempts.set(url, (attempts.get(url) ?? 0) + 1);
};
diagnosticsChannel.subscribe('scgi-core:request:upstream', onUpstream);
afterAll(() => diagnosticsChannel.unsubscribe('scgi-core:request:upstream', onUpstream));

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A node:http front over a new proxy (serveProxy), closed after the test. */
async function front(opts: ScgiProxyOptions) {
  const proxy = new ScgiProxy(opts);
  const served = await serveProxy(proxy);
  cleanups.push(() => served.close());
  return { proxy, port: served.port };
}

function backendAt(path: string): Promise<NetServer> {
  const server = createScgiServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('back');
  });
  return new Promise((resolve) => {
    server.listen(path, () => resolve(server));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  });
}

describe('trying the same backend again after a restart-like failure', () => {
  it('a GET sent while the socket is missing is answered once the backend is back', async () => {
    const path = socketPath();
    const { port } = await front({ upstream: `unix:${path}`, retryDelay: 50 });
    const started = Date.now();
    const reply = get(port, '/while-down');
    await new Promise((r) => setTimeout(r, 300)); // the backend comes back 300 ms later
    await backendAt(path);
    const got = await reply;
    expect(got.status).toBe(200);
    expect(got.body.toString()).toBe('back');
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(attempts.get('/while-down')).toBeGreaterThan(1);
  });

  it('a POST is not resent: 502 SCGI_ERR_CONNECT after one attempt', async () => {
    const { port } = await front({ upstream: `unix:${socketPath()}`, retryDelay: 50 });
    const got = await get(port, '/post-down', 'POST', Buffer.from('x=1'));
    expect(got.status).toBe(502);
    expect(got.headers['x-error']).toBe('SCGI_ERR_CONNECT');
    expect(attempts.get('/post-down')).toBe(1);
  });

  it('retryTimeout bounds the waits: 502 once it has passed', async () => {
    const { port } = await front({
      upstream: `unix:${socketPath()}`,
      retryDelay: 40,
      retryTimeout: 400,
    });
    const started = Date.now();
    const got = await get(port, '/timeout');
    const took = Date.now() - started;
    expect(got.status).toBe(502);
    expect(got.headers['x-error']).toBe('SCGI_ERR_CONNECT');
    expect(took).toBeGreaterThanOrEqual(400);
    expect(took).toBeLessThan(2000);
    expect(attempts.get('/timeout')).toBeGreaterThan(2);
  });

  it('a backend down for longer than retryTimeout is not waited on: 502 at once, until it is back', async () => {
    const path = socketPath();
    const { port, proxy } = await front({
      upstream: `unix:${path}`,
      retryDelay: 40,
      retryTimeout: 400,
    });
    // The outage starts with this request, which waits out its retryTimeout.
    const first = Date.now();
    expect((await get(port, '/first')).status).toBe(502);
    expect(Date.now() - first).toBeGreaterThanOrEqual(400);
    // The backend has failed for longer than retryTimeout: down, not restarting.
    for (const url of ['/later-1', '/later-2']) {
      const started = Date.now();
      const got = await get(port, url);
      expect(got.status).toBe(502);
      expect(got.headers['x-error']).toBe('SCGI_ERR_CONNECT');
      expect(Date.now() - started).toBeLessThan(200);
      expect(attempts.get(url)).toBe(1); // still tried once: how the end of the outage is seen
    }
    // Back: the next request is answered, and the outage is over for the requests after it.
    const backend = await backendAt(path);
    expect((await get(port, '/back')).status).toBe(200);
    expect(proxy.stats().backends[0]!.failed).toBeGreaterThanOrEqual(3);
    // A restart after that is a new outage: waited on again.
    await new Promise<void>((r) => backend.close(() => r()));
    const restarted = Date.now();
    const again = get(port, '/restart-again');
    await new Promise((r) => setTimeout(r, 150));
    await backendAt(path);
    expect((await again).status).toBe(200);
    expect(Date.now() - restarted).toBeGreaterThanOrEqual(150);
  });

  it('maxTries caps the attempts', async () => {
    const { port } = await front({ upstream: `unix:${socketPath()}`, retryDelay: 5, maxTries: 3 });
    const got = await get(port, '/capped');
    expect(got.status).toBe(502);
    expect(attempts.get('/capped')).toBe(3);
  });

  it('retryDelay: 0 turns the waits off (one attempt, as nginx)', async () => {
    const { port } = await front({ upstream: `unix:${socketPath()}`, retryDelay: 0 });
    const got = await get(port, '/no-wait');
    expect(got.status).toBe(502);
    expect(attempts.get('/no-wait')).toBe(1);
  });

  it('a timeout is not a restart: not tried again', async () => {
    const path = socketPath();
    const silent = createScgiServer((req) => req.resume()); // never answers
    const held = new Set<Socket>();
    silent.on('connection', (s) => held.add(s));
    await new Promise<void>((r) => silent.listen(path, r));
    cleanups.push(async () => {
      for (const s of held) s.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    });
    const { port } = await front({ upstream: `unix:${path}`, retryDelay: 5, headersTimeout: 100 });
    const got = await get(port, '/slow');
    expect(got.headers['x-error']).toBe('SCGI_ERR_HEADERS_TIMEOUT');
    expect(attempts.get('/slow')).toBe(1);
  });

  it('the client going away ends the wait at once and leaves no timer', async () => {
    const timers = () => process.getActiveResourcesInfo().filter((x) => x === 'Timeout').length;
    const { proxy } = await front({
      upstream: `unix:${socketPath()}`,
      retryDelay: 60_000,
      retryTimeout: 120_000,
    });
    const before = timers();
    const controller = new AbortController();
    // A real request object from a real connection, proxied with the caller's signal.
    const seen = new Promise<IncomingMessage>((resolve) => {
      const s = createServer((req) => resolve(req));
      s.listen(0, '127.0.0.1', () => {
        get((s.address() as AddressInfo).port, '/abandoned').catch(() => {});
      });
      cleanups.push(async () => {
        s.closeAllConnections();
        await new Promise<void>((r) => s.close(() => r()));
      });
    });
    const req = await seen;
    const pending = proxy.request(req, { signal: controller.signal });
    await new Promise((r) => setTimeout(r, 100)); // inside the first wait
    expect(attempts.get('/abandoned')).toBe(1);
    const aborted = Date.now();
    controller.abort();
    await expect(pending).rejects.toMatchObject({ code: 'SCGI_ERR_REQUEST_ABORTED' });
    expect(Date.now() - aborted).toBeLessThan(1000);
    expect(timers()).toBeLessThanOrEqual(before);
  });
});
