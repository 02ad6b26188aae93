/**
 * The Prometheus recipe of docs/production.md (examples/recipes/prometheus.mjs), run as a user
 * would: prom-client's registry, the tracing channel and `stats()`, requests through fastify-scgi
 * to a real backend and to a dead one; the scrape must count them by status and upstream, time
 * them, and show the pool.
 */
import type { AddressInfo, Server as NetServer } from 'node:net';
import { Registry } from 'prom-client';
import { createScgiServer } from 'scgi-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error: a plain .mjs recipe without types, as users copy it
import { instrumentScgi } from '../examples/recipes/prometheus.mjs';
import { type Front, startFastifyFront } from './helpers/fronts.js';
import { rawRequest } from './helpers/http.js';

let backend: NetServer;
let live: string;
let deadAddress: string;

beforeAll(async () => {
  // /app/404 answers 404; anything else 200.
  backend = createScgiServer((req) => {
    const status = req.env.PATH_INFO === '/404' ? '404 Not Found' : '200 OK';
    req.socket.end(`Status: ${status}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok`);
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  live = `127.0.0.1:${(backend.address() as AddressInfo).port}`;
  const gone = createScgiServer(() => {});
  await new Promise<void>((r) => gone.listen(0, '127.0.0.1', r));
  deadAddress = `127.0.0.1:${(gone.address() as AddressInfo).port}`;
  await new Promise<void>((r) => gone.close(() => r()));
});
afterAll(() => new Promise<void>((r) => backend.close(() => r())));

const get = (front: Front, path: string) =>
  rawRequest(front.url, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);

describe('Prometheus recipe', () => {
  it('counts requests by status and upstream, times them, and shows the pool', async () => {
    const registry = new Registry();
    const front = await startFastifyFront({ upstream: live, prefix: '/app' }, (app) => {
      app.get('/metrics', async (_req, reply) => {
        reply.type(registry.contentType);
        return registry.metrics();
      });
    });
    const failing = await startFastifyFront({ upstream: deadAddress, prefix: '/app' });
    const stop = instrumentScgi(
      () =>
        (front as unknown as { app: { scgiProxy: { stats(): unknown } } }).app.scgiProxy.stats(),
      { registry },
    );
    try {
      for (let i = 0; i < 3; i++) expect((await get(front, '/app/ok')).statusCode).toBe(200);
      expect((await get(front, '/app/404')).statusCode).toBe(404);
      expect((await get(failing, '/app/x')).statusCode).toBe(502);

      const scrape = await get(front, '/metrics');
      expect(scrape.statusCode).toBe(200);
      const text = scrape.body.toString();
      expect(text).toContain(`scgi_requests_total{status="200",upstream="${live}"} 3`);
      expect(text).toContain(`scgi_requests_total{status="404",upstream="${live}"} 1`);
      expect(text).toContain(`scgi_requests_total{status="502",upstream="${deadAddress}"} 1`);
      expect(text).toContain(`scgi_request_duration_seconds_count{upstream="${live}"} 4`);
      expect(text).toContain(`scgi_request_duration_seconds_count{upstream="${deadAddress}"} 1`);
      expect(text).toMatch(
        new RegExp(`scgi_request_duration_seconds_bucket\\{le="\\+Inf",upstream="${live}"\\} 4`),
      );
      expect(text).toContain(`scgi_upstream_up{upstream="${live}"} 1`);
      expect(text).toContain(`scgi_upstream_active{upstream="${live}"} 0`);
      expect(text).toContain('scgi_queue_length 0');
    } finally {
      stop();
      await front.close();
      await failing.close();
    }
    // Unsubscribed and unregistered: nothing is counted any more.
    expect(await registry.metrics()).toBe('\n');
  });
});
