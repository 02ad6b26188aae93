/**
 * FastCGI through the proxy (issue 14): a raw backend of our own (test/helpers/fastcgi-raw.ts)
 * that misbehaves in every way the protocol allows, and keep-alive: reuse, the idle timeout,
 * maxConnections counting idle connections, a kept connection closed under a request, a client
 * going away mid-response, `keepAlive: false`. Through both adapters, with descriptors counted.
 */
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from './helpers/corpus.js';
import { type RawFastcgiBackend, startRawFastcgi } from './helpers/fastcgi-raw.js';
import { countOpenFds, type RawResponse, rawRequest } from './helpers/http.js';
import { type ProxyFront, type ProxyFrontKind, startProxyFront } from './helpers/proxy-fronts.js';

function get(front: ProxyFront, path: string, method = 'GET', body?: Buffer): Promise<RawResponse> {
  let head = `${method} /app${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n`;
  if (body !== undefined) head += `Content-Length: ${body.length}\r\n`;
  const bytes = Buffer.concat([Buffer.from(`${head}\r\n`), body ?? Buffer.alloc(0)]);
  return rawRequest(front.url, bytes, { timeoutMs: 10_000 });
}

function errorCode(res: RawResponse): string {
  return (JSON.parse(res.body.toString()) as { code: string }).code;
}

interface LogLine {
  obj: Record<string, unknown>;
  msg: string | undefined;
}

function captureLogger() {
  const lines: LogLine[] = [];
  const log = (obj: object, msg?: string) => lines.push({ obj: obj as LogLine['obj'], msg });
  return { lines, logger: { info: log, warn: log, error: log } };
}

const KINDS: ProxyFrontKind[] = ['fastify', 'express'];

describe.each(KINDS)('FastCGI protocol faults through %s', (kind) => {
  let backend: RawFastcgiBackend;
  let front: ProxyFront;
  const log = captureLogger();

  beforeAll(async () => {
    backend = await startRawFastcgi();
    front = await startProxyFront(kind, {
      upstream: backend.address,
      logger: log.logger,
      maxFails: 0,
    });
  });
  afterAll(async () => {
    await front.close();
    await backend.close();
  });

  it.each([
    ['/close-before-head', 502, 'SCGI_ERR_UPSTREAM_CLOSED'],
    ['/close-after-head-cl', 502, 'SCGI_ERR_UPSTREAM_BODY'],
    ['/overloaded', 503, 'SCGI_ERR_FASTCGI_OVERLOADED'],
    ['/cant-mpx', 502, 'SCGI_ERR_FASTCGI_STATUS'],
    ['/unknown-role', 502, 'SCGI_ERR_FASTCGI_STATUS'],
    ['/bad-version', 502, 'SCGI_ERR_FASTCGI_VERSION'],
    ['/other-id', 502, 'SCGI_ERR_FASTCGI_RECORD'],
    ['/unknown-type', 502, 'SCGI_ERR_FASTCGI_RECORD'],
  ])('%s is a %i %s before the head', async (path, status, code) => {
    const res = await get(front, path);
    expect(res.statusCode).toBe(status);
    expect(errorCode(res)).toBe(code);
  });

  it('END_REQUEST before the Content-Length, in the read that brought the head: a clean 502 SCGI_ERR_UPSTREAM_BODY, no uncaught stream error', async () => {
    // The body stream failed before the adapter could listen to it: its 'error' used to be
    // emitted with no listener (an uncaught exception) and the client waited forever.
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    process.on('uncaughtException', onUncaught);
    try {
      const res = await get(front, '/short-end');
      expect(res.statusCode).toBe(502);
      expect(errorCode(res)).toBe('SCGI_ERR_UPSTREAM_BODY');
      expect(res.closedEarly).toBe(false);
      expect(uncaught).toEqual([]);
    } finally {
      process.off('uncaughtException', onUncaught);
    }
  });

  it('a close before END_REQUEST after the head cuts the client connection', async () => {
    const res = await get(front, '/close-after-head');
    expect(res.statusCode).toBe(200);
    expect(res.closedEarly).toBe(true);
    expect(res.body.toString()).toBe('partial body');
  });

  it('a record after END_REQUEST: the answer stands, the connection is not kept', async () => {
    const closedBefore = backend.closed();
    const res = await get(front, '/after-end');
    expect(res.statusCode).toBe(200);
    expect(res.body.toString()).toBe('ok');
    expect(await eventually(() => backend.closed() > closedBefore)).toBe(true);
    expect(front.proxy.stats().backends[0]!.idle).toBe(0);
  });

  it('STDOUT past the Content-Length is dropped and the connection kept', async () => {
    const res = await get(front, '/extra-stdout');
    expect(res.statusCode).toBe(200);
    expect(res.body.toString()).toBe('ok');
    expect(await eventually(() => front.proxy.stats().backends[0]!.idle === 1)).toBe(true);
  });

  it('the client has its answer before END_REQUEST; the connection is kept after it', async () => {
    const started = Date.now();
    const res = await get(front, '/slow-end');
    expect(res.body.toString()).toBe('ok');
    // END_REQUEST comes 400 ms after the answer.
    expect(Date.now() - started).toBeLessThan(300);
    const before = backend.accepted();
    await eventually(() => front.proxy.inFlight === 0);
    const next = await get(front, '/echo');
    expect(next.statusCode).toBe(200);
    expect(backend.accepted()).toBe(before);
  });

  it('STDERR goes to the logger tagged with the backend, bounded per request', async () => {
    log.lines.length = 0;
    const res = await get(front, '/stderr');
    expect(res.statusCode).toBe(200);
    expect(res.body.toString()).toBe('ok');
    const stderr = log.lines.filter((l) => l.msg === 'backend stderr');
    expect(stderr.length).toBeGreaterThan(0);
    const label = backend.address.replace('fastcgi://', '');
    for (const l of stderr) expect(l.obj.upstream).toBe(label);
    expect(String(stderr[0]!.obj.stderr)).toContain('PHP Warning: something');
    const logged = stderr.reduce((n, l) => n + String(l.obj.stderr).length, 0);
    expect(logged).toBe(16 * 1024);
  });
});

describe('health checks over FastCGI', () => {
  let backend: RawFastcgiBackend;
  beforeAll(async () => {
    backend = await startRawFastcgi();
  });
  afterAll(async () => {
    await backend.close();
  });

  it.each(KINDS)('a GET of the path in FastCGI decides the verdict (%s)', async (kind) => {
    const good = await startProxyFront(kind, {
      upstream: backend.address,
      healthCheck: { interval: 50, path: '/echo' },
    });
    const bad = await startProxyFront(kind, {
      upstream: backend.address,
      healthCheck: { interval: 50, path: '/echo', expectStatus: 204 },
    });
    try {
      const checks = () =>
        backend.requests.filter((r) => r.env.HTTP_USER_AGENT === 'scgi-core-health-check');
      expect(await eventually(() => checks().length >= 4)).toBe(true);
      expect(checks()[0]!.env).toMatchObject({ REQUEST_METHOD: 'GET', PATH_INFO: '/echo' });
      expect(checks()[0]!.keepConn).toBe(false);
      expect(await eventually(() => !bad.proxy.stats().backends[0]!.healthy)).toBe(true);
      expect(good.proxy.stats().backends[0]!.healthy).toBe(true);
    } finally {
      await good.close();
      await bad.close();
    }
  });
});

describe.each(KINDS)('FastCGI keep-alive through %s', (kind) => {
  let backend: RawFastcgiBackend;
  const fronts: ProxyFront[] = [];

  async function frontWith(options: Record<string, unknown> = {}) {
    const f = await startProxyFront(kind, { upstream: backend.address, ...options });
    fronts.push(f);
    return f;
  }

  beforeAll(async () => {
    backend = await startRawFastcgi();
  });
  afterEach(async () => {
    for (const f of fronts.splice(0)) await f.close();
    backend.closeKeptAfter(null);
  });
  afterAll(async () => {
    await backend.close();
  });

  it('reuses one connection for many requests, with FCGI_KEEP_CONN', async () => {
    const front = await frontWith();
    const before = backend.accepted();
    for (let i = 0; i < 40; i++) {
      const res = await get(front, '/echo');
      expect(res.statusCode).toBe(200);
      expect(JSON.parse(res.body.toString()).keepConn).toBe(true);
    }
    expect(backend.accepted() - before).toBe(1);
  });

  it('keeps at most maxConnections open, idle ones included, under concurrency', async () => {
    const front = await frontWith({ maxConnections: 3, keepAlive: { maxIdle: 8 } });
    const openedBefore = backend.accepted();
    const peak = { open: 0 };
    const watch = setInterval(() => {
      peak.open = Math.max(peak.open, backend.open());
    }, 2);
    // Bodies of 100 KiB stream on new connections: each must close an idle one first.
    const big = Buffer.alloc(100 * 1024, 0x78);
    const all = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        i % 3 === 0 ? get(front, '/echo', 'POST', big) : get(front, '/slow'),
      ),
    );
    clearInterval(watch);
    for (const res of all) expect(res.statusCode).toBe(200);
    expect(peak.open).toBeLessThanOrEqual(3);
    expect(backend.accepted() - openedBefore).toBeGreaterThan(1);
    expect(front.proxy.stats().backends[0]!.idle).toBeLessThanOrEqual(3);
  });

  it('keeps as many idle connections as maxConnections allows by default: no churn at steady concurrency', async () => {
    // 12 requests at a time, 5 rounds: with maxIdle defaulting to 4 (before), every round closed
    // 8 kept connections and opened 8 new ones, each a new thread or worker in the backend.
    const front = await frontWith({ maxConnections: 12 });
    const before = backend.accepted();
    for (let round = 0; round < 5; round++) {
      const all = await Promise.all(Array.from({ length: 12 }, () => get(front, '/slow')));
      for (const res of all) expect(res.statusCode).toBe(200);
    }
    expect(backend.accepted() - before).toBeLessThanOrEqual(12);
    expect(front.proxy.stats().backends[0]!.idle).toBeLessThanOrEqual(12);
    // Without maxConnections, the default stays 4 (below PHP-FPM's 5 children).
    const unbounded = await frontWith();
    await Promise.all(Array.from({ length: 8 }, () => get(unbounded, '/slow')));
    expect(unbounded.proxy.stats().backends[0]!.idle).toBe(4);
  });

  it('closes an idle connection after keepAlive.idleTimeout', async () => {
    const front = await frontWith({ keepAlive: { idleTimeout: 200 } });
    const closedBefore = backend.closed();
    expect((await get(front, '/echo')).statusCode).toBe(200);
    expect(front.proxy.stats().backends[0]!.idle).toBe(1);
    expect(await eventually(() => front.proxy.stats().backends[0]!.idle === 0, 3000)).toBe(true);
    expect(await eventually(() => backend.closed() > closedBefore)).toBe(true);
  });

  it('a kept connection idle past idleTimeout is reused, and idleTimeout still bounds its next exchange', async () => {
    // The socket's idle timer stays armed while the connection is kept (keep-alive.ts): it fires
    // during the wait, which must not close the connection, and the next request must arm it again.
    const front = await frontWith({ idleTimeout: 100, keepAlive: { idleTimeout: 5000 } });
    const before = backend.accepted();
    expect((await get(front, '/echo')).statusCode).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(front.proxy.stats().backends[0]!.idle).toBe(1);
    expect((await get(front, '/echo')).statusCode).toBe(200);
    expect(backend.accepted() - before).toBe(1);
    // The backend answers /slow after 150 ms: past the idle timeout of the reused connection.
    const res = await get(front, '/slow');
    expect(res.statusCode).toBe(504);
    expect(errorCode(res)).toBe('SCGI_ERR_IDLE_TIMEOUT');
  });

  it('each idle connection closes keepAlive.idleTimeout after its own last use, oldest first', async () => {
    const front = await frontWith({ keepAlive: { idleTimeout: 1200 } });
    await Promise.all([get(front, '/slow'), get(front, '/slow')]);
    const stats = () => front.proxy.stats().backends[0]!;
    expect(stats().idle).toBe(2);
    // The newest is taken and kept again 600 ms later: it outlives the other one by as much
    // (margins of 600 ms either side, for a slow machine).
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect((await get(front, '/echo')).statusCode).toBe(200);
    expect(stats().idle).toBe(2);
    expect(await eventually(() => stats().idle < 2, 3000)).toBe(true);
    expect(stats().idle).toBe(1);
    expect(await eventually(() => stats().idle === 0, 3000)).toBe(true);
  });

  it('closes a connection after keepAlive.maxRequests', async () => {
    const front = await frontWith({ keepAlive: { maxRequests: 3 } });
    const before = backend.accepted();
    for (let i = 0; i < 9; i++) expect((await get(front, '/echo')).statusCode).toBe(200);
    expect(backend.accepted() - before).toBe(3);
  });

  it.each([
    'GET',
    'POST',
    'DELETE',
    'PATCH',
  ])('a kept connection the backend closed under a %s is retried once on a new one', async (method) => {
    const front = await frontWith({ maxFails: 1 });
    // Two backends' worth of stale connections: the retry must not reuse another one.
    await Promise.all([get(front, '/slow'), get(front, '/slow')]);
    expect(front.proxy.stats().backends[0]!.idle).toBe(2);
    backend.closeKeptAfter(1);
    const body = method === 'GET' ? undefined : Buffer.from('a=1&b=2');
    const res = await get(front, '/echo', method, body);
    expect(res.statusCode).toBe(200);
    const seen = JSON.parse(res.body.toString());
    expect(seen).toMatchObject({ method, length: body?.length ?? 0 });
    const stats = front.proxy.stats().backends[0]!;
    // The kept connection failed first; not the backend's failure: not charged, it stays up.
    expect(stats).toMatchObject({
      failed: 0,
      state: 'up',
      lastError: 'SCGI_ERR_KEPT_CONNECTION_CLOSED',
    });
  });

  it('a client that goes away mid-response closes that backend connection', async () => {
    const front = await frontWith();
    const closedBefore = backend.closed();
    await new Promise<void>((resolve, reject) => {
      const socket = net.connect(front.port, '127.0.0.1');
      let got = 0;
      socket.on('data', (chunk: Buffer) => {
        got += chunk.length;
        if (got > 200_000) {
          socket.destroy();
          resolve();
        }
      });
      socket.on('error', reject);
      socket.write('GET /app/endless HTTP/1.1\r\nHost: x\r\n\r\n');
    });
    expect(await eventually(() => backend.closed() > closedBefore)).toBe(true);
    expect(await eventually(() => front.proxy.inFlight === 0)).toBe(true);
    expect(front.proxy.stats().backends[0]!.idle).toBe(0);
  });

  it('keepAlive: false sends no FCGI_KEEP_CONN and opens a connection per request', async () => {
    const front = await frontWith({ keepAlive: false });
    const before = backend.accepted();
    for (let i = 0; i < 5; i++) {
      const res = await get(front, '/echo');
      expect(JSON.parse(res.body.toString()).keepConn).toBe(false);
    }
    expect(backend.accepted() - before).toBe(5);
    expect(front.proxy.stats().backends[0]!.idle).toBe(0);
  });

  it('close() closes idle connections; nothing leaks (fds)', async () => {
    const fdsBefore = countOpenFds();
    const front = await frontWith({ maxConnections: 4 });
    await Promise.all(Array.from({ length: 8 }, () => get(front, '/slow')));
    for (const path of ['/close-before-head', '/overloaded', '/after-end', '/extra-stdout']) {
      await get(front, path);
    }
    expect(front.proxy.stats().backends[0]!.idle).toBeGreaterThan(0);
    fronts.splice(fronts.indexOf(front), 1);
    await front.close();
    expect(front.proxy.stats().backends[0]!.idle).toBe(0);
    expect(await eventually(() => backend.open() === 0)).toBe(true);
    expect(await eventually(() => countOpenFds() <= fdsBefore)).toBe(true);
  });
});
