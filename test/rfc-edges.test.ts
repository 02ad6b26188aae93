/**
 * HTTP rules at the edges of the corpus, through both adapters to a Node SCGI server whose
 * every byte the test controls:
 * - a request Transfer-Encoding other than chunked alone is a 501 (RFC 9112 §6.1), never
 *   forwarded with its coding left in the body;
 * - an invalid Host is a 400 (RFC 9112 §3.2), valid ones pass, the empty one too;
 * - an empty Cookie line adds no "; " to HTTP_COOKIE;
 * - a 204 carries no Content-Length (RFC 9110 §8.6) and a 205 no content (§15.3.6).
 */
import type { AddressInfo, Server as NetServer } from 'node:net';
import { createScgiServer } from 'scgi-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Front, type FrontKind, startFront } from './helpers/fronts.js';
import { headerValue, type RawResponse, rawRequest } from './helpers/http.js';

let backend: NetServer;
let upstream: string;
let served = 0;

beforeAll(async () => {
  backend = createScgiServer((req, res) => {
    served++;
    const path = req.env.PATH_INFO;
    if (path === '/proto') {
      req.socket.end(
        'Status: 200 OK\r\nContent-Type: text/plain\r\n__proto__: a\r\n__proto__: b\r\nX-After: 1\r\nContent-Length: 2\r\n\r\nok',
      );
      return;
    }
    if (path === '/204' || path === '/205') {
      // Raw bytes: a backend that breaks the rule the front must fix.
      const reason = path === '/204' ? 'No Content' : 'Reset Content';
      req.socket.end(
        `Status: ${path.slice(1)} ${reason}\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello`,
      );
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.stringify({ env: req.env, body: Buffer.concat(chunks).toString('latin1') });
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(body);
    });
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  upstream = `127.0.0.1:${(backend.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => backend.close(() => r())));

describe.each(['fastify', 'express'] as FrontKind[])('%s', (kind) => {
  let front: Front;
  beforeAll(async () => {
    front = await startFront(
      kind,
      upstream,
      '/app',
      kind === 'fastify' ? {} : { respondOnError: true },
    );
  });
  afterAll(() => front.close());

  /** The request lines, `Connection: close` unless `keepAlive`, then the body. */
  const send = (lines: string[], body = '', keepAlive = false): Promise<RawResponse> =>
    rawRequest(
      front.url,
      Buffer.from(
        `${[...lines, ...(keepAlive ? [] : ['Connection: close'])].join('\r\n')}\r\n\r\n${body}`,
        'latin1',
      ),
    );
  const codeOf = (res: RawResponse) => JSON.parse(res.body.toString()).code as string;
  /** Expects a 200 whose backend read `body`; gives the environment it saw. */
  const forwarded = (res: RawResponse, body: string) => {
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(res.body.toString()).body).toBe(body);
    return envOf(res);
  };
  /** Sends, and expects the error `status` / `code` with nothing reaching the backend. */
  const refused = async (request: () => Promise<RawResponse>, status: number, code: string) => {
    const before = served;
    const res = await request();
    expect(res.statusCode).toBe(status);
    expect(codeOf(res)).toBe(code);
    expect(served).toBe(before);
    return res;
  };
  const envOf = (res: RawResponse) => JSON.parse(res.body.toString()).env as Record<string, string>;

  describe('request Transfer-Encoding', () => {
    it.each([
      ['gzip, chunked', ['Transfer-Encoding: gzip, chunked']],
      ['deflate, chunked', ['Transfer-Encoding: deflate, chunked']],
      [
        'gzip, then chunked on its own line',
        ['Transfer-Encoding: gzip', 'Transfer-Encoding: chunked'],
      ],
    ])('%s: 501 SCGI_ERR_TRANSFER_CODING, nothing reaches the backend', async (_, te) => {
      await refused(
        () => send(['POST /app/env HTTP/1.1', 'Host: x', ...te], '3\r\nabc\r\n0\r\n\r\n'),
        501,
        'SCGI_ERR_TRANSFER_CODING',
      );
    });

    it('chunked alone (any case) is forwarded with its decoded length', async () => {
      const res = await send(
        ['POST /app/env HTTP/1.1', 'Host: x', 'Transfer-Encoding: Chunked'],
        '3\r\nabc\r\n0\r\n\r\n',
      );
      expect(forwarded(res, 'abc').CONTENT_LENGTH).toBe('3');
    });
  });

  describe('request line version and framing', () => {
    it.each([
      'HTTP/2.0',
      'HTTP/0.9',
    ])('%s on an HTTP/1 connection: 505 SCGI_ERR_HTTP_VERSION, nothing reaches the backend', async (version) => {
      await refused(
        () => send([`GET /app/env ${version}`, 'Host: x']),
        505,
        'SCGI_ERR_HTTP_VERSION',
      );
    });

    it('HTTP/1.0 with Transfer-Encoding: 400 SCGI_ERR_BAD_FRAMING, and the connection closes', async () => {
      // Keep-alive asked for: the close must come from the faulty framing.
      const lines = ['POST /app/env HTTP/1.0', 'Host: x', 'Connection: keep-alive'];
      const res = await refused(
        () => send([...lines, 'Transfer-Encoding: chunked'], '3\r\nabc\r\n0\r\n\r\n', true),
        400,
        'SCGI_ERR_BAD_FRAMING',
      );
      expect(headerValue(res, 'connection')).toBe('close');
    });

    it('HTTP/1.0 with a Content-Length body is forwarded', async () => {
      const res = await send(['POST /app/env HTTP/1.0', 'Host: x', 'Content-Length: 2'], 'hi');
      expect(forwarded(res, 'hi').SERVER_PROTOCOL).toBe('HTTP/1.0');
    });
  });

  describe('Host', () => {
    it.each([
      'a b/c',
      'user@evil.example',
      ':8080',
      'x/y',
      'a\\b',
      'host:80a',
    ])('Host %j: 400 SCGI_ERR_BAD_REQUEST_HEADER, nothing reaches the backend', async (host) => {
      await refused(
        () => send(['GET /app/env HTTP/1.1', `Host: ${host}`]),
        400,
        'SCGI_ERR_BAD_REQUEST_HEADER',
      );
    });

    it.each([
      ['example.com:8080', 'example.com'],
      ['[::1]:3000', '[::1]'],
      ['127.0.0.1', '127.0.0.1'],
      ["xn--bcher-kva.example!$&'()*+,;=~_", "xn--bcher-kva.example!$&'()*+,;=~_"],
      ['host:', 'host'],
    ])('Host %j is forwarded (SERVER_NAME %j)', async (host, serverName) => {
      const res = await send(['GET /app/env HTTP/1.1', `Host: ${host}`]);
      expect(res.statusCode).toBe(200);
      expect(envOf(res).HTTP_HOST).toBe(host);
      expect(envOf(res).SERVER_NAME).toBe(serverName);
    });

    it('an empty Host is forwarded as an empty HTTP_HOST', async () => {
      const res = await send(['GET /app/env HTTP/1.1', 'Host: ']);
      expect(res.statusCode).toBe(200);
      expect(envOf(res).HTTP_HOST).toBe('');
    });
  });

  describe('Content-Type the backend judges, not the front', () => {
    it.each([
      ['foo'],
      [''],
      ['/'],
      ['text'],
    ])('Content-Type %j with a body is forwarded as CONTENT_TYPE', async (type) => {
      const res = await send(
        ['POST /app/env HTTP/1.1', 'Host: x', `Content-Type: ${type}`, 'Content-Length: 2'],
        'hi',
      );
      expect(forwarded(res, 'hi').CONTENT_TYPE).toBe(type);
    });

    it('QUERY without a Content-Type is forwarded without one', async () => {
      const res = await send(['QUERY /app/env HTTP/1.1', 'Host: x', 'Content-Length: 3'], 'a=1');
      const env = forwarded(res, 'a=1');
      expect(env.REQUEST_METHOD).toBe('QUERY');
      expect(env.CONTENT_TYPE).toBe('');
    });
  });

  describe('absolute-form request-target (RFC 9112 §3.2.2: its authority, not Host)', () => {
    it('HTTP_HOST and SERVER_NAME come from the target', async () => {
      const res = await send(['GET http://other.example:8080/app/env?q=1 HTTP/1.1', 'Host: x']);
      expect(res.statusCode).toBe(200);
      const env = envOf(res);
      expect(env.HTTP_HOST).toBe('other.example:8080');
      expect(env.SERVER_NAME).toBe('other.example');
      expect(env.REQUEST_URI).toBe('/app/env?q=1');
      expect(env.PATH_INFO).toBe('/env');
    });

    it('an authority with userinfo is a 400, nothing reaches the backend', async () => {
      await refused(
        () => send(['GET http://user@evil.example/app/env HTTP/1.1', 'Host: x']),
        400,
        'SCGI_ERR_BAD_PATH',
      );
    });

    it('a path that is not UTF-8 once decoded is forwarded as bytes', async () => {
      const res = await send(['GET http://other.example/app/%E9?x HTTP/1.1', 'Host: x']);
      expect(res.statusCode).toBe(200);
      // The Node SCGI server decodes variables as latin1: the byte E9 is U+00E9.
      expect(envOf(res).PATH_INFO).toBe('/\u00e9');
      expect(envOf(res).REQUEST_URI).toBe('/app/%E9?x');
    });
  });

  it('an empty Cookie line adds nothing to HTTP_COOKIE', async () => {
    const res = await send([
      'GET /app/env HTTP/1.1',
      'Host: x',
      'Cookie: ',
      'Cookie: a=1',
      'Cookie: ',
      'Cookie: b=2',
    ]);
    expect(envOf(res).HTTP_COOKIE).toBe('a=1; b=2');
  });

  it('a response header named __proto__ is passed on like any other (its lines joined)', async () => {
    const res = await send(['GET /app/proto HTTP/1.1', 'Host: x']);
    expect(res.statusCode).toBe(200);
    expect(res.headers.filter(([n]) => n === '__proto__').map(([, v]) => v)).toEqual(['a, b']);
    expect(headerValue(res, 'x-after')).toBe('1');
    expect(res.body.toString()).toBe('ok');
  });

  it('a 204 loses the Content-Length the backend sent', async () => {
    const res = await send(['GET /app/204 HTTP/1.1', 'Host: x']);
    expect(res.statusCode).toBe(204);
    expect(headerValue(res, 'content-length')).toBeUndefined();
    expect(res.body.length).toBe(0);
  });

  it('a 205 goes out with Content-Length 0 and without the body the backend sent', async () => {
    const res = await send(['GET /app/205 HTTP/1.1', 'Host: x']);
    expect(res.statusCode).toBe(205);
    expect(headerValue(res, 'content-length')).toBe('0');
    expect(res.body.length).toBe(0);
    expect(res.closedEarly).toBe(false);
  });
});
