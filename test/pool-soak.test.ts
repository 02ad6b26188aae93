/**
 * Soak: 10,000 requests (50 at a time) through a Fastify front to a pool holding the Node app,
 * a hostile SCGI backend (on TCP and on a Unix socket) that picks a fault per request, and a
 * dead address. Every request must end as the app's exact answer, or as the 5xx its fault calls
 * for: a fault after the head is a clean 502 when the body is small enough to be collected whole
 * (maxBufferedBody), a cut connection when it streams; and afterwards nothing is left open:
 * sockets, timers, fds, spool files, listeners on the front's server.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { liveSpoolFiles, ScgiHeadDecoder } from 'scgi-core';
import { afterAll, describe, expect, it } from 'vitest';
import { getFreePort } from './helpers/backends.js';
import { startFastifyFront } from './helpers/fronts.js';
import {
  errorCode,
  eventually,
  keepAliveAgent,
  type Reply,
  resourceCounts,
  runConcurrently,
  send,
  startNodeBackend,
} from './helpers/pool.js';
import { makeTempDir, removeTempDir } from './helpers/tmp.js';

const TOTAL = 10_000;
const CONCURRENCY = 50;
const HEADERS_TIMEOUT = 1000;

type Fault =
  | 'normal'
  | 'reset-before-head'
  | 'reset-in-small-body'
  | 'reset-in-large-body'
  | 'slow'
  | 'malformed';
/**
 * Faults by weight. `slow` costs a whole headersTimeout, so it is rarer; the timeout itself sits
 * well above the latency of a normal answer here (everything shares one event loop at 50
 * requests in flight, ~100 ms on average).
 */
const FAULT_WEIGHTS: ReadonlyArray<[Fault, number]> = [
  ['normal', 6],
  ['reset-before-head', 2],
  ['reset-in-small-body', 1],
  ['reset-in-large-body', 1],
  ['malformed', 2],
  ['slow', 1],
];
const FAULTS: readonly Fault[] = FAULT_WEIGHTS.flatMap(([f, n]) => Array<Fault>(n).fill(f));
/**
 * The Content-Length a head announces before the reset: within the front's maxBufferedBody
 * (default 64 KiB) the body is collected whole, so the reset is a clean 502 before anything
 * reached the client; over it the body streams, so the reset cuts the client connection.
 */
const SMALL_BODY = 5000;
const LARGE_BODY = 100_000;
const AFTER_HEAD = 100;
/** Faults a retryable request is retried after (nothing of the response was seen). */
const RETRIED: ReadonlySet<Fault> = new Set(['reset-before-head', 'slow']);

/**
 * A raw SCGI server that reads the head with scgi-core's ScgiHeadDecoder, then picks a fault.
 * `normal` relays the connection to the real app, so its answer is the app's, byte for byte.
 */
function hostileServer(appPath: string, log: Map<string, Fault[]>, sockets: Set<Socket>): Server {
  return createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const decoder = new ScgiHeadDecoder();
    const received: Buffer[] = [];
    const reset = () => (socket.remoteAddress ? socket.resetAndDestroy() : socket.destroy());
    const onData = (chunk: Buffer) => {
      received.push(chunk);
      const head = decoder.push(chunk);
      if (head === null) return;
      socket.removeListener('data', onData);
      const fault = FAULTS[Math.floor(Math.random() * FAULTS.length)]!;
      const id = head.env.HTTP_X_SOAK_ID ?? '?';
      log.set(id, [...(log.get(id) ?? []), fault]);
      switch (fault) {
        case 'normal': {
          const app = connect(appPath);
          app.on('error', () => socket.destroy());
          socket.once('close', () => app.destroy());
          app.write(Buffer.concat(received));
          socket.pipe(app);
          app.pipe(socket);
          break;
        }
        case 'reset-before-head':
          reset();
          break;
        case 'reset-in-small-body':
        case 'reset-in-large-body': {
          const length = fault === 'reset-in-small-body' ? SMALL_BODY : LARGE_BODY;
          socket.resume();
          socket.write(
            `Status: 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${length}\r\n\r\n` +
              'x'.repeat(AFTER_HEAD),
            () => setTimeout(reset, 20),
          );
          break;
        }
        case 'slow':
          socket.resume(); // reads the body, never answers: the proxy gives up first
          break;
        case 'malformed':
          socket.resume();
          socket.end('no-colon-in-this-line\r\n\r\n');
          break;
      }
    };
    socket.on('data', onData);
  });
}

const listen = (server: Server, where: number | string) =>
  new Promise<void>((resolve) => {
    if (typeof where === 'string') server.listen(where, resolve);
    else server.listen(where, '127.0.0.1', resolve);
  });

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('soak: 10,000 requests against a hostile pool', () => {
  it('every request ends as the exact answer or its fault says; nothing leaks', async () => {
    const good = await startNodeBackend('good');
    cleanups.push(() => good.kill());
    const log = new Map<string, Fault[]>();
    const hostileSockets = new Set<Socket>();
    const dir = makeTempDir('scgi-sk-');
    const spoolDir = makeTempDir('scgi-sp-');
    cleanups.push(() => removeTempDir(dir));
    cleanups.push(() => removeTempDir(spoolDir));
    const hostileTcp = hostileServer(good.address.slice(5), log, hostileSockets);
    const hostileUnix = hostileServer(good.address.slice(5), log, hostileSockets);
    await listen(hostileTcp, 0);
    await listen(hostileUnix, join(dir, 'hostile.sock'));
    cleanups.push(() => new Promise((r) => hostileTcp.close(r)));
    cleanups.push(() => new Promise((r) => hostileUnix.close(r)));
    const dead = `127.0.0.1:${await getFreePort()}`;

    const front = await startFastifyFront({
      upstream: [
        good.address,
        `127.0.0.1:${(hostileTcp.address() as AddressInfo).port}`,
        `unix:${join(dir, 'hostile.sock')}`,
        dead,
      ],
      // Passive health off: the faults must keep coming for the whole run.
      maxFails: 0,
      headersTimeout: HEADERS_TIMEOUT,
      connectTimeout: 1000,
      idleTimeout: 5000,
      spoolMemory: 512,
      tmpDir: spoolDir,
    });
    cleanups.push(() => front.close());
    const proxy = front.app.scgiProxy;
    // The fault bodies sit on either side of the buffering limit.
    expect(SMALL_BODY).toBeLessThanOrEqual(proxy.options.maxBufferedBody);
    expect(LARGE_BODY).toBeGreaterThan(proxy.options.maxBufferedBody);
    const server = front.app.server;
    const listeners = () =>
      Object.fromEntries(server.eventNames().map((e) => [String(e), server.listenerCount(e)]));

    const bodies = Array.from({ length: 8 }, (_, i) => randomBytes(1500 + i * 300));
    const answers = bodies.map((b) =>
      JSON.stringify({ length: b.length, sha256: createHash('sha256').update(b).digest('hex') }),
    );
    const stream = Buffer.from(Array.from({ length: 2000 }, (_, i) => i & 255));
    // Over maxBufferedBody: this answer streams through the front instead of being collected.
    const large = Buffer.from(Array.from({ length: 70_000 }, (_, i) => i & 255));
    /** One request: which kind, whether the proxy may retry it, and its exact answer. */
    const plan = (i: number) => {
      const k = i % 20;
      const body = bodies[i % 8]!;
      const answer = Buffer.from(answers[i % 8]!);
      if (k < 13)
        return { method: 'GET', path: '/stream?bytes=2000&cl=1', retry: true, answer: stream };
      if (k < 14)
        return { method: 'GET', path: '/stream?bytes=70000&cl=1', retry: true, answer: large };
      if (k < 17) return { method: 'POST', path: '/sha256', body, retry: false, answer };
      if (k < 19) return { method: 'PUT', path: '/sha256', chunked: body, retry: true, answer };
      return { method: 'POST', path: '/sha256', chunked: body, retry: false, answer };
    };

    const agent = keepAliveAgent(CONCURRENCY);
    const run = (from: number, count: number) =>
      runConcurrently(count, CONCURRENCY, async (n) => {
        const i = from + n;
        const p = plan(i);
        const reply = await send(`${front.url}${p.path}`, {
          method: p.method,
          headers: { 'x-soak-id': String(i) },
          ...(p.body ? { body: p.body } : {}),
          ...(p.chunked ? { chunked: p.chunked } : {}),
          agent,
        });
        return { i, p, reply };
      });

    // Warm up, let everything settle, then take the baseline.
    const settle = async () => {
      agent.destroy();
      await eventually(
        () => hostileSockets.size + good.sockets.size + proxy.inFlight,
        (n) => n === 0,
        5000,
      );
    };
    await run(1_000_000, 100);
    await settle();
    const baseline = await eventually(resourceCounts, () => false, 200);
    const baseListeners = listeners();

    // Chunked uploads are spooled to files (spoolMemory 512): see that it happens.
    let spooledFiles = 0;
    const sampler = setInterval(() => {
      spooledFiles = Math.max(spooledFiles, readdirSync(spoolDir).length);
    }, 10);
    const started = Date.now();
    const results = await run(0, TOTAL);
    const took = Date.now() - started;
    clearInterval(sampler);
    expect(spooledFiles).toBeGreaterThan(0);

    const wrong: string[] = [];
    const tally: Record<string, number> = {};
    for (const { i, p, reply } of results) {
      const faults = log.get(String(i)) ?? [];
      const last = faults.at(-1);
      const earlier = faults.slice(0, -1);
      // Before the last try, only faults that allow a retry, and only for retryable requests.
      const retriedOk = (fs: Fault[]) => fs.every((f) => p.retry && RETRIED.has(f));
      let verdict: string | null = null;
      if (!reply.cut && reply.status === 200 && reply.body.equals(p.answer)) {
        if (retriedOk(last === 'normal' ? earlier : faults)) verdict = 'answer';
      } else if (reply.cut) {
        // Only a body over maxBufferedBody streams, so only there can a fault after the head
        // reach the client: the head, at most the bytes sent before the reset, then a cut.
        if (
          last === 'reset-in-large-body' &&
          reply.status === 200 &&
          reply.headers['content-length'] === String(LARGE_BODY) &&
          reply.body.length <= AFTER_HEAD &&
          reply.body.equals(Buffer.from('x'.repeat(reply.body.length))) &&
          retriedOk(earlier)
        )
          verdict = 'cut after head';
      } else if (retriedOk(earlier)) {
        const code = errorCode(reply);
        const expected: Record<string, [number, string[]]> = {
          malformed: [502, ['SCGI_ERR_RESPONSE_HEADER']],
          'reset-before-head': [502, ['SCGI_ERR_UPSTREAM_RESET', 'SCGI_ERR_UPSTREAM_CLOSED']],
          // A small body is collected whole: the reset comes before anything went out.
          'reset-in-small-body': [502, ['SCGI_ERR_UPSTREAM_BODY']],
          slow: [504, ['SCGI_ERR_HEADERS_TIMEOUT']],
        };
        const e = last === undefined ? undefined : expected[last];
        // A retryable request is retried after a fault before any response byte, so it never
        // ends with one of those.
        if (
          e &&
          reply.status === e[0] &&
          e[1].includes(code ?? '') &&
          !(p.retry && RETRIED.has(last!))
        )
          verdict = `${reply.status} ${code}`;
      }
      if (verdict === null) wrong.push(describeFailure(i, p.method, faults, reply));
      else tally[verdict] = (tally[verdict] ?? 0) + 1;
    }
    expect(wrong.slice(0, 20)).toEqual([]);
    // Every outcome showed up, and most requests got the app's answer.
    expect(Object.keys(tally).sort()).toEqual(
      [
        '502 SCGI_ERR_RESPONSE_HEADER',
        '502 SCGI_ERR_UPSTREAM_BODY',
        '502 SCGI_ERR_UPSTREAM_RESET',
        '504 SCGI_ERR_HEADERS_TIMEOUT',
        'answer',
        'cut after head',
      ]
        .concat(tally['502 SCGI_ERR_UPSTREAM_CLOSED'] ? ['502 SCGI_ERR_UPSTREAM_CLOSED'] : [])
        .sort(),
    );
    expect(tally.answer).toBeGreaterThan(TOTAL * 0.6);
    expect(took).toBeLessThan(60_000);
    const stats = proxy.stats();
    expect(stats.backends[3]).toMatchObject({ lastError: 'SCGI_ERR_CONNECT', served: 0 });
    expect(stats.backends[3]!.failed).toBeGreaterThan(TOTAL / 10);

    // Nothing left behind.
    await settle();
    expect(proxy.inFlight).toBe(0);
    expect(stats.queued).toBe(0);
    expect(proxy.stats().backends.map((b) => b.active)).toEqual([0, 0, 0, 0]);
    const end = await eventually(
      resourceCounts,
      (c) =>
        c.tcp <= baseline.tcp &&
        c.pipe <= baseline.pipe &&
        c.timeout <= baseline.timeout &&
        c.fds <= baseline.fds,
      5000,
    );
    expect(end).toEqual(baseline);
    expect(await eventually(liveSpoolFiles, (n) => n === 0, 2000)).toBe(0);
    expect(readdirSync(spoolDir)).toEqual([]);
    expect(listeners()).toEqual(baseListeners);
    console.log(
      `soak: ${TOTAL} requests in ${took} ms; outcomes ${JSON.stringify(tally)}; ` +
        `hostile faults ${JSON.stringify(countFaults(log))}`,
    );
  }, 120_000);
});

function describeFailure(i: number, method: string, faults: Fault[], r: Reply): string {
  const body = r.body.subarray(0, 120).toString('latin1');
  return `#${i} ${method} faults=[${faults}] -> ${r.status} cut=${r.cut} ${r.error ?? ''} ${body}`;
}

function countFaults(log: Map<string, Fault[]>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const fs of log.values()) for (const f of fs) out[f] = (out[f] ?? 0) + 1;
  return out;
}
