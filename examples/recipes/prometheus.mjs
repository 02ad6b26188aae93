// Prometheus metrics for scgi-core, fastify-scgi and express-scgi, with prom-client
// (`npm install prom-client`): copy this file into your app. Built on the `scgi-core:request`
// TracingChannel (one event per request start and end, see docs/production.md) and on
// `proxy.stats()` (read when Prometheus scrapes), so the proxy itself needs no metrics code.
//
//   import { instrumentScgi } from './prometheus.mjs';
//   const stop = instrumentScgi(() => app.scgiProxy.stats(), { registry });   // Fastify
//   const stop = instrumentScgi(() => mw.stats(), { registry });              // Express
//   app.get('/metrics', async () => registry.metrics());
import diagnosticsChannel from 'node:diagnostics_channel';
import { Counter, register as defaultRegistry, Gauge, Histogram } from 'prom-client';

/**
 * Registers the metrics and subscribes to the tracing channel; returns a function that
 * unsubscribes and unregisters them.
 * - `scgi_requests_total{status,upstream}`: requests by final status (the backend's, or the
 *   error's for a failure before the head) and backend (`none` when none answered).
 * - `scgi_request_duration_seconds{upstream}`: from `proxy.request()` to the end of the body.
 * - `scgi_upstream_up{upstream}`, `scgi_upstream_active{upstream}`, `scgi_queue_length`: the
 *   pool as `stats()` sees it at scrape time.
 */
export function instrumentScgi(stats, { registry = defaultRegistry, prefix = 'scgi_' } = {}) {
  const registers = [registry];
  const requests = new Counter({
    name: `${prefix}requests_total`,
    help: 'Proxied requests by status and upstream',
    labelNames: ['status', 'upstream'],
    registers,
  });
  const duration = new Histogram({
    name: `${prefix}request_duration_seconds`,
    help: 'Time from the request entering the proxy to the end of the response body',
    labelNames: ['upstream'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers,
  });
  const up = new Gauge({
    name: `${prefix}upstream_up`,
    help: '1 when the backend may take requests, 0 when it is marked down',
    labelNames: ['upstream'],
    registers,
    collect() {
      this.reset();
      for (const b of stats().backends) {
        this.set({ upstream: b.address }, b.healthy && b.state !== 'down' ? 1 : 0);
      }
    },
  });
  const active = new Gauge({
    name: `${prefix}upstream_active`,
    help: 'Requests in progress per backend',
    labelNames: ['upstream'],
    registers,
    collect() {
      this.reset();
      for (const b of stats().backends) this.set({ upstream: b.address }, b.active);
    },
  });
  const queue = new Gauge({
    name: `${prefix}queue_length`,
    help: 'Requests waiting for a free backend slot',
    registers,
    collect() {
      this.set(stats().queued);
    },
  });

  // The context object is the same for every event of one request: keep the start time on it.
  const started = new WeakMap();
  const handlers = {
    start(ctx) {
      started.set(ctx, process.hrtime.bigint());
    },
    asyncEnd(ctx) {
      const t0 = started.get(ctx);
      if (t0 === undefined) return;
      const upstream = ctx.upstream ?? 'none';
      const status = ctx.statusCode ?? ctx.error?.statusCode ?? 500;
      requests.inc({ status: String(status), upstream });
      duration.observe({ upstream }, Number(process.hrtime.bigint() - t0) / 1e9);
    },
  };
  const tracing = diagnosticsChannel.tracingChannel('scgi-core:request');
  tracing.subscribe(handlers);
  return () => {
    tracing.unsubscribe(handlers);
    for (const m of [requests, duration, up, active, queue]) {
      registry.removeSingleMetric(m.name);
    }
  };
}
