/**
 * The upstream pool end to end, through a Fastify front, against real backends: balancing
 * shares, failover across TCP and Unix backends (uWSGI, scgi_server.py, the Node SCGI server,
 * dead addresses), backends killed under load, the retry rule for request bodies, and a
 * saturated pool (per-backend limits, bounded queue, 503 with Retry-After, recovery).
 */
import { createHash, randomBytes } from 'node:crypto';
import diagnosticsChannel from 'node:diagnostics_channel';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import express from 'express';
import { scgiProxy } from 'express-scgi';
import type { PoolStats } from 'scgi-core';
import { describe, expect, it } from 'vitest';
import { type Backend, getFreePort, startPythonBackend, startUwsgi } from './helpers/backends.js';
import { has, installed } from './helpers/binaries.js';
import type { Front } from './helpers/fronts.js';
import {
  errorCode,
  eventually,
  keepAliveAgent,
  poolFixtures,
  runConcurrently,
  send,
} from './helpers/pool.js';
import { makeTempDir } from './helpers/tmp.js';

const { cleanups, nodeBackends, fastify } = poolFixtures();

/**
 * The second real backend of the mixed-pool tests: uWSGI (a master with forked workers sharing
 * one socket) where it is installed, else a second scgi_server.py on a Unix socket, so a machine
 * with only python3 and Node still runs them. Under CI=true a missing uWSGI fails
 * (test/helpers/binaries.ts).
 */
const withUwsgi = installed('uwsgi');
const SECOND = withUwsgi ? 'uWSGI' : 'a second scgi_server.py';
function startSecond(options: { processes: number; threads: number }): Promise<Backend> {
  return withUwsgi
    ? startUwsgi({ socket: 'unix', ...options })
    : startPythonBackend({ socket: 'unix', threads: options.threads });
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('balancing through a front to three Node SCGI backends', () => {
  it('smooth WRR with weights 1/2/3: exact shares in every window of 6, over 600 requests', async () => {
    const bs = await nodeBackends(3);
    const front = await fastify({
      upstream: bs.map((b, i) => ({ address: b.address, weight: i + 1 })),
    });
    const agent = keepAliveAgent(1);
    cleanups.push(() => agent.destroy());
    const seq: string[] = [];
    for (let i = 0; i < 600; i++) {
      const r = await send(`${front.url}/status/200`, { agent });
      expect(r.status).toBe(200);
      seq.push(r.headers['x-backend'] as string);
    }
    for (let w = 0; w < 600; w += 6) {
      const window = seq.slice(w, w + 6);
      expect(['n0', 'n1', 'n2'].map((n) => window.filter((x) => x === n).length)).toEqual([
        1, 2, 3,
      ]);
    }
    const stats = front.app.scgiProxy.stats();
    expect(stats.backends.map((b) => b.served)).toEqual([100, 200, 300]);
    expect(bs.map((b) => b.hits)).toEqual([100, 200, 300]);
  });

  it('least-connections sends fewer requests to a slow backend than round-robin does', async () => {
    const bs = await nodeBackends(3);
    bs[0]!.hook = (_req, _res, next) => void setTimeout(next, 200);
    const counts: Record<string, number> = {};
    for (const balance of ['round-robin', 'least-connections'] as const) {
      const front = await fastify({ upstream: bs.map((b) => b.address), balance });
      for (const b of bs) b.hits = 0;
      const replies = await runConcurrently(150, 10, () => send(`${front.url}/status/200`));
      expect(replies.every((r) => r.status === 200)).toBe(true);
      counts[balance] = bs[0]!.hits;
    }
    expect(counts['round-robin']).toBe(50);
    expect(counts['least-connections']).toBeLessThan(25);
  });

  it('hash: the same key goes to the same backend; removing 1 of 4 backends moves only its keys', async () => {
    const bs = await nodeBackends(4);
    const hash = (req: { headers: Record<string, unknown> }) =>
      req.headers['x-user'] as string | undefined;
    const owner = async (front: Front, key: string) => {
      const r = await send(`${front.url}/status/200`, { headers: { 'x-user': key }, agent });
      expect(r.status).toBe(200);
      return r.headers['x-backend'] as string;
    };
    const agent = keepAliveAgent(4);
    cleanups.push(() => agent.destroy());
    const four = await fastify({ upstream: bs.map((b) => b.address), balance: { hash } });
    const keys = Array.from({ length: 200 }, (_, i) => `user-${i}`);
    const before = new Map<string, string>();
    for (const k of keys) before.set(k, await owner(four, k));
    for (const k of keys.slice(0, 50)) expect(await owner(four, k)).toBe(before.get(k));
    expect(new Set(before.values()).size).toBe(4);
    // Without a key: round-robin.
    const nokey = await runConcurrently(8, 1, () => send(`${four.url}/status/200`, { agent }));
    expect(new Set(nokey.map((r) => r.headers['x-backend'])).size).toBe(4);

    const three = await fastify({
      upstream: bs.filter((_, i) => i !== 1).map((b) => b.address),
      balance: { hash },
    });
    let kept = 0;
    for (const k of keys) {
      const now = await owner(three, k);
      if (before.get(k) !== 'n1') expect(now).toBe(before.get(k));
      if (now === before.get(k)) kept++;
    }
    // Exactly the keys of the backend that left moved. (Its share depends on where the ring puts
    // this run's random socket paths: about a quarter, bounded loosely so the test cannot flake.)
    const movedAway = keys.filter((k) => before.get(k) === 'n1').length;
    expect(kept).toBe(keys.length - movedAway);
    expect(movedAway / keys.length).toBeLessThan(0.5);
  });
});

describe.skipIf(!has('python3'))(
  `mixed TCP and Unix backends with dead ones (scgi_server.py over TCP, ${SECOND})`,
  () => {
    for (const kind of ['fastify', 'express'] as const) {
      it(`${kind}: every GET succeeds; the dead ones end up down with SCGI_ERR_CONNECT`, async () => {
        const [second, python] = await Promise.all([
          startSecond({ processes: 1, threads: 4 }),
          startPythonBackend({ socket: 'tcp' }),
        ]);
        cleanups.push(() => Promise.all([second.stop(), python.stop()]));
        const deadTcp = `127.0.0.1:${await getFreePort()}`;
        const deadUnix = `unix:${join(makeTempDir('scgi-pl-'), 'missing.sock')}`;
        const upstream = [deadTcp, second.address, deadUnix, python.address];
        let url: string;
        let stats: () => PoolStats;
        if (kind === 'fastify') {
          const front = await fastify({ upstream });
          url = front.url;
          stats = () => front.app.scgiProxy.stats();
        } else {
          const mw = scgiProxy({ upstream, respondOnError: true });
          const app = express();
          app.use(mw);
          const server = await new Promise<Server>((r) => {
            const s = app.listen(0, '127.0.0.1', () => r(s));
          });
          cleanups.push(
            () =>
              new Promise<void>((r) => {
                server.closeAllConnections();
                server.close(() => r());
              }),
          );
          url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
          stats = () => mw.stats();
        }
        for (let i = 0; i < 40; i++) {
          const r = await send(`${url}/env?i=${i}`);
          expect(r.status).toBe(200);
          expect(JSON.parse(r.body.toString()).QUERY_STRING).toBe(`i=${i}`);
        }
        const s = stats();
        const by = (address: string) => s.backends.find((b) => b.address === address)!;
        for (const dead of [deadTcp, deadUnix]) {
          expect(by(dead)).toMatchObject({
            state: 'down',
            lastError: 'SCGI_ERR_CONNECT',
            served: 0,
          });
          expect(by(dead).failed).toBeGreaterThanOrEqual(1);
        }
        for (const live of [second.address, python.address]) {
          expect(by(live)).toMatchObject({ state: 'up', failed: 0, active: 0 });
        }
        expect(by(second.address).served + by(python.address).served).toBe(40);
        expect(by(second.address).served).toBeGreaterThan(5);
        expect(by(python.address).served).toBeGreaterThan(5);
      });
    }
  },
);

/** Counts, per request id, the backends tried (scgi-core:request:upstream). */
function countAttempts(): { attempts: Map<number, number>; stop: () => void } {
  const attempts = new Map<number, number>();
  const onUpstream = (m: unknown) => {
    const { id } = m as { id: number };
    attempts.set(id, (attempts.get(id) ?? 0) + 1);
  };
  diagnosticsChannel.subscribe('scgi-core:request:upstream', onUpstream);
  return {
    attempts,
    stop: () => diagnosticsChannel.unsubscribe('scgi-core:request:upstream', onUpstream),
  };
}

describe('a backend killed during a load of concurrent GETs', () => {
  it.skipIf(!has('python3'))(
    `SIGKILL of scgi_server.py, then of ${SECOND}: 200 of 200 GETs answered 200 with the right body`,
    async () => {
      const [python, second] = await Promise.all([
        startPythonBackend({ socket: 'tcp', threads: 16 }),
        startSecond({ processes: 2, threads: 4 }),
      ]);
      cleanups.push(() => Promise.all([python.stop(), second.stop()]));
      const [node] = await nodeBackends(1);
      const front = await fastify({ upstream: [python.address, second.address, node!.address] });
      const proxy = front.app.scgiProxy;
      const { attempts, stop } = countAttempts();
      cleanups.push(stop);
      const kill = async (b: Backend, index: number, group: boolean) => {
        // Kill while requests are in flight on it, so some are cut before their head.
        for (let i = 0; i < 100 && proxy.stats().backends[index]!.active === 0; i++) await delay(5);
        process.kill(group ? -b.pid : b.pid, 'SIGKILL');
      };
      let done = 0;
      const killer = (async () => {
        while (done < 50) await delay(5);
        await kill(python, 0, false);
        while (done < 110) await delay(5);
        // uWSGI's workers share the socket: kill the whole process group, master first.
        await kill(second, 1, true);
      })();
      const replies = await runConcurrently(200, 20, async () => {
        const r = await send(`${front.url}/slow?delay=0.1`);
        done++;
        return r;
      });
      await killer;
      const bad = replies.filter(
        (r) => r.status !== 200 || !['slept 0.1\n', '{"slept":100}'].includes(r.body.toString()),
      );
      expect(bad.map((r) => `${r.status} ${r.error ?? ''} ${r.body}`)).toEqual([]);
      const stats = proxy.stats().backends;
      expect(stats[0]).toMatchObject({ state: 'down', active: 0 });
      expect(stats[1]).toMatchObject({ state: 'down', active: 0 });
      expect(stats[0]!.failed + stats[1]!.failed).toBeGreaterThanOrEqual(2);
      // Requests in flight on a killed backend were retried on another one.
      expect([...attempts.values()].filter((n) => n >= 2).length).toBeGreaterThanOrEqual(2);
      expect(python.exitStatus()).toBe('signal SIGKILL');
    },
  );

  it('a Node backend closed with its sockets destroyed: 200 of 200 GETs exact', async () => {
    const bs = await nodeBackends(3);
    const front = await fastify({ upstream: bs.map((b) => b.address) });
    const agent = keepAliveAgent(20);
    cleanups.push(() => agent.destroy());
    const { attempts, stop } = countAttempts();
    cleanups.push(stop);
    let done = 0;
    let inFlightAtKill = 0;
    bs[0]!.hook = (_req, _res, next) => void setTimeout(next, 5);
    const killer = (async () => {
      while (done < 60) await delay(2);
      inFlightAtKill = bs[0]!.active;
      await bs[0]!.kill();
    })();
    const replies = await runConcurrently(200, 20, async (i) => {
      const r = await send(`${front.url}/env?i=${i}`, { agent });
      done++;
      return { i, r };
    });
    await killer;
    for (const { i, r } of replies) {
      expect(r.status, r.body.toString()).toBe(200);
      expect(JSON.parse(r.body.toString()).QUERY_STRING).toBe(`i=${i}`);
    }
    expect(inFlightAtKill).toBeGreaterThan(0);
    expect([...attempts.values()].filter((n) => n >= 2).length).toBeGreaterThanOrEqual(1);
    expect(front.app.scgiProxy.stats().backends[0]!.state).toBe('down');
  });
});

describe('retry rule: a reset before the response head', () => {
  const body = randomBytes(20_000);
  const cases = [
    { name: 'GET without a body is retried', method: 'GET', kind: 'none', retried: true },
    { name: 'chunked (spooled) PUT is retried', method: 'PUT', kind: 'chunked', retried: true },
    { name: 'Content-Length POST is not retried', method: 'POST', kind: 'cl', retried: false },
    { name: 'Content-Length PUT (streamed) is not', method: 'PUT', kind: 'cl', retried: false },
    {
      name: 'chunked POST (not idempotent) is not',
      method: 'POST',
      kind: 'chunked',
      retried: false,
    },
  ] as const;
  for (const c of cases) {
    it(c.name, async () => {
      const [hostile, good] = await nodeBackends(2, 'tcp');
      // Reads the head, then resets the connection (RST) before answering anything.
      hostile!.hook = (req) => req.socket.resetAndDestroy();
      const front = await fastify({ upstream: [hostile!.address, good!.address] });
      const r = await send(`${front.url}/sha256`, {
        method: c.method,
        ...(c.kind === 'cl' ? { body } : c.kind === 'chunked' ? { chunked: body } : {}),
      });
      expect(hostile!.hits).toBe(1);
      if (c.retried) {
        expect(r.status).toBe(200);
        const length = c.kind === 'none' ? 0 : body.length;
        expect(JSON.parse(r.body.toString())).toEqual({
          length,
          sha256: sha256(c.kind === 'none' ? Buffer.alloc(0) : body),
        });
        expect(good!.hits).toBe(1);
      } else {
        expect(r.status).toBe(502);
        expect(['SCGI_ERR_UPSTREAM_RESET', 'SCGI_ERR_UPSTREAM_CLOSED']).toContain(errorCode(r));
        expect(good!.hits).toBe(0);
      }
    });
  }
});

describe('retry rule: half a response head, then close', () => {
  // Writes part of a head and closes, as a backend killed between two writes of its head does
  // (wsgiref writes the status line and the headers apart).
  const halfHead = (req: { socket: { end(data: string): void } }) =>
    req.socket.end('Status: 200 OK\r\nContent-Ty');

  it('a GET goes to the next backend: nothing reached the client and GET may be repeated', async () => {
    const [hostile, good] = await nodeBackends(2, 'tcp');
    hostile!.hook = halfHead;
    const front = await fastify({ upstream: [hostile!.address, good!.address] });
    const r = await send(`${front.url}/sha256`);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body.toString())).toEqual({ length: 0, sha256: sha256(Buffer.alloc(0)) });
    expect([hostile!.hits, good!.hits]).toEqual([1, 1]);
  });

  it('a POST is not repeated: the backend may have run it', async () => {
    const [hostile, good] = await nodeBackends(2, 'tcp');
    hostile!.hook = halfHead;
    const front = await fastify({ upstream: [hostile!.address, good!.address] });
    const r = await send(`${front.url}/sha256`, { method: 'POST', body: randomBytes(100) });
    expect(r.status).toBe(502);
    expect(errorCode(r)).toBe('SCGI_ERR_UPSTREAM_CLOSED');
    expect([hostile!.hits, good!.hits]).toEqual([1, 0]);
  });

  it('a lone backend that does it is broken, not restarting: 502 at once, no retryDelay rounds', async () => {
    const [hostile] = await nodeBackends(1, 'tcp');
    hostile!.hook = halfHead;
    const front = await fastify({ upstream: [hostile!.address], retryTimeout: 5000 });
    const r = await send(`${front.url}/sha256`);
    expect(r.status).toBe(502);
    expect(errorCode(r)).toBe('SCGI_ERR_UPSTREAM_CLOSED');
    expect(hostile!.hits).toBe(1);
  });
});

describe('a saturated pool', () => {
  it('limits each backend, bounds the queue, answers 503 with Retry-After, then recovers', async () => {
    const bs = await nodeBackends(2);
    const front = await fastify({
      upstream: bs.map((b) => ({ address: b.address, maxConnections: 2 })),
      maxQueue: 3,
      queueTimeout: 500,
    });
    const proxy = front.app.scgiProxy;
    let maxQueued = 0;
    const sampler = setInterval(() => {
      maxQueued = Math.max(maxQueued, proxy.stats().queued);
    }, 5);
    cleanups.push(() => clearInterval(sampler));
    const replies = await Promise.all(
      Array.from({ length: 10 }, () => send(`${front.url}/slow?delay=1`)),
    );
    clearInterval(sampler);
    const byCode = (code: string) => replies.filter((r) => errorCode(r) === code);
    expect(replies.filter((r) => r.status === 200).length).toBe(4);
    expect(byCode('SCGI_ERR_QUEUE_FULL').length).toBe(3);
    expect(byCode('SCGI_ERR_QUEUE_TIMEOUT').length).toBe(3);
    for (const r of replies.filter((x) => x.status !== 200)) {
      expect(r.status).toBe(503);
      expect(r.headers['retry-after']).toMatch(/^[1-9][0-9]*$/);
    }
    for (const r of byCode('SCGI_ERR_QUEUE_FULL')) expect(r.ms).toBeLessThan(300);
    for (const r of byCode('SCGI_ERR_QUEUE_TIMEOUT')) {
      expect(r.ms).toBeGreaterThanOrEqual(450);
      expect(r.ms).toBeLessThan(950);
    }
    expect(maxQueued).toBe(3);
    expect(bs.map((b) => b.maxActive)).toEqual([2, 2]);
    // The slow requests are over: the pool serves again, up to its limit at once.
    expect(proxy.stats()).toMatchObject({ queued: 0 });
    const after = await Promise.all(
      Array.from({ length: 7 }, () => send(`${front.url}/slow?delay=0.1`)),
    );
    expect(after.map((r) => r.status)).toEqual(Array(7).fill(200));
    expect(proxy.stats().backends.map((b) => b.active)).toEqual([0, 0]);
  });
  it('a client that goes away while queued leaves the queue at once and never reaches a backend', async () => {
    const [b] = await nodeBackends(1);
    const front = await fastify({
      upstream: { address: b!.address, maxConnections: 1 },
      maxQueue: 5,
    });
    const proxy = front.app.scgiProxy;
    const holder = send(`${front.url}/slow?delay=0.5`);
    await eventually(
      () => proxy.inFlight,
      (n) => n === 1,
      1000,
    );
    const queued = Array.from({ length: 3 }, () => send(`${front.url}/env`, { timeoutMs: 150 }));
    expect(
      await eventually(
        () => proxy.stats().queued,
        (n) => n === 3,
        1000,
      ),
    ).toBe(3);
    // The clients give up (their connections are destroyed at 150 ms).
    for (const r of await Promise.all(queued)) expect(r.cut).toBe(true);
    expect(
      await eventually(
        () => proxy.stats().queued,
        (n) => n === 0,
        500,
      ),
    ).toBe(0);
    expect((await holder).status).toBe(200);
    expect(b!.hits).toBe(1);
    expect(proxy.stats().backends[0]).toMatchObject({ active: 0, served: 1, failed: 0 });
  });
});
