// Response buffering (`maxBufferedBody`): which bodies the engine collects whole before it hands
// the response on (`bodyBuffer`), which stream, what a failure while collecting becomes, and the
// client-abort paths next to it (a request waiting in the pool queue, a large streamed download).
import diagnosticsChannel from 'node:diagnostics_channel';
import { getEventListeners } from 'node:events';
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { type AddressInfo, connect, createServer as createNetServer, type Socket } from 'node:net';
import { text } from 'node:stream/consumers';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Exchange } from '../src/engine/exchange.js';
import {
  RequestAbortedError,
  resolveProxyOptions,
  type ScgiError,
  ScgiHeadDecoder,
  ScgiProxy,
  type ScgiProxySettings,
  type ScgiResponse,
  type UpstreamOption,
} from '../src/index.js';
import { scgiProtocol } from '../src/scgi/protocol.js';
import type { Outcome } from '../src/upstream/pool.js';
import { get } from './http-client.js';

type Behaviour = (socket: Socket, env: Record<string, string>) => void;

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A raw SCGI backend on 127.0.0.1: `behave` writes whatever bytes the test wants. */
async function backend(behave: Behaviour) {
  const sockets = new Set<Socket>();
  let connections = 0;
  const server = createNetServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const decoder = new ScgiHeadDecoder();
    const onData = (c: Buffer) => {
      const head = decoder.push(c);
      if (head === null) return;
      socket.removeListener('data', onData);
      socket.resume();
      behave(socket, head.env);
    };
    socket.on('data', onData);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    sockets,
    connections: () => connections,
  };
}

/**
 * A plain node:http front over the engine that records what `request()` gave, and sends
 * `bodyBuffer` in one write when there is one (as the adapters do), else pipes the stream.
 */
async function front(upstream: UpstreamOption, opts: ScgiProxySettings = {}) {
  const proxy = new ScgiProxy({ ...opts, upstream });
  const responses: ScgiResponse[] = [];
  const errors: ScgiError[] = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    proxy.request(req, { res }).then(
      (r) => {
        responses.push(r);
        res.writeHead(r.statusCode, r.headers);
        if (r.bodyBuffer !== null) {
          res.end(r.bodyBuffer);
          return;
        }
        r.body.on('error', () => res.destroy());
        r.body.pipe(res);
      },
      (err: ScgiError) => {
        errors.push(err);
        if (res.destroyed) return;
        res.writeHead(err.statusCode, { 'content-type': 'text/plain' });
        res.end(err.code);
      },
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(async () => {
    await proxy.close(0);
    await new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  });
  return { port: (server.address() as AddressInfo).port, proxy, responses, errors };
}

const cgi = (socket: Socket, bytes: string | Buffer) =>
  socket.end(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
const head = (length: number | null, extra = '') =>
  `Status: 200 OK\r\nContent-Type: application/octet-stream\r\n${
    length === null ? '' : `Content-Length: ${length}\r\n`
  }${extra}\r\n`;
const bytes = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7) & 255));

/** Writes `parts` one at a time, `gap` ms apart, then ends the connection. */
function dribble(socket: Socket, parts: Array<string | Buffer>, gap = 20, onLast?: () => void) {
  let i = 0;
  const next = () => {
    if (socket.destroyed) return;
    if (i === parts.length - 1) onLast?.();
    const part = parts[i++]!;
    if (i === parts.length) socket.end(part);
    else socket.write(part, () => setTimeout(next, gap));
  };
  next();
}

describe('bodyBuffer: which bodies are collected whole', () => {
  it('a Content-Length within the limit arriving in several backend chunks: the exact bytes, resolved only once they are all in', async () => {
    const body = bytes(30_000);
    let lastSent = false;
    const b = await backend((s) =>
      dribble(
        s,
        [
          head(body.length),
          body.subarray(0, 10),
          body.subarray(10, 12_000),
          body.subarray(12_000, 29_999),
          body.subarray(29_999),
        ],
        20,
        () => {
          lastSent = true;
        },
      ),
    );
    const f = await front(b.address);
    const res = await get(f.port);
    expect(res).toMatchObject({ status: 200, cut: false });
    expect(res.body.equals(body)).toBe(true);
    expect(res.headers['content-length']).toBe(String(body.length));
    const [r] = f.responses;
    expect(lastSent).toBe(true);
    expect(r!.bodyBuffer).not.toBeNull();
    expect(r!.bodyBuffer!.equals(body)).toBe(true);
    expect(r!.headers['content-length']).toBe(String(body.length));
    // Collected whole: the exchange was over when the response was handed on.
    expect(r!.timings.total).toBeGreaterThanOrEqual(r!.timings.head);
    expect(f.proxy.inFlight).toBe(0);
  });

  it.each([
    [1000, 1000, true],
    [1000, 1001, false],
    [undefined, 65_536, true],
    [undefined, 65_537, false],
  ])('maxBufferedBody %s, Content-Length %s: collected whole = %s', async (limit, length, whole) => {
    const body = bytes(length);
    const b = await backend((s) =>
      dribble(s, [head(length), body.subarray(0, 100), body.subarray(100)]),
    );
    const f = await front(b.address, limit === undefined ? {} : { maxBufferedBody: limit });
    const res = await get(f.port);
    expect(res).toMatchObject({ status: 200, cut: false });
    expect(res.body.equals(body)).toBe(true);
    const r = f.responses[0]!;
    if (whole) {
      expect(r.bodyBuffer?.equals(body)).toBe(true);
    } else {
      expect(r.bodyBuffer).toBeNull();
    }
  });

  it('a body of unknown length streams (bodyBuffer null)', async () => {
    const b = await backend((s) => dribble(s, [head(null), 'first, ', 'second']));
    const f = await front(b.address);
    const res = await get(f.port);
    expect(res).toMatchObject({ status: 200, cut: false });
    expect(res.body.toString()).toBe('first, second');
    expect(f.responses[0]!.bodyBuffer).toBeNull();
  });

  it('maxBufferedBody 0 streams even a tiny body', async () => {
    const b = await backend((s) => cgi(s, `${head(5)}hello`));
    const f = await front(b.address, { maxBufferedBody: 0 });
    const res = await get(f.port);
    expect(res.body.toString()).toBe('hello');
    expect(f.responses[0]!.bodyBuffer).toBeNull();
  });

  it('a large Content-Length streams: the client has the first bytes before the backend sent the rest', async () => {
    const total = 1024 * 1024;
    let release: () => void = () => {};
    const b = await backend((s) => {
      s.write(`${head(total)}${'a'.repeat(1000)}`);
      release = () => s.end(Buffer.alloc(total - 1000, 'b'));
    });
    const f = await front(b.address);
    const got = await new Promise<{ first: Buffer; rest: Promise<Buffer> }>((resolve, reject) => {
      const req = httpRequest({ port: f.port, host: '127.0.0.1', path: '/' }, (res) => {
        const chunks: Buffer[] = [];
        const rest = new Promise<Buffer>((r) => res.on('end', () => r(Buffer.concat(chunks))));
        res.once('data', (c: Buffer) => resolve({ first: c, rest }));
        res.on('data', (c: Buffer) => chunks.push(c));
      });
      req.on('error', reject);
      req.end();
    });
    expect(got.first.toString()).toBe('a'.repeat(1000));
    expect(f.responses[0]!.bodyBuffer).toBeNull();
    release();
    expect((await got.rest).length).toBe(total);
  });

  it.each([
    [
      'HEAD',
      'Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12345\r\n\r\nstray',
      '12345',
    ],
    ['GET', 'Status: 204 No Content\r\n\r\nstray bytes', undefined],
    ['GET', 'Status: 304 Not Modified\r\nContent-Length: 5\r\n\r\nstray', '5'],
    ['GET', 'Status: 200 OK\r\nContent-Length: 0\r\n\r\nstray', '0'],
  ])('%s %j: an empty bodyBuffer, with buffering on or off', async (method, answer, length) => {
    const b = await backend((s) => cgi(s, answer));
    for (const limit of [undefined, 0]) {
      const f = await front(b.address, limit === undefined ? {} : { maxBufferedBody: limit });
      const res = await get(f.port, '/', method);
      expect(res.cut).toBe(false);
      expect(res.body.length).toBe(0);
      const r = f.responses[0]!;
      expect(r.bodyBuffer).not.toBeNull();
      expect(r.bodyBuffer!.length).toBe(0);
      // The backend's Content-Length stays (HEAD: the length a GET would have).
      expect(r.headers['content-length']).toBe(length);
      // The body stream is empty and ends.
      expect(await text(r.body)).toBe('');
    }
  });

  it('`body` still works when bodyBuffer is set: a lazy stream of the same bytes, the same stream each time', async () => {
    const body = bytes(5000);
    const b = await backend((s) =>
      dribble(s, [head(body.length), body.subarray(0, 1), body.subarray(1)]),
    );
    const proxy = new ScgiProxy({ upstream: b.address });
    cleanups.push(() => proxy.close(0));
    const server = createServer(async (req, res) => {
      const r = await proxy.request(req, { res });
      expect(r.bodyBuffer?.equals(body)).toBe(true);
      expect(r.body).toBe(r.body);
      // Consumed as a stream (say by an onResponse hook) instead of bodyBuffer.
      res.writeHead(r.statusCode, r.headers);
      r.body.pipe(res);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => server.close(r)));
    const res = await get((server.address() as AddressInfo).port);
    expect(res).toMatchObject({ status: 200, cut: false });
    expect(res.body.equals(body)).toBe(true);
  });

  it('bytes past the Content-Length are dropped, in the same chunk or a later one', async () => {
    for (const parts of [
      [`${head(5)}hello, and more`],
      [head(5), 'hel', 'lo', ' and more'],
      [`${head(5)}hell`, 'o!!!', 'more'],
    ]) {
      const b = await backend((s) => dribble(s, parts, 5));
      const f = await front(b.address);
      const res = await get(f.port);
      expect(res).toMatchObject({ status: 200, cut: false });
      expect(res.body.toString()).toBe('hello');
      expect(f.responses[0]!.bodyBuffer!.toString()).toBe('hello');
    }
  });
});

describe('failures while a small body is collected', () => {
  const CHANNELS = ['start', 'upstream', 'head', 'end', 'error'] as const;
  function record() {
    const events: Array<{ channel: string; id: number; code?: string; upstream?: string }> = [];
    for (const name of CHANNELS) {
      const fn = (m: unknown) => {
        const msg = m as { id: number; upstream?: string; error?: { code: string } };
        events.push({ channel: name, id: msg.id, upstream: msg.upstream, code: msg.error?.code });
      };
      diagnosticsChannel.subscribe(`scgi-core:request:${name}`, fn);
      cleanups.push(() => diagnosticsChannel.unsubscribe(`scgi-core:request:${name}`, fn));
    }
    return events;
  }

  it('a body shorter than its Content-Length: 502 SCGI_ERR_UPSTREAM_BODY; diagnostics start, upstream, error; no answer for the pool', async () => {
    const b = await backend((s) => dribble(s, [head(100), 'only ', 'this']));
    const events = record();
    const f = await front(b.address);
    const res = await get(f.port);
    expect(res).toMatchObject({ status: 502, cut: false });
    expect(res.body.toString()).toBe('SCGI_ERR_UPSTREAM_BODY');
    expect(f.responses).toEqual([]);
    expect(f.errors.map((e) => [e.code, e.statusCode, e.message])).toEqual([
      [
        'SCGI_ERR_UPSTREAM_BODY',
        502,
        'The SCGI backend response body ended early: connection closed with 91 bytes of Content-Length missing',
      ],
    ]);
    expect(events.map((e) => [e.channel, e.upstream, e.code])).toEqual([
      ['start', undefined, undefined],
      ['upstream', b.address, undefined],
      ['error', b.address, 'SCGI_ERR_UPSTREAM_BODY'],
    ]);
    expect(new Set(events.map((e) => e.id)).size).toBe(1);
    expect(f.proxy.stats().backends[0]).toMatchObject({
      active: 0,
      served: 0,
      failed: 0,
      lastError: 'SCGI_ERR_UPSTREAM_BODY',
      latencyEwma: null,
    });
    expect(f.proxy.inFlight).toBe(0);
  });

  it('a body shorter than its Content-Length is not retried on another backend, even for a GET', async () => {
    const bad = await backend((s) => dribble(s, [head(100), 'only this']));
    const good = await backend((s) => cgi(s, `${head(2)}ok`));
    const f = await front([bad.address, good.address]);
    const res = await get(f.port);
    expect([res.status, res.body.toString()]).toEqual([502, 'SCGI_ERR_UPSTREAM_BODY']);
    expect([bad.connections(), good.connections()]).toEqual([1, 0]);
  });
});

describe('client aborts', () => {
  it('a client that disconnects while its request waits in a saturated pool queue leaves the queue and never reaches a backend', async () => {
    let held: Socket | null = null;
    const b = await backend((s) => {
      held = s; // answers nothing until the test lets it
    });
    const f = await front([{ address: b.address, maxConnections: 1 }], {
      maxQueue: 10,
      queueTimeout: 10_000,
    });
    const first = get(f.port);
    await expect.poll(() => b.connections()).toBe(1);
    // The second request queues behind the first.
    const client = connect(f.port, '127.0.0.1');
    client.on('error', () => {});
    client.write('GET /second HTTP/1.1\r\nHost: x\r\n\r\n');
    await expect.poll(() => f.proxy.stats().queued).toBe(1);
    client.destroy();
    await expect.poll(() => f.proxy.stats().queued, { timeout: 1000 }).toBe(0);
    expect(f.errors.map((e) => e.code)).toEqual(['SCGI_ERR_REQUEST_ABORTED']);
    // The slot frees up: nothing is waiting for it any more.
    cgi(held!, `${head(2)}ok`);
    expect((await first).body.toString()).toBe('ok');
    await new Promise((r) => setTimeout(r, 100));
    expect(b.connections()).toBe(1);
    expect(f.proxy.stats().backends[0]).toMatchObject({ active: 0, served: 1 });
  });

  it('a caller signal that aborts while the request waits in the queue takes it out too', async () => {
    let held: Socket | null = null;
    const b = await backend((s) => {
      held = s;
    });
    const proxy = new ScgiProxy({
      upstream: [{ address: b.address, maxConnections: 1 }],
      maxQueue: 10,
      queueTimeout: 10_000,
    });
    cleanups.push(() => proxy.close(0));
    const controller = new AbortController();
    const outcomes: string[] = [];
    const server = createServer((req, res) => {
      const signal = req.url === '/second' ? controller.signal : undefined;
      proxy.request(req, { res, signal }).then(
        (r) => {
          res.writeHead(r.statusCode, r.headers);
          res.end(r.bodyBuffer);
        },
        (err: ScgiError) => {
          outcomes.push(err.code);
          res.writeHead(err.statusCode);
          res.end(err.code);
        },
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(
      () =>
        new Promise<void>((r) => {
          server.closeAllConnections();
          server.close(() => r());
        }),
    );
    const port = (server.address() as AddressInfo).port;
    const first = get(port, '/first');
    await expect.poll(() => b.connections()).toBe(1);
    const second = get(port, '/second');
    await expect.poll(() => proxy.stats().queued).toBe(1);
    controller.abort();
    expect(await second).toMatchObject({ status: 400 });
    expect(proxy.stats().queued).toBe(0);
    expect(outcomes).toEqual(['SCGI_ERR_REQUEST_ABORTED']);
    cgi(held!, `${head(2)}ok`);
    expect((await first).body.toString()).toBe('ok');
    expect(b.connections()).toBe(1);
  });

  it('a client that disconnects mid-download of a large streamed body closes the backend socket at once', async () => {
    let backendClosed = 0;
    let firstData = 0;
    const b = await backend((s) => {
      s.once('close', () => {
        backendClosed = Date.now();
      });
      // 100 MiB announced: far over maxBufferedBody, so it streams.
      s.write(head(100 * 1024 * 1024));
      const timer = setInterval(() => s.write(Buffer.alloc(16384, 1)), 5);
      s.once('close', () => clearInterval(timer));
    });
    const f = await front(b.address);
    await new Promise<void>((resolve) => {
      const req = httpRequest({ port: f.port, host: '127.0.0.1', path: '/' }, (res) => {
        res.once('data', () => {
          firstData = Date.now();
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => {});
      req.end();
    });
    await expect.poll(() => backendClosed, { timeout: 2000 }).toBeGreaterThan(0);
    expect(backendClosed - firstData).toBeLessThan(500);
    expect(f.responses[0]!.bodyBuffer).toBeNull();
    await expect.poll(() => f.proxy.inFlight).toBe(0);
    expect(f.proxy.stats().backends[0]!.active).toBe(0);
  });

  it('an exchange destroyed before it started (its client went away meanwhile) never connects', async () => {
    let connects = 0;
    const opts = resolveProxyOptions({
      upstream: '127.0.0.1:9',
      connector: () => {
        connects++;
      },
    });
    const outcomes: Outcome[] = [];
    const exchange = new Exchange({
      options: opts,
      address: opts.backends[0]!.address,
      protocol: scgiProtocol,
      requestHead: Buffer.from('24:CONTENT_LENGTH\x000\x00SCGI\x001\x00,'),
      body: { kind: 'none' },
      noResponseBody: false,
      onDone: (o) => outcomes.push(o),
    });
    exchange.destroy(new RequestAbortedError('the client went away'));
    await expect(exchange.start()).rejects.toMatchObject({ code: 'SCGI_ERR_REQUEST_ABORTED' });
    expect(connects).toBe(0);
    expect(outcomes).toHaveLength(1);
    expect(outcomes[0]).toMatchObject({ ok: false, failure: false });
  });

  it('request() called again and again on one res keeps one close listener, and a client leaving still aborts the latest', async () => {
    let held: Socket | null = null;
    const b = await backend((s, env) => {
      if (env.PATH_INFO === '/hold')
        held = s; // answers never
      else cgi(s, `${head(2)}ok`);
    });
    const proxy = new ScgiProxy({ upstream: b.address });
    cleanups.push(() => proxy.close(0));
    const listeners: number[] = [];
    const errors: string[] = [];
    const server = createServer(async (req, res) => {
      // What an error hook that tries again does: more requests for the same res.
      for (let i = 0; i < 12; i++) await proxy.request(req, { res, url: '/ok' });
      listeners.push(res.listenerCount('close'));
      await proxy.request(req, { res, url: '/hold' }).catch((e: ScgiError) => errors.push(e.code));
      res.destroy();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => server.close(r)));
    const port = (server.address() as AddressInfo).port;
    const client = connect(port, '127.0.0.1');
    client.on('error', () => {});
    client.write('GET /x HTTP/1.1\r\nHost: a\r\n\r\n');
    await vi.waitFor(() => expect(held).not.toBeNull(), { timeout: 5000 });
    const closed = new Promise((r) => held!.once('close', r));
    client.destroy();
    // The client went away: the held exchange is aborted and its backend socket closed.
    await closed;
    await vi.waitFor(() => expect(errors).toEqual(['SCGI_ERR_REQUEST_ABORTED']), { timeout: 5000 });
    // Ours, once, after 12 requests (res has no other 'close' listener here).
    expect(listeners).toEqual([1]);
  });

  it('a caller signal shared by many requests keeps no listener once they are over', async () => {
    const b = await backend((s) => cgi(s, `${head(2)}ok`));
    const proxy = new ScgiProxy({ upstream: b.address });
    cleanups.push(() => proxy.close(0));
    const controller = new AbortController();
    const server = createServer(async (req, res) => {
      // No Content-Length: the body is spooled, which watches the signal.
      const r = await proxy.request(req, { res, signal: controller.signal });
      res.writeHead(r.statusCode, r.headers);
      res.end(r.bodyBuffer);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => server.close(r)));
    const port = (server.address() as AddressInfo).port;
    for (let i = 0; i < 15; i++) {
      const body = await new Promise<string>((resolve, reject) => {
        const req = httpRequest(
          {
            port,
            host: '127.0.0.1',
            path: '/',
            method: 'POST',
            headers: { 'transfer-encoding': 'chunked' },
          },
          (res) => {
            res.setEncoding('utf8');
            let t = '';
            res.on('data', (c: string) => {
              t += c;
            });
            res.on('end', () => resolve(t));
          },
        );
        req.on('error', reject);
        req.end('some body');
      });
      expect(body).toBe('ok');
    }
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });
});
