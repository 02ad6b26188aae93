/** fastify-scgi's ready-made health route (engine/health-report.ts in scgi-core holds the rules). */
import type { FastifyInstance, RouteOptions } from 'fastify';
import type { ScgiProxy } from 'scgi-core';
import { publicHealth } from 'scgi-core/adapter';

/**
 * A ready-made health route: `app.route(scgiHealthRoute('/healthz'))` answers 200 while a backend
 * can take a request and 503 when none can or the proxy is closing, with
 * `{ status, up, total }` (no backend addresses). `proxy` defaults to the instance's
 * `scgiProxy`.
 */
export function scgiHealthRoute(url: string, proxy?: ScgiProxy): RouteOptions {
  return {
    method: 'GET',
    url,
    handler(this: FastifyInstance, _request, reply) {
      const health = (proxy ?? this.scgiProxy).health();
      reply.code(health.status === 'up' ? 200 : 503).header('cache-control', 'no-store');
      return reply.send(publicHealth(health));
    },
  };
}
