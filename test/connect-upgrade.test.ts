/**
 * Requests that are not plain request/response exchanges, through both adapters on real sockets:
 * - CONNECT: Node emits it apart from requests and, with no listener, closes the connection
 *   unanswered. We answer 405 SCGI_ERR_METHOD_NOT_ALLOWED with Connection: close, as nginx
 *   does, unless the app listens for CONNECT itself.
 * - An upgrade request (WebSocket, h2c): SCGI cannot carry the upgraded connection, and Node
 *   drops the bytes that come with such a request (the client's first frames). 501
 *   SCGI_ERR_UPGRADE with Connection: close, and nothing reaches the backend.
 * Each check counts this process's descriptors before and after: nothing may stay open.
 */
import { createServer, type Server } from 'node:http';
import http2 from 'node:http2';
import net, { type AddressInfo, type Server as NetServer } from 'node:net';
import express from 'express';
import { scgiProxy } from 'express-scgi';
import Fastify from 'fastify';
import fastifyScgi from 'fastify-scgi';
import { createScgiServer } from 'scgi-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from './helpers/corpus.js';
import { type Front, type FrontKind, startFastifyFront, startFront } from './helpers/fronts.js';
import { countOpenFds } from './helpers/http.js';

let backend: NetServer;
let upstream: string;
let served = 0;

beforeAll(async () => {
  backend = createScgiServer((req, res) => {
    served++;
    req.resume();
    req.on('end', () => {
      const text = `${req.env.REQUEST_METHOD} ${req.env.PATH_INFO}`;
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': String(text.length) });
      res.end(text);
    });
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  upstream = `127.0.0.1:${(backend.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => backend.close(() => r())));

interface Exchange {
  /** Everything the server sent, as latin-1 text. */
  text: string;
  status: number;
  /** Header `name` (lower case) of the first response, or undefined. */
  header(name: string): string | undefined;
  /** The body of the first response, by its Content-Length. */
  body: string;
  /** The server closed the connection (within the wait). */
  closedByServer: boolean;
}

/**
 * Writes `bytes` and reads until the server closes or `waitMs` pass (a kept-alive connection is
 * then closed by us). Bounded: never a fixed sleep.
 */
function exchange(url: string, bytes: string, waitMs = 3000): Promise<Exchange> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    let closedByServer = false;
    const timer = setTimeout(() => socket.destroy(), waitMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => {
      closedByServer = true;
      socket.destroy();
    });
    socket.on('error', () => {
      closedByServer = true;
    });
    socket.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end === -1) {
        reject(new Error(`no response head; got ${JSON.stringify(text)}`));
        return;
      }
      const [statusLine = '', ...lines] = text.slice(0, end).split('\r\n');
      const headers = new Map<string, string>();
      for (const line of lines) {
        const colon = line.indexOf(':');
        headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
      }
      const length = Number(headers.get('content-length') ?? 0);
      resolve({
        text,
        status: Number(statusLine.split(' ')[1]),
        header: (name) => headers.get(name),
        body: text.slice(end + 4, end + 4 + length),
        closedByServer,
      });
    });
    socket.write(Buffer.from(bytes, 'latin1'));
  });
}

const head = (lines: string[]) => `${lines.join('\r\n')}\r\n\r\n`;
const CONNECT = head(['CONNECT example.com:443 HTTP/1.1', 'Host: example.com:443']);
/** A WebSocket handshake (RFC 6455 §1.3), then a masked text frame sent at once. */
const WEBSOCKET = `${head([
  'GET /app/chat HTTP/1.1',
  'Host: x',
  'Connection: Upgrade',
  'Upgrade: websocket',
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
  'Sec-WebSocket-Version: 13',
])}\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58`;
/** An h2c upgrade (RFC 7540 §3.2) of a POST with a body, a pipelined request behind it. */
const H2C = `${head([
  'POST /app/h2 HTTP/1.1',
  'Host: x',
  'Connection: Upgrade, HTTP2-Settings',
  'Upgrade: h2c',
  'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA',
  'Content-Length: 5',
])}hello${head(['GET /app/next HTTP/1.1', 'Host: x'])}`;

/** Waits (bounded) until this process has no more descriptors than `before`. */
async function expectFdsBack(before: number): Promise<void> {
  const back = await eventually(() => countOpenFds() <= before);
  if (!back) expect({ before, now: countOpenFds() }).toBe('fd count back to the baseline');
}

describe.each(['fastify', 'express'] as FrontKind[])('%s', (kind) => {
  let front: Front;
  let baseline: number;
  beforeAll(async () => {
    front = await startFront(
      kind,
      upstream,
      '/app',
      kind === 'fastify' ? {} : { respondOnError: true },
    );
    const warm = await exchange(
      front.url,
      head(['GET /app/x HTTP/1.1', 'Host: x', 'Connection: close']),
    );
    expect(warm.status).toBe(200);
    baseline = countOpenFds();
  });
  afterAll(() => front.close());

  it('CONNECT: 405 SCGI_ERR_METHOD_NOT_ALLOWED, Connection: close, nothing reaches the backend', async () => {
    const before = served;
    const res = await exchange(front.url, CONNECT);
    expect(res.status).toBe(405);
    expect(res.header('connection')).toBe('close');
    expect(res.header('allow')).toBe('');
    expect(JSON.parse(res.body)).toMatchObject({
      statusCode: 405,
      code: 'SCGI_ERR_METHOD_NOT_ALLOWED',
    });
    expect(res.closedByServer).toBe(true);
    expect(served).toBe(before);
    await expectFdsBack(baseline);
  });

  it('CONNECT with tunnel bytes already sent: still one 405, then the connection closes', async () => {
    const res = await exchange(front.url, `${CONNECT}\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03`);
    expect(res.status).toBe(405);
    expect(res.text.match(/HTTP\/1\.1 /g)).toHaveLength(1);
    expect(res.closedByServer).toBe(true);
    await expectFdsBack(baseline);
  });

  it('a WebSocket upgrade: 501 SCGI_ERR_UPGRADE, Connection: close, nothing reaches the backend', async () => {
    const before = served;
    const res = await exchange(front.url, WEBSOCKET);
    expect(res.status).toBe(501);
    expect(res.header('connection')).toBe('close');
    const body = JSON.parse(res.body);
    expect(body.code).toBe('SCGI_ERR_UPGRADE');
    expect(body.message).toContain('"websocket"');
    expect(body.message).toContain('cannot carry an upgraded connection');
    // The frame is not taken for a request, and no 101 is ever sent.
    expect(res.text.match(/HTTP\/1\.1 /g)).toHaveLength(1);
    expect(res.closedByServer).toBe(true);
    expect(served).toBe(before);
    await expectFdsBack(baseline);
  });

  it('an h2c upgrade: 501 SCGI_ERR_UPGRADE and a close, so the pipelined request is not lost unseen', async () => {
    const before = served;
    const res = await exchange(front.url, H2C);
    expect(res.status).toBe(501);
    expect(res.header('connection')).toBe('close');
    expect(JSON.parse(res.body).code).toBe('SCGI_ERR_UPGRADE');
    expect(res.closedByServer).toBe(true);
    expect(served).toBe(before);
    await expectFdsBack(baseline);
  });

  it.each([
    ['Upgrade without the upgrade connection option', ['Upgrade: websocket']],
    [
      'an upgrade asked in HTTP/1.0 (RFC 9110 §7.8: ignored)',
      ['Connection: upgrade', 'Upgrade: websocket'],
    ],
  ])('%s is a plain request, forwarded', async (name, lines) => {
    const version = name.includes('1.0') ? 'HTTP/1.0' : 'HTTP/1.1';
    const res = await exchange(
      front.url,
      head([
        `GET /app/plain ${version}`,
        'Host: x',
        ...lines,
        ...(version === 'HTTP/1.1' ? ['Connection: close'] : []),
      ]),
    );
    expect(res.status).toBe(200);
    expect(res.body).toBe('GET /plain');
  });
});

describe('an app that answers CONNECT itself keeps it', () => {
  it("fastify-scgi leaves CONNECT to the app's own listener", async () => {
    const front = await startFastifyFront({ upstream, prefix: '/app' }, (app) => {
      app.server.on('connect', (_req, socket) => {
        socket.end('HTTP/1.1 200 Connection Established\r\nX-Mine: 1\r\n\r\n');
      });
    });
    try {
      const res = await exchange(front.url, CONNECT);
      expect(res.status).toBe(200);
      expect(res.header('x-mine')).toBe('1');
      expect(res.text.match(/HTTP\/1\.1 /g)).toHaveLength(1);
    } finally {
      await front.close();
    }
  });
});

describe('fastify-scgi over HTTP/2 (h2c)', () => {
  it('CONNECT gets 405 SCGI_ERR_METHOD_NOT_ALLOWED on its stream, and the session goes on', async () => {
    const app = Fastify({ http2: true });
    await app.register(fastifyScgi, { upstream, prefix: '/app' });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const before = countOpenFds();
    const session = http2.connect(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}`);
    try {
      const ask = (headers: http2.OutgoingHttpHeaders) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const stream = session.request(headers, { endStream: headers[':method'] !== 'CONNECT' });
          let status = 0;
          let body = '';
          stream.on('response', (h) => {
            status = Number(h[':status']);
          });
          stream.on('data', (c: Buffer) => {
            body += c.toString();
          });
          stream.on('end', () => resolve({ status, body }));
          stream.on('error', reject);
        });
      const refused = await ask({ ':method': 'CONNECT', ':authority': 'example.com:443' });
      expect(refused.status).toBe(405);
      expect(JSON.parse(refused.body).code).toBe('SCGI_ERR_METHOD_NOT_ALLOWED');
      const plain = await ask({ ':method': 'GET', ':path': '/app/after' });
      expect(plain).toEqual({ status: 200, body: 'GET /after' });
    } finally {
      session.close();
      await app.close();
    }
    await expectFdsBack(before);
  });
});

describe('express-scgi before its first request', () => {
  async function listen(attach: boolean): Promise<{ url: string; server: Server }> {
    const app = express();
    const mw = scgiProxy({ upstream, respondOnError: true });
    app.use('/app', mw);
    const server = createServer(app);
    if (attach) mw.attach(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
  }
  const stop = (server: Server) =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });

  it('with attach(server), the very first CONNECT gets 405 and the connection closes', async () => {
    const before = countOpenFds();
    const { url, server } = await listen(true);
    try {
      const res = await exchange(url, CONNECT);
      expect(res.status).toBe(405);
      expect(JSON.parse(res.body).code).toBe('SCGI_ERR_METHOD_NOT_ALLOWED');
      expect(res.closedByServer).toBe(true);
    } finally {
      await stop(server);
    }
    await expectFdsBack(before);
  });

  it('without attach, it answers CONNECT once it has seen a request on the server', async () => {
    const before = countOpenFds();
    const { url, server } = await listen(false);
    try {
      const warm = await exchange(
        url,
        head(['GET /app/x HTTP/1.1', 'Host: x', 'Connection: close']),
      );
      expect(warm.status).toBe(200);
      const res = await exchange(url, CONNECT);
      expect(res.status).toBe(405);
      expect(res.closedByServer).toBe(true);
    } finally {
      await stop(server);
    }
    await expectFdsBack(before);
  });

  it('attach(server) returns the server and is idempotent with the first request', async () => {
    const app = express();
    const mw = scgiProxy({ upstream });
    app.use('/app', mw);
    const server = createServer(app);
    expect(mw.attach(server)).toBe(server);
    mw.attach(server);
    expect(server.listenerCount('connect')).toBe(1);
    await mw.close(0);
  });
});
