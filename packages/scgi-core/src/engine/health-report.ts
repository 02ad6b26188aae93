/**
 * What `ScgiProxy.health()` reports: whether any backend can take a request now, for a load
 * balancer's or an orchestrator's probe (a readiness check, nginx Plus's `health_check`
 * answered from the front). Built from the pool's `stats()`; the ready-made routes of the
 * adapters answer 200 or 503 from it without naming backend addresses.
 */
import type { BackendState, PoolStats } from '../upstream/pool.js';

export interface ProxyHealth {
  /** `up` while at least one backend may take a request and the proxy is not closing. */
  readonly status: 'up' | 'down';
  /** The proxy is shutting down (then `down`, so probes stop sending traffic). */
  readonly closing: boolean;
  /** Backends that may take a request: not marked down by failures nor by the health check. */
  readonly up: number;
  readonly total: number;
  readonly backends: ReadonlyArray<{
    /** Canonical address (for operators: never put it in a public response). */
    readonly address: string;
    readonly state: BackendState;
    readonly healthy: boolean;
    readonly active: number;
  }>;
}

/** A backend being probed after its fail window may take the next request, so it counts as up. */
export function healthReport(stats: PoolStats, closing: boolean): ProxyHealth {
  // A member that left (draining) finishes its requests but takes no new one.
  const backends = stats.backends
    .filter((b) => b.state !== 'draining')
    .map((b) => ({
      address: b.address,
      state: b.state,
      healthy: b.healthy,
      active: b.active,
    }));
  const up = backends.filter((b) => b.healthy && b.state !== 'down').length;
  return {
    status: up > 0 && !closing ? 'up' : 'down',
    closing,
    up,
    total: backends.length,
    backends,
  };
}

/** The body of the adapters' health routes: counts only, no addresses. */
export function publicHealth(health: ProxyHealth): {
  status: 'up' | 'down';
  up: number;
  total: number;
} {
  return { status: health.status, up: health.up, total: health.total };
}

/**
 * Answers a health probe on a Node response (express-scgi's `mw.health`, node:http): 200 while
 * up, else 503, with `publicHealth` as JSON, never cached.
 */
export function writeHealth(
  req: { method?: string },
  res: {
    writeHead(status: number, headers: Record<string, string | number>): unknown;
    end(body?: string): unknown;
  },
  health: ProxyHealth,
): void {
  const payload = JSON.stringify(publicHealth(health));
  res.writeHead(health.status === 'up' ? 200 : 503, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(payload),
    'cache-control': 'no-store',
  });
  res.end(req.method === 'HEAD' ? undefined : payload);
}
