import type { IncomingMessage } from 'node:http';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildCgiEnv,
  type CgiEnvOptions,
  type CgiEnvRequestInfo,
  type CgiRequest,
  type ResolvedCgiEnvOptions,
  resolveCgiEnvOptions,
} from '../src/cgi/env.js';
import type { EnvPair } from '../src/types.js';

type Json = string | { hex: string };
type Reply = { status: number; env: [string, Json][]; error?: string; clientPort: number };

/** Buffers travel as hex so the exact bytes are asserted. */
const hex = (s: string): Json => ({ hex: Buffer.from(s, 'latin1').toString('hex') });
const toJson = (env: EnvPair[]) =>
  env.map(([n, v]): [string, Json] => [n, typeof v === 'string' ? v : { hex: v.toString('hex') }]);

let setup: { options: ResolvedCgiEnvOptions | CgiEnvOptions; perRequest?: CgiEnvRequestInfo } = {
  options: resolveCgiEnvOptions(),
};

function handler(req: CgiRequest, res: http.ServerResponse | http2.Http2ServerResponse) {
  let body: string;
  try {
    body = JSON.stringify({ env: toJson(buildCgiEnv(req, setup.options, setup.perRequest)) });
  } catch (err) {
    res.statusCode = 400;
    body = JSON.stringify({ error: (err as { code?: string }).code, env: [] });
  }
  req.resume();
  res.end(body);
}

const server = http.createServer(handler);
let port = 0;
beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

/** Sends exact bytes and returns the env the handler built (or its error code). */
function raw(
  head: string,
  body = '',
  options: ResolvedCgiEnvOptions | CgiEnvOptions = resolveCgiEnvOptions(),
  perRequest?: CgiEnvRequestInfo,
): Promise<Reply> {
  setup = { options, perRequest };
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('connect', () => socket.write(Buffer.from(`${head}\r\n\r\n${body}`, 'latin1')));
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', reject);
    socket.on('end', () => {
      try {
        // Skip an interim "100 Continue" (sent for `Expect: 100-continue`).
        const text = Buffer.concat(chunks)
          .toString('latin1')
          .replace(/^HTTP\/1\.1 100 [^\r]*\r\n\r\n/, '');
        const status = Number(text.slice(9, 12));
        const json = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4));
        resolve({ status, ...json, clientPort: socket.localPort });
      } catch (err) {
        reject(err);
      }
    });
  });
}
const get = (
  target: string,
  headers: string[] = [],
  options?: CgiEnvOptions | ResolvedCgiEnvOptions,
) =>
  raw(
    [`GET ${target} HTTP/1.1`, 'Host: example.test', ...headers, 'Connection: close'].join('\r\n'),
    '',
    options,
  );
const value = (r: Reply, name: string) => r.env.find(([n]) => n === name)?.[1];
const names = (r: Reply) => r.env.map(([n]) => n);

const META = [
  ...'CONTENT_LENGTH SCGI REQUEST_METHOD REQUEST_URI QUERY_STRING CONTENT_TYPE DOCUMENT_URI'.split(
    ' ',
  ),
  ...'SCRIPT_NAME PATH_INFO SERVER_PROTOCOL REQUEST_SCHEME REMOTE_ADDR REMOTE_PORT'.split(' '),
  ...'SERVER_ADDR SERVER_NAME SERVER_PORT SERVER_SOFTWARE GATEWAY_INTERFACE'.split(' '),
];

describe('buildCgiEnv over real HTTP/1.1', () => {
  it('builds the exact environment, in order', async () => {
    const r = await raw(
      'GET /app/x%2Fy/%E9/../z?a=1&b=%20#frag HTTP/1.1\r\nHost: example.test:8080\r\nUser-Agent: t\r\nConnection: close',
      '',
      resolveCgiEnvOptions({ scriptName: '/app' }),
    );
    expect(r.env).toEqual([
      ['CONTENT_LENGTH', '0'],
      ['SCGI', '1'],
      ['REQUEST_METHOD', 'GET'],
      ['REQUEST_URI', '/app/x%2Fy/%E9/../z?a=1&b=%20'],
      ['QUERY_STRING', 'a=1&b=%20'],
      ['CONTENT_TYPE', ''],
      ['DOCUMENT_URI', hex('/app/x/y/z')],
      ['SCRIPT_NAME', '/app'],
      ['PATH_INFO', hex('/x/y/z')],
      ['SERVER_PROTOCOL', 'HTTP/1.1'],
      ['REQUEST_SCHEME', 'http'],
      ['REMOTE_ADDR', '127.0.0.1'],
      ['REMOTE_PORT', String(r.clientPort)],
      ['SERVER_ADDR', '127.0.0.1'],
      ['SERVER_NAME', 'example.test'],
      ['SERVER_PORT', String(port)],
      ['SERVER_SOFTWARE', 'scgi-core'],
      ['GATEWAY_INTERFACE', 'CGI/1.1'],
      ['HTTP_HOST', 'example.test:8080'],
      ['HTTP_USER_AGENT', 't'],
    ]);
  });

  it('forwards headers safely: joins, drops spoofing, httpoxy and hop-by-hop fields', async () => {
    const r = await raw(
      [
        'POST /f HTTP/1.1',
        'Host: example.test',
        'X-Dup: 1',
        'Cookie: a=1',
        'Content-Type: text/plain',
        'x-dup: 2',
        'X_Forwarded_For: 6.6.6.6',
        'Proxy: http://evil.test',
        'Cookie: b=2',
        'Authorization: Basic eHl6',
        'Content-Length: 5',
        'Keep-Alive: timeout=5',
        'Proxy-Connection: keep-alive',
        'TE: trailers',
        'Trailer: X-T',
        'Upgrade: foo',
        'X-Hop: gone',
        'Expect: 100-continue',
        'X-DUP: 3',
        'Connection: close, X-Hop',
      ].join('\r\n'),
      'hello',
    );
    expect(value(r, 'CONTENT_LENGTH')).toBe('5');
    expect(value(r, 'CONTENT_TYPE')).toBe('text/plain');
    expect(r.env.slice(META.length)).toEqual([
      ['HTTP_HOST', 'example.test'],
      ['HTTP_X_DUP', '1, 2, 3'],
      ['HTTP_COOKIE', 'a=1; b=2'],
      ['HTTP_AUTHORIZATION', 'Basic eHl6'],
    ]);
  });

  it('takes CONTENT_LENGTH from perRequest, else the header (normalised), else 0', async () => {
    const post = (cl: string) =>
      `POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ${cl}\r\nConnection: close`;
    expect(
      value(
        await raw(post('3'), 'abc', resolveCgiEnvOptions(), { contentLength: 9 }),
        'CONTENT_LENGTH',
      ),
    ).toBe('9');
    expect(value(await raw(post('003'), 'abc'), 'CONTENT_LENGTH')).toBe('3');
    const chunked = 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close';
    const r = await raw(chunked, '3\r\nabc\r\n0\r\n\r\n');
    expect(value(r, 'CONTENT_LENGTH')).toBe('0');
    expect(names(r)).not.toContain('HTTP_TRANSFER_ENCODING');
    const bad = await raw(post('3'), 'abc', resolveCgiEnvOptions(), { contentLength: -1 });
    expect(bad.error).toBe('SCGI_ERR_INVALID_OPTION');
  });

  it.each([
    ['/app', '/app', '', '/app', ''],
    ['/app/', '/app/', '/', '/app/', ''],
    ['/app//x//', '/app//x//', '//x//', '/app//x//', ''],
    ['/app/a/../b/./c', '/app/b/c', '/b/c', '/app/a/../b/./c', ''],
    ['/../app/x', '/app/x', '/x', '/../app/x', ''],
    ['/app/%C3%A9%E9', '/app/\xc3\xa9\xe9', '/\xc3\xa9\xe9', '/app/%C3%A9%E9', ''],
    ['/app/x#frag', '/app/x', '/x', '/app/x', ''],
    ['/app/x?q=1#f', '/app/x', '/x', '/app/x?q=1', 'q=1'],
    ['http://other.test/app/x?q=1', '/app/x', '/x', '/app/x?q=1', 'q=1'],
  ])('path %j -> DOCUMENT_URI %j, PATH_INFO %j', async (target, doc, info, uri, query) => {
    const r = await get(target, [], { scriptName: '/app' });
    expect(value(r, 'DOCUMENT_URI')).toEqual(hex(doc));
    expect(value(r, 'PATH_INFO')).toEqual(hex(info));
    expect(value(r, 'REQUEST_URI')).toBe(uri);
    expect(value(r, 'QUERY_STRING')).toBe(query);
  });

  it.each([
    ['/app/%2e%2e/admin', 'SCGI_ERR_BAD_PATH'],
    ['/app/..%2fadmin', 'SCGI_ERR_BAD_PATH'],
    ['/app/x/../../admin', 'SCGI_ERR_BAD_PATH'],
    ['/app2/x', 'SCGI_ERR_BAD_PATH'],
    ['/', 'SCGI_ERR_BAD_PATH'],
    ['/app/%00', 'SCGI_ERR_PATH_NUL'],
    ['*', 'SCGI_ERR_BAD_PATH'],
  ])('refuses %j with %s (never forwarded outside the mount)', async (target, code) => {
    const r = await get(target, [], { scriptName: '/app' });
    expect(r.status).toBe(400);
    expect(r.error).toBe(code);
  });

  it('uses perRequest.url and perRequest.scriptName over req.url and the option', async () => {
    const options = resolveCgiEnvOptions({ scriptName: '/app' });
    const perRequest = { url: '/mnt/a?x=1', scriptName: '/mnt' };
    const r = await raw(
      'GET /a?x=1 HTTP/1.1\r\nHost: h\r\nConnection: close',
      '',
      options,
      perRequest,
    );
    expect(value(r, 'REQUEST_URI')).toBe('/mnt/a?x=1');
    expect(value(r, 'SCRIPT_NAME')).toBe('/mnt');
    expect(value(r, 'PATH_INFO')).toEqual(hex('/a'));
    const bad = await raw('GET / HTTP/1.1\r\nHost: h\r\nConnection: close', '', options, {
      scriptName: '/x/',
    });
    expect(bad.error).toBe('SCGI_ERR_BAD_PATH');
  });

  it('refuses two Host headers (RFC 9112 §3.2)', async () => {
    const r = await get('/', ['Host: other.test']);
    expect(r.error).toBe('SCGI_ERR_BAD_REQUEST_HEADER');
  });

  it('takes SERVER_NAME from Host without the port, keeps IPv6 brackets, else the local address', async () => {
    const at = (host: string | null) =>
      raw(`GET / HTTP/1.0${host === null ? '' : `\r\nHost: ${host}`}`).then((r) =>
        value(r, 'SERVER_NAME'),
      );
    expect(await at('[::1]:8080')).toBe('[::1]');
    expect(await at('Example.test')).toBe('Example.test');
    expect(await at(null)).toBe('127.0.0.1');
    expect(await at('')).toBe('127.0.0.1');
  });

  it('honours serverName, serverPort and serverSoftware', async () => {
    const r = await get('/', [], {
      serverName: 'app.test',
      serverPort: '443',
      serverSoftware: 'x/1',
    });
    expect(value(r, 'SERVER_NAME')).toBe('app.test');
    expect(value(r, 'SERVER_PORT')).toBe('443');
    expect(value(r, 'SERVER_SOFTWARE')).toBe('x/1');
  });

  it('params replace in place and append new names; static and dynamic', async () => {
    const options = resolveCgiEnvOptions({
      params: new Map<string, string | Buffer>([
        ['SERVER_NAME', 'override.test'],
        ['HTTP_HOST', 'h.test'],
        ['APP_ENV', Buffer.from('prod')],
      ]),
    });
    const r = await get('/', ['X-A: 1'], options);
    expect(names(r)).toEqual([...META, 'HTTP_HOST', 'HTTP_X_A', 'APP_ENV']);
    expect(value(r, 'SERVER_NAME')).toBe('override.test');
    expect(value(r, 'HTTP_HOST')).toBe('h.test');
    expect(value(r, 'APP_ENV')).toEqual(hex('prod'));

    const dynamic = await get('/', [], { params: (req) => ({ METHOD_SEEN: req.method ?? '' }) });
    expect(dynamic.env.at(-1)).toEqual(['METHOD_SEEN', 'GET']);
    const forbidden = await get('/', [], { params: () => ({ CONTENT_LENGTH: '1' }) });
    expect(forbidden.error).toBe('SCGI_ERR_INVALID_OPTION');
  });
});

describe('trustProxy', () => {
  const xff = ['X-Forwarded-For: 203.0.113.7', 'X-Forwarded-Proto: https'];
  const meta = (r: Reply) => [
    value(r, 'REMOTE_ADDR'),
    value(r, 'REQUEST_SCHEME'),
    value(r, 'HTTPS'),
  ];

  it('ignores X-Forwarded-* by default but still forwards them as HTTP_*', async () => {
    const r = await get('/', xff);
    expect(meta(r)).toEqual(['127.0.0.1', 'http', undefined]);
    expect(names(r)).not.toContain('HTTPS');
    expect(value(r, 'HTTP_X_FORWARDED_FOR')).toBe('203.0.113.7');
    expect(value(r, 'HTTP_X_FORWARDED_PROTO')).toBe('https');
  });

  it.each([
    true,
    'loopback',
    '127.0.0.1',
    ['10.0.0.0/8', '127.0.0.0/8'],
    1,
    (_a: string, hop: number) => hop === 0,
  ])('uses them when the peer is trusted: %s', async (trustProxy) => {
    const r = await get('/', xff, { trustProxy });
    expect(meta(r)).toEqual(['203.0.113.7', 'https', 'on']);
    expect(value(r, 'REMOTE_PORT')).toBe(String(r.clientPort));
    expect(names(r).indexOf('HTTPS')).toBe(names(r).indexOf('REQUEST_SCHEME') + 1);
  });

  it.each([
    '10.0.0.0/8',
    '192.168.1.1, ::1',
    0,
    false,
  ])('ignores them for an untrusted peer: %s', async (trustProxy) => {
    expect(meta(await get('/', xff, { trustProxy }))).toEqual(['127.0.0.1', 'http', undefined]);
  });

  it('picks the address and scheme at the depth of trust', async () => {
    const chain = ['X-Forwarded-For: 198.51.100.1, 203.0.113.7', 'X-Forwarded-Proto: http, https'];
    expect(meta(await get('/', chain, { trustProxy: 1 }))).toEqual(['203.0.113.7', 'https', 'on']);
    expect(meta(await get('/', chain, { trustProxy: 2 }))).toEqual([
      '198.51.100.1',
      'http',
      undefined,
    ]);
    const odd = ['X-Forwarded-For: 203.0.113.7', 'X-Forwarded-Proto: ftp'];
    expect(meta(await get('/', odd, { trustProxy: true }))).toEqual([
      '203.0.113.7',
      'http',
      undefined,
    ]);
  });
});

describe('buildCgiEnv over real HTTP/2', () => {
  it('maps :authority to HTTP_HOST, joins cookie crumbs, drops pseudo-headers', async () => {
    const h2 = http2.createServer(handler);
    await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve));
    const h2port = (h2.address() as AddressInfo).port;
    setup = { options: resolveCgiEnvOptions({ scriptName: '/app' }) };
    const client = http2.connect(`http://127.0.0.1:${h2port}`);
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const stream = client.request({
          ':path': '/app/p?q=1',
          'x-a': '1',
          cookie: ['a=1', 'b=2'],
        });
        let data = '';
        stream.setEncoding('utf8');
        stream.on('data', (c: string) => {
          data += c;
        });
        stream.on('end', () => resolve(data));
        stream.on('error', reject);
      });
      const env: [string, Json][] = JSON.parse(body).env;
      expect(env.map(([n]) => n)).toEqual([...META, 'HTTP_HOST', 'HTTP_X_A', 'HTTP_COOKIE']);
      const get2 = (n: string) => env.find(([k]) => k === n)?.[1];
      expect(get2('SERVER_PROTOCOL')).toBe('HTTP/2.0');
      expect(get2('HTTP_HOST')).toBe(`127.0.0.1:${h2port}`);
      expect(get2('SERVER_NAME')).toBe('127.0.0.1');
      expect(get2('HTTP_COOKIE')).toBe('a=1; b=2');
      expect(get2('PATH_INFO')).toEqual(hex('/p'));
      expect(get2('QUERY_STRING')).toBe('q=1');
    } finally {
      client.close();
      await new Promise<void>((resolve) => h2.close(() => resolve()));
    }
  });
});

describe('buildCgiEnv on crafted requests', () => {
  const fake = (over: Partial<Record<string, unknown>> = {}) =>
    ({
      method: 'GET',
      url: '/',
      httpVersion: '1.1',
      rawHeaders: [],
      headers: {},
      socket: {
        remoteAddress: '::ffff:192.0.2.1',
        remotePort: 5000,
        localAddress: '::ffff:192.0.2.2',
        localPort: 8443,
        encrypted: true,
      },
      ...over,
    }) as unknown as IncomingMessage;
  const envOf = (req: IncomingMessage, options: CgiEnvOptions = {}) =>
    new Map(buildCgiEnv(req, options));

  it('shows IPv4-mapped addresses as IPv4 and marks TLS sockets https', () => {
    const env = envOf(fake());
    expect(env.get('REMOTE_ADDR')).toBe('192.0.2.1');
    expect(env.get('SERVER_ADDR')).toBe('192.0.2.2');
    expect(env.get('SERVER_NAME')).toBe('192.0.2.2');
    expect(env.get('REQUEST_SCHEME')).toBe('https');
    expect(env.get('HTTPS')).toBe('on');
  });

  it('brackets an IPv6 local address in SERVER_NAME; a Unix socket gets the default port', () => {
    expect(envOf(fake({ socket: { localAddress: '::1', localPort: 1 } })).get('SERVER_NAME')).toBe(
      '[::1]',
    );
    const unix = envOf(fake({ socket: {} }));
    expect([unix.get('REMOTE_ADDR'), unix.get('REMOTE_PORT'), unix.get('SERVER_PORT')]).toEqual([
      '',
      '',
      '80',
    ]);
  });

  it.each([
    'a\r\nX-Injected: 1',
    'a\nb',
    'a\0b',
  ])('refuses a header value with NUL, CR or LF: %j', (v) => {
    expect(() => buildCgiEnv(fake({ rawHeaders: ['X-A', v] }), {})).toThrow(
      expect.objectContaining({ code: 'SCGI_ERR_BAD_REQUEST_HEADER', statusCode: 400 }),
    );
  });

  it('refuses NUL, CR or LF in a rewritten request-target', () => {
    expect(() => buildCgiEnv(fake(), {}, { url: '/a?x=\r\n' })).toThrow(
      expect.objectContaining({ code: 'SCGI_ERR_BAD_PATH' }),
    );
  });

  it('gives every environment pairs of its own: one changed in place never reaches the next', () => {
    // What a rewriteEnv hook may do. Constant pairs and static params are not shared arrays.
    const options = resolveCgiEnvOptions({ params: { SCRIPT_FILENAME: '/srv/index.php' } });
    const first = buildCgiEnv(fake(), options);
    const before = first.map(([n, v]) => [n, v]);
    for (const pair of first) (pair as unknown as string[])[1] = 'changed';
    const second = buildCgiEnv(fake(), options);
    expect(second).toEqual(before);
    expect(second.find(([n]) => n === 'SCRIPT_FILENAME')).toEqual([
      'SCRIPT_FILENAME',
      '/srv/index.php',
    ]);
  });

  it('stays correct past the header-name cache bound', () => {
    const rawHeaders = Array.from({ length: 3000 }, (_, i) => [`X-N${i}`, String(i)]).flat();
    const env = buildCgiEnv(fake({ rawHeaders }), {});
    expect(env.length).toBe(META.length + 1 + 3000);
    expect(env.at(-1)).toEqual(['HTTP_X_N2999', '2999']);
  });
});

describe('resolveCgiEnvOptions', () => {
  it('freezes a new object and never mutates the input', () => {
    const params = { A: Buffer.from('x') };
    const input = { scriptName: '/app', trustProxy: ['loopback'], params };
    const snapshot = {
      ...input,
      trustProxy: [...input.trustProxy],
      params: { A: Buffer.from('x') },
    };
    const resolved = resolveCgiEnvOptions(input);
    expect(Object.isFrozen(resolved)).toBe(true);
    expect(Object.isFrozen(resolved.params)).toBe(true);
    expect(input).toEqual(snapshot);
    params.A[0] = 0x79;
    expect(buildCgiEnv(fakeReq('/app'), resolved).at(-1)).toEqual(['A', Buffer.from('x')]);
    expect(resolveCgiEnvOptions()).toMatchObject({
      scriptName: '',
      trustProxy: null,
      serverSoftware: 'scgi-core',
    });
  });

  it.each([
    ['scriptName', { scriptName: '/app/' }],
    ['scriptName', { scriptName: 'app' }],
    ['scriptName', { scriptName: '/' }],
    ['scriptName', { scriptName: '/a/../b' }],
    ['scriptName', { scriptName: 42 }],
    ['trustProxy', { trustProxy: 'not-an-ip' }],
    ['trustProxy', { trustProxy: '10.0.0.0/99' }],
    ['trustProxy', { trustProxy: -1 }],
    ['trustProxy', { trustProxy: {} }],
    ['serverPort', { serverPort: 0 }],
    ['serverPort', { serverPort: 70000 }],
    ['serverPort', { serverPort: '8o' }],
    ['serverName', { serverName: '' }],
    ['serverSoftware', { serverSoftware: 'a\nb' }],
    ['params', { params: { CONTENT_LENGTH: '1' } }],
    ['params', { params: [['SCGI', '0']] }],
    ['params', { params: { X: 'a\0' } }],
    ['params', { params: [['', 'x']] }],
    ['params', { params: { X: 1 } }],
    ['options', null],
  ])('names the option: %s', (option, input) => {
    expect(() => resolveCgiEnvOptions(input as CgiEnvOptions)).toThrow(
      expect.objectContaining({
        code: 'SCGI_ERR_INVALID_OPTION',
        message: expect.stringContaining(`option ${option}`),
      }),
    );
  });
});

function fakeReq(url: string): IncomingMessage {
  return {
    method: 'GET',
    url,
    httpVersion: '1.1',
    rawHeaders: [],
    headers: {},
    socket: {},
  } as unknown as IncomingMessage;
}
