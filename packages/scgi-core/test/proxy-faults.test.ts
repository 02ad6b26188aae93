// The engine against a hostile SCGI backend whose every byte the test controls: each failure
// gives its typed error (before the head) or a destroyed body (after it), and nothing leaks.
import { type ChildProcess, spawn } from 'node:child_process';
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import {
  type AddressInfo,
  connect,
  createServer as createNetServer,
  type Server as NetServer,
  type Socket,
} from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ScgiProxy, type ScgiProxyOptions } from '../src/index.js';
import { ScgiHeadDecoder } from '../src/scgi/head.js';
import { get } from './http-client.js';

type Behaviour = (socket: Socket, env: Record<string, string>, body: Buffer) => void;
let behave: Behaviour = () => {};
let backend: NetServer;
let backendAddr: string;
const backendSockets = new Set<Socket>();

beforeAll(async () => {
  backend = createNetServer((socket) => {
    backendSockets.add(socket);
    socket.on('close', () => backendSockets.delete(socket));
    socket.on('error', () => {});
    const decoder = new ScgiHeadDecoder();
    let env: Record<string, string> | null = null;
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => {
      if (env === null) {
        const head = decoder.push(c);
        if (head === null) return;
        env = head.env;
        chunks.push(decoder.rest);
        behave(socket, env, decoder.rest);
      } else chunks.push(c);
    });
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  backendAddr = `127.0.0.1:${(backend.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => backend.close(() => r())));

/** A front: a plain node:http server that proxies everything through the engine. */
async function front(opts: Partial<ScgiProxyOptions> = {}) {
  const proxy = new ScgiProxy({ upstream: backendAddr, ...opts });
  const errors: Array<{ code: string; phase: string }> = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    proxy.request(req, { res }).then(
      (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.body.on('error', (err: Error & { code: string }) => {
          errors.push({ code: err.code, phase: 'body' });
          res.destroy();
        });
        r.body.pipe(res);
      },
      (err: Error & { code: string; statusCode: number }) => {
        errors.push({ code: err.code, phase: 'head' });
        res.writeHead(err.statusCode, { 'content-type': 'text/plain' });
        res.end(err.code);
      },
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    errors,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

const cgi = (socket: Socket, text: string) => socket.end(Buffer.from(text, 'latin1'));
let f: Awaited<ReturnType<typeof front>>;
afterEach(async () => {
  await f?.close();
  behave = () => {};
});

/** A front over `proxy` that answers a failure with its status, then `code cause.message`. */
async function answerWithCause(proxy: ScgiProxy): Promise<typeof f> {
  const s = createServer((req, res) => {
    proxy.request(req, { res }).then(
      () => res.end('unexpected'),
      (e: Error & { code: string; statusCode: number; cause: Error }) => {
        res.writeHead(e.statusCode);
        res.end(`${e.code} ${e.cause.message}`);
      },
    );
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return {
    port: (s.address() as AddressInfo).port,
    errors: [],
    close: () => new Promise((r) => s.close(() => r())),
  };
}

describe('failures before the response head', () => {
  it('refused connection -> 502 SCGI_ERR_CONNECT', async () => {
    const probe = createNetServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    f = await front({ upstream: `127.0.0.1:${port}` });
    const res = await get(f.port);
    expect(res.status).toBe(502);
    expect(res.body.toString()).toBe('SCGI_ERR_CONNECT');
  });

  it('missing Unix socket -> 502 SCGI_ERR_CONNECT (ENOENT as cause)', async () => {
    const proxy = new ScgiProxy({ upstream: 'unix:/nonexistent/dir/app.sock' });
    const s = createServer(async (req, res) => {
      try {
        await proxy.request(req);
      } catch (err) {
        const e = err as Error & { code: string; cause: { code: string } };
        res.end(`${e.code} ${e.cause.code}`);
      }
    });
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    f = {
      port: (s.address() as AddressInfo).port,
      errors: [],
      close: () => new Promise((r) => s.close(() => r())),
    };
    expect((await get(f.port)).body.toString()).toBe('SCGI_ERR_CONNECT ENOENT');
  });

  it('a connector that throws -> 503 SCGI_ERR_NO_SOCKET: its slot comes back, the backend is not charged, close() ends', async () => {
    let calls = 0;
    const proxy = new ScgiProxy({
      upstream: backendAddr,
      maxConnections: 1,
      queueTimeout: 500,
      connector: () => {
        calls++;
        throw new Error('a bug in the connector');
      },
    });
    f = await answerWithCause(proxy);
    // One slot: each request would wait behind a leaked one and time out in the queue.
    for (let i = 0; i < 3; i++) {
      const res = await get(f.port);
      expect(res.status).toBe(503);
      expect(res.body.toString()).toBe('SCGI_ERR_NO_SOCKET a bug in the connector');
    }
    expect(calls).toBe(3);
    expect(proxy.inFlight).toBe(0);
    const [b] = proxy.stats().backends;
    expect(b).toMatchObject({ active: 0, state: 'up', failed: 0 });
    // Resolves: nothing is left in flight.
    let timer: NodeJS.Timeout | undefined;
    const hung = new Promise((_, reject) => {
      timer = setTimeout(reject, 2000, new Error('close() hung'));
    });
    await Promise.race([proxy.close(), hung]).finally(() => clearTimeout(timer));
  });

  it('a connector that calls back with an error of its own -> 502 SCGI_ERR_CONNECT, that error as cause', async () => {
    const proxy = new ScgiProxy({
      upstream: backendAddr,
      retryTimeout: 0,
      connector: (_address, _options, callback) => {
        setImmediate(() => callback(new Error('TLS handshake failed') as never, null));
      },
    });
    f = await answerWithCause(proxy);
    const res = await get(f.port);
    expect(res.status).toBe(502);
    expect(res.body.toString()).toBe('SCGI_ERR_CONNECT TLS handshake failed');
    expect(proxy.inFlight).toBe(0);
    await proxy.close();
  });

  it('a health check whose connector throws fails at once: the backend is marked down, nothing rejects unhandled', async () => {
    const proxy = new ScgiProxy({
      upstream: backendAddr,
      healthCheck: { interval: 20, timeout: 60_000 },
      connector: () => {
        throw new Error('a bug in the connector');
      },
    });
    try {
      // Marked down by the failed checks, long before the 60 s check timeout.
      await vi.waitFor(() => expect(proxy.stats().backends[0]!.healthy).toBe(false), {
        timeout: 5000,
      });
    } finally {
      await proxy.close(0);
    }
  });

  it('a connect that hangs (full backlog) -> 504 SCGI_ERR_CONNECT_TIMEOUT', async () => {
    // A listener that never accepts: once its backlog is full the kernel drops further SYNs.
    const py: ChildProcess = spawn('python3', [
      '-c',
      'import socket,sys,time\ns=socket.socket();s.bind(("127.0.0.1",0));s.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(30)',
    ]);
    const port: number = await new Promise((resolve) =>
      py.stdout!.once('data', (d) => resolve(Number(String(d).trim()))),
    );
    const fillers: Socket[] = [];
    for (let i = 0; i < 4; i++) {
      const s = connect(port, '127.0.0.1');
      s.on('error', () => {});
      fillers.push(s);
    }
    await new Promise((r) => setTimeout(r, 200));
    try {
      f = await front({ upstream: `127.0.0.1:${port}`, connectTimeout: 300 });
      const started = Date.now();
      const res = await get(f.port);
      expect(res.status).toBe(504);
      expect(res.body.toString()).toBe('SCGI_ERR_CONNECT_TIMEOUT');
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      for (const s of fillers) s.destroy();
      py.kill('SIGKILL');
    }
  });

  it('no head in time -> 504 SCGI_ERR_HEADERS_TIMEOUT, backend socket closed', async () => {
    behave = () => {};
    f = await front({ headersTimeout: 200 });
    const res = await get(f.port);
    expect(res.status).toBe(504);
    expect(res.body.toString()).toBe('SCGI_ERR_HEADERS_TIMEOUT');
    await expect.poll(() => backendSockets.size).toBe(0);
  });

  it('idle before the head -> 504 SCGI_ERR_IDLE_TIMEOUT', async () => {
    f = await front({ headersTimeout: 0, idleTimeout: 200 });
    const res = await get(f.port);
    expect(res.status).toBe(504);
    expect(res.body.toString()).toBe('SCGI_ERR_IDLE_TIMEOUT');
  });

  it('closed without a head -> 502 SCGI_ERR_UPSTREAM_CLOSED', async () => {
    behave = (s) => s.end();
    f = await front();
    expect((await get(f.port)).body.toString()).toBe('SCGI_ERR_UPSTREAM_CLOSED');
    behave = (s) => cgi(s, 'Status: 200 OK\r\nContent-Type: text/pl');
    expect((await get(f.port)).body.toString()).toBe('SCGI_ERR_UPSTREAM_CLOSED');
  });

  it('reset before the head -> 502 SCGI_ERR_UPSTREAM_RESET', async () => {
    behave = (s) => s.resetAndDestroy();
    f = await front();
    const res = await get(f.port);
    expect(res.status).toBe(502);
    expect(res.body.toString()).toBe('SCGI_ERR_UPSTREAM_RESET');
  });

  it.each([
    ['Status: abc\r\n\r\n', 'SCGI_ERR_RESPONSE_STATUS'],
    ['Status: 100 Continue\r\n\r\n', 'SCGI_ERR_RESPONSE_STATUS'],
    ['Content-Type text/plain\r\n\r\n', 'SCGI_ERR_RESPONSE_HEADER'],
    ['Bad Name: x\r\n\r\n', 'SCGI_ERR_RESPONSE_HEADER'],
    ['X-A: a\x00b\r\n\r\n', 'SCGI_ERR_RESPONSE_HEADER'],
    [`X-Big: ${'a'.repeat(70000)}\r\n\r\n`, 'SCGI_ERR_RESPONSE_HEAD_TOO_LARGE'],
    // A chunk-encoded CGI body would reach the client corrupted once the header is stripped.
    [
      'Status: 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
      'SCGI_ERR_RESPONSE_HEADER',
    ],
  ])('malformed head %j -> 502 %s', async (text, code) => {
    behave = (s) => cgi(s, text);
    f = await front();
    const res = await get(f.port);
    expect(res.status).toBe(502);
    expect(res.body.toString()).toBe(code);
  });

  it('a Content-Length over maxBodySize -> 413 before connecting', async () => {
    let connected = 0;
    behave = () => {
      connected++;
    };
    f = await front({ maxBodySize: 10 });
    const res = await get(f.port, '/', 'POST', Buffer.alloc(11));
    expect(res.status).toBe(413);
    expect(res.body.toString()).toBe('SCGI_ERR_BODY_TOO_LARGE');
    expect(connected).toBe(0);
  });
});

describe('after the response head', () => {
  it('a short body against Content-Length cuts the client connection (SCGI_ERR_UPSTREAM_BODY) when bodies stream (maxBufferedBody 0)', async () => {
    behave = (s) => cgi(s, 'Status: 200 OK\r\nContent-Length: 100\r\n\r\nonly this');
    f = await front({ maxBufferedBody: 0 });
    const res = await get(f.port);
    expect(res.status).toBe(200);
    expect(res.cut).toBe(true);
    expect(f.errors).toEqual([{ code: 'SCGI_ERR_UPSTREAM_BODY', phase: 'body' }]);
  });

  it('a short body against a Content-Length over maxBufferedBody streams, then cuts the client connection', async () => {
    behave = (s) => cgi(s, 'Status: 200 OK\r\nContent-Length: 65537\r\n\r\nonly this');
    f = await front();
    const res = await get(f.port);
    expect(res.status).toBe(200);
    expect(res.cut).toBe(true);
    expect(res.body.toString()).toBe('only this');
    expect(f.errors).toEqual([{ code: 'SCGI_ERR_UPSTREAM_BODY', phase: 'body' }]);
  });

  it('a short body against a Content-Length within maxBufferedBody (default) -> a clean 502 SCGI_ERR_UPSTREAM_BODY', async () => {
    behave = (s) => cgi(s, 'Status: 200 OK\r\nContent-Length: 65536\r\n\r\nonly this');
    f = await front();
    const res = await get(f.port);
    expect(res.status).toBe(502);
    expect(res.cut).toBe(false);
    expect(res.body.toString()).toBe('SCGI_ERR_UPSTREAM_BODY');
    expect(f.errors).toEqual([{ code: 'SCGI_ERR_UPSTREAM_BODY', phase: 'head' }]);
  });

  it('a reset while a small body is collected -> a clean 502 SCGI_ERR_UPSTREAM_BODY', async () => {
    behave = (s) => {
      s.write('Status: 200 OK\r\nContent-Length: 100\r\n\r\nfirst part');
      setTimeout(() => s.resetAndDestroy(), 50);
    };
    f = await front();
    const res = await get(f.port);
    expect(res.status).toBe(502);
    expect(res.cut).toBe(false);
    expect(res.body.toString()).toBe('SCGI_ERR_UPSTREAM_BODY');
    expect(f.errors).toEqual([{ code: 'SCGI_ERR_UPSTREAM_BODY', phase: 'head' }]);
  });

  it('bytes past Content-Length are dropped', async () => {
    behave = (s) => cgi(s, 'Status: 200 OK\r\nContent-Length: 5\r\n\r\nhello, and more');
    f = await front();
    const res = await get(f.port);
    expect(res.body.toString()).toBe('hello');
    expect(res.cut).toBe(false);
  });

  it('a reset mid-body without Content-Length is not a clean end', async () => {
    behave = (s) => {
      s.write('Status: 200 OK\r\n\r\nfirst part');
      setTimeout(() => s.resetAndDestroy(), 50);
    };
    f = await front();
    const res = await get(f.port);
    expect(res.status).toBe(200);
    expect(res.cut).toBe(true);
    expect(f.errors[0]?.code).toBe('SCGI_ERR_UPSTREAM_BODY');
  });

  it('a backend stalling mid-body -> SCGI_ERR_IDLE_TIMEOUT and a cut connection', async () => {
    behave = (s) => s.write('Status: 200 OK\r\n\r\nsome');
    f = await front({ idleTimeout: 200 });
    const res = await get(f.port);
    expect(res.cut).toBe(true);
    expect(f.errors).toEqual([{ code: 'SCGI_ERR_IDLE_TIMEOUT', phase: 'body' }]);
    await expect.poll(() => backendSockets.size).toBe(0);
  });

  it('a backend stalling while a small body is collected -> 504 SCGI_ERR_IDLE_TIMEOUT, backend socket closed', async () => {
    behave = (s) => s.write('Status: 200 OK\r\nContent-Length: 100\r\n\r\nsome');
    f = await front({ idleTimeout: 200 });
    const res = await get(f.port);
    expect(res.status).toBe(504);
    expect(res.cut).toBe(false);
    expect(res.body.toString()).toBe('SCGI_ERR_IDLE_TIMEOUT');
    expect(f.errors).toEqual([{ code: 'SCGI_ERR_IDLE_TIMEOUT', phase: 'head' }]);
    await expect.poll(() => backendSockets.size).toBe(0);
  });

  it('HEAD and 204/304 have no body even when the backend sends one', async () => {
    behave = (s) => cgi(s, 'Status: 200 OK\r\nContent-Length: 5\r\n\r\nhello');
    f = await front();
    const head = await get(f.port, '/', 'HEAD');
    expect(head.status).toBe(200);
    expect(head.body.length).toBe(0);
    behave = (s) => cgi(s, 'Status: 204 No Content\r\n\r\nstray bytes');
    const none = await get(f.port);
    expect(none.status).toBe(204);
    expect(none.body.length).toBe(0);
  });

  it('a client that goes away mid-download closes the backend connection at once', async () => {
    let backendClosed = false;
    behave = (s) => {
      s.once('close', () => {
        backendClosed = true;
      });
      s.write('Status: 200 OK\r\n\r\n');
      const timer = setInterval(() => s.write(Buffer.alloc(16384)), 5);
      s.once('close', () => clearInterval(timer));
    };
    f = await front();
    await new Promise<void>((resolve) => {
      const req = httpRequest({ port: f.port, host: '127.0.0.1', path: '/' }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => {});
      req.end();
    });
    await expect.poll(() => backendClosed, { timeout: 2000 }).toBe(true);
  });
});

describe('resources', () => {
  it('leaves no sockets or timers behind after a mix of successes and failures', async () => {
    f = await front({ headersTimeout: 100 });
    const count = () => {
      const info = process.getActiveResourcesInfo();
      return info.filter((t) => t === 'TCPSocketWrap' || t === 'Timeout').length;
    };
    // Warm up once so lazily created handles exist before the baseline.
    behave = (s) => cgi(s, 'Status: 200 OK\r\n\r\nok');
    await get(f.port);
    await new Promise((r) => setTimeout(r, 50));
    const baseline = count();
    for (let i = 0; i < 20; i++) {
      behave = [
        (s: Socket) => cgi(s, 'Status: 200 OK\r\n\r\nok'),
        (s: Socket) => s.resetAndDestroy(),
        (s: Socket) => cgi(s, 'garbage\r\n\r\n'),
        () => {},
      ][i % 4]!;
      await get(f.port);
    }
    await expect.poll(() => count(), { timeout: 3000 }).toBeLessThanOrEqual(baseline);
  });
});
