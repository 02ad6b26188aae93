/**
 * Backend health in the upstream pool, against real Node SCGI backends behind a Fastify front:
 * passive health (nginx's max_fails / fail_timeout, one trial request after the window, a
 * backend restarted on the same socket used again, all down -> 503 at once) and active health
 * checks (a failing /status route or a stopped backend marked unhealthy, and healthy again;
 * timers and probes gone after close()).
 */
import { setTimeout as delay } from 'node:timers/promises';
import { ScgiProxy } from 'scgi-core';
import { describe, expect, it } from 'vitest';
import type { Front } from './helpers/fronts.js';
import {
  errorCode,
  eventually,
  poolFixtures,
  resourceCounts,
  runConcurrently,
  send,
} from './helpers/pool.js';

const { nodeBackends: backends, fastify } = poolFixtures();

/** Sequential GETs; returns which backend answered each. */
async function who(front: Front, n: number, path = '/env'): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await send(`${front.url}${path}`);
    expect(r.status, r.body.toString()).toBe(200);
    out.push(r.headers['x-backend'] as string);
  }
  return out;
}

describe('passive health (maxFails 2, failTimeout 1000)', () => {
  it('two failures take a backend out; after the window one trial decides, down again or back', async () => {
    const [a, b] = await backends(2);
    // A answers nothing: it resets every connection once the head arrived.
    a!.hook = (req) => req.socket.destroy();
    const front = await fastify({
      upstream: [a!.address, b!.address],
      maxFails: 2,
      failTimeout: 1000,
    });
    const stats = () => front.app.scgiProxy.stats().backends[0]!;
    // GETs that hit A are retried on B: the client never sees A's failures.
    expect(await who(front, 4)).toEqual(['n1', 'n1', 'n1', 'n1']);
    expect(a!.hits).toBe(2);
    expect(stats()).toMatchObject({
      state: 'down',
      failed: 2,
      lastError: 'SCGI_ERR_UPSTREAM_CLOSED',
    });
    const downAt = Date.now();
    // Down: no request reaches it.
    expect(await who(front, 10)).toEqual(Array(10).fill('n1'));
    expect(a!.hits).toBe(2);

    // After the window: one trial request among many concurrent ones; it fails, A is down again.
    await delay(1050 - (Date.now() - downAt));
    expect(stats().state).toBe('probing');
    const burst = await runConcurrently(6, 6, () => send(`${front.url}/env`));
    expect(burst.map((r) => r.status)).toEqual(Array(6).fill(200));
    expect(a!.hits).toBe(3);
    expect(stats()).toMatchObject({ state: 'down', failed: 3 });
    const downAgainAt = Date.now();

    // A recovers; the next trial (held 200 ms) is alone on A while the others go to B.
    a!.hook = (_req, _res, next) => void setTimeout(next, 200);
    await delay(1050 - (Date.now() - downAgainAt));
    const trial = await runConcurrently(6, 6, () => send(`${front.url}/env`));
    expect(trial.map((r) => r.status)).toEqual(Array(6).fill(200));
    expect(trial.filter((r) => r.headers['x-backend'] === 'n0').length).toBe(1);
    expect(a!.hits).toBe(4);
    expect(stats()).toMatchObject({ state: 'up', failed: 3 });
    a!.hook = undefined;
    const after = await who(front, 10);
    expect(after.filter((x) => x === 'n0').length).toBe(5);
  });

  it('a backend restarted on the same socket path is used again after the window', async () => {
    const [a, b] = await backends(2);
    const front = await fastify({
      upstream: [a!.address, b!.address],
      maxFails: 2,
      failTimeout: 1000,
    });
    expect(await who(front, 4)).toEqual(['n0', 'n1', 'n0', 'n1']);
    await a!.kill();
    expect(await who(front, 6)).toEqual(Array(6).fill('n1'));
    const s = front.app.scgiProxy.stats().backends[0]!;
    expect(s).toMatchObject({ state: 'down', failed: 2, lastError: 'SCGI_ERR_CONNECT' });
    await a!.restart();
    // Still inside the window: not used yet.
    expect(await who(front, 4)).toEqual(Array(4).fill('n1'));
    await eventually(
      () => front.app.scgiProxy.stats().backends[0]!.state,
      (st) => st === 'probing',
      2000,
    );
    const back = await who(front, 10);
    expect(back.filter((x) => x === 'n0').length).toBeGreaterThanOrEqual(4);
    expect(front.app.scgiProxy.stats().backends[0]!.state).toBe('up');
  });

  it('all backends down -> 503 SCGI_ERR_NO_BACKEND at once, with Retry-After', async () => {
    const [a, b] = await backends(2);
    const front = await fastify({
      upstream: [a!.address, b!.address],
      maxFails: 2,
      failTimeout: 5000,
      // One round per request, no waits for a restart: each request counts one failure a backend.
      retryDelay: 0,
    });
    await Promise.all([a!.kill(), b!.kill()]);
    // Each request tries both: the last failure is the answer while they are still counted.
    for (let i = 0; i < 2; i++) {
      const r = await send(`${front.url}/env`);
      expect(r.status).toBe(502);
      expect(errorCode(r)).toBe('SCGI_ERR_CONNECT');
    }
    expect(front.app.scgiProxy.stats().backends.map((x) => x.state)).toEqual(['down', 'down']);
    for (let i = 0; i < 5; i++) {
      const r = await send(`${front.url}/env`);
      expect(r.status).toBe(503);
      expect(errorCode(r)).toBe('SCGI_ERR_NO_BACKEND');
      expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(Number(r.headers['retry-after'])).toBeLessThanOrEqual(5);
      expect(r.ms).toBeLessThan(200);
    }
  });
});

describe('active health checks (interval 100, path /status/200)', () => {
  it('a 500 from the check route or a stopped backend marks it unhealthy; recovery marks it healthy', async () => {
    const [x, y] = await backends(2);
    let sick = false;
    let probes = 0;
    x!.hook = (req, res, next) => {
      if (req.env.PATH_INFO !== '/status/200') return next();
      probes++;
      if (!sick) return next();
      req.resume();
      res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end('sick\n');
    };
    const front = await fastify({
      upstream: [x!.address, y!.address],
      healthCheck: { interval: 100, path: '/status/200' },
    });
    const proxy = front.app.scgiProxy;
    const healthy = () => proxy.stats().backends.map((b) => b.healthy);
    expect(healthy()).toEqual([true, true]);
    await eventually(
      () => probes,
      (n) => n >= 2,
      1000,
    );

    sick = true;
    expect(await eventually(healthy, (h) => !h[0], 1000)).toEqual([false, true]);
    expect(await who(front, 6)).toEqual(Array(6).fill('n1'));
    sick = false;
    expect(await eventually(healthy, (h) => h[0]!, 1000)).toEqual([true, true]);
    expect(await who(front, 4)).toEqual(['n0', 'n1', 'n0', 'n1']);

    await x!.kill();
    expect(await eventually(healthy, (h) => !h[0], 1000)).toEqual([false, true]);
    // Not a single request fails or is even tried on it: the pool knows before any request.
    const failedBefore = proxy.stats().backends[0]!.failed;
    expect(await who(front, 6)).toEqual(Array(6).fill('n1'));
    expect(proxy.stats().backends[0]!.failed).toBe(failedBefore);
    await x!.restart();
    expect(await eventually(healthy, (h) => h[0]!, 1000)).toEqual([true, true]);
    expect(await who(front, 2)).toContain('n0');

    // close(): the checks stop.
    await front.app.close();
    const seen = probes;
    await delay(400);
    expect(probes).toBe(seen);
  });

  it('close() ends a check still in progress: no socket, no timer left', async () => {
    const [z] = await backends(1);
    // The check route never answers: every check waits for its timeout. (The server keeps
    // half-open connections: close on EOF, as a real worker does.)
    z!.hook = (req, _res, next) => {
      if (req.env.PATH_INFO !== '/status/200') return next();
      req.socket.once('end', () => req.socket.destroy());
    };
    await delay(100); // let sockets of earlier tests finish closing
    const before = resourceCounts();
    const proxy = new ScgiProxy({
      upstream: z!.address,
      healthCheck: { interval: 100, timeout: 5000, path: '/status/200' },
    });
    await eventually(
      () => z!.sockets.size,
      (n) => n === 1,
      1000,
    );
    const started = Date.now();
    await proxy.close();
    expect(Date.now() - started).toBeLessThan(100);
    // The backend sees the probe connection go away, and this process holds nothing for it.
    expect(
      await eventually(
        () => z!.sockets.size,
        (n) => n === 0,
        500,
      ),
    ).toBe(0);
    const after = await eventually(
      resourceCounts,
      (c) => c.timeout <= before.timeout && c.pipe <= before.pipe,
      500,
    );
    // Sockets of earlier tests may still be closing when `before` was taken: nothing added.
    expect(after.timeout).toBeLessThanOrEqual(before.timeout);
    expect(after.pipe).toBeLessThanOrEqual(before.pipe);
  });
});
