/**
 * Parity with nginx, the reference SCGI client. nginx 1.22 (`scgi_pass`, Debian nginx-light,
 * stock scgi_params), fastify-scgi and express-scgi sit in front of the SAME uWSGI backend (one
 * Unix socket), all three mounted at /app, and get the same raw requests. What the app sees
 * (examples/python/app.py `/env`: the WSGI environ) and what the client gets back must be
 * identical, except for the intentional differences below. Each has a precise rule (the exact
 * nginx and exact proxy values it accepts), and a row with the same key in
 * docs/nginx-differences.md, which this file checks so that the test and the doc stay in step.
 * A difference no rule explains fails the test: treat it as a bug until shown otherwise.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, type Peer, startNginx, startUwsgi } from './helpers/backends.js';
import { has } from './helpers/binaries.js';
import { type Front, startExpressFront, startFastifyFront } from './helpers/fronts.js';
import { type RawResponse, rawRequest } from './helpers/http.js';

const DOC_PATH = new URL('../docs/nginx-differences.md', import.meta.url);
const MOUNT = '/app';

type Env = Record<string, string>;

/** One request sent to all three fronts; `{host}` becomes `127.0.0.1:<that front's port>`. */
interface Case {
  name: string;
  /** The exact bytes (latin-1), request line to body. */
  raw: string;
  /** Keys of the intentional differences this request shows (env cases: besides ALWAYS). */
  differences: string[];
}

/** A request head from `\n`-separated lines, with CRLFs and the blank line. */
const head = (lines: string) => `${lines.replaceAll('\n', '\r\n')}\r\n\r\n`;

// ---- requests: what the app sees (/env) -------------------------------------------------------

const ENV_CASES: Case[] = [
  {
    name: 'plain GET with a query',
    raw: head('GET /app/env/x?a=1&b=%20+c&&d HTTP/1.1\nHost: {host}\nUser-Agent: parity/1'),
    differences: [],
  },
  {
    name: 'unicode path (caf%C3%A9) is decoded to its UTF-8 bytes',
    raw: head('GET /app/env/caf%C3%A9?q=caf%C3%A9 HTTP/1.1\nHost: {host}'),
    differences: [],
  },
  {
    name: 'a path that is not UTF-8 once decoded (%E9) is still forwarded, as the byte E9',
    raw: head('GET /app/env/%E9t%E9 HTTP/1.1\nHost: {host}'),
    differences: [],
  },
  {
    name: '%2F is decoded into PATH_INFO, REQUEST_URI stays raw',
    raw: head('GET /app/env/a%2Fb HTTP/1.1\nHost: {host}'),
    differences: [],
  },
  {
    name: 'dot segments (also %2e%2e) are resolved inside the mount',
    raw: head('GET /app/env/a/./b/../c/%2e%2e/d HTTP/1.1\nHost: {host}'),
    differences: [],
  },
  {
    name: 'repeated slashes',
    raw: head('GET /app//env//x HTTP/1.1\nHost: {host}'),
    differences: ['merge-slashes'],
  },
  {
    name: 'a #fragment in the request-target',
    raw: head('GET /app/env/f?a=1#frag HTTP/1.1\nHost: {host}'),
    differences: ['fragment'],
  },
  {
    name: 'absolute-form request-target',
    raw: head('GET http://other.example/app/env?z=1 HTTP/1.1\nHost: {host}'),
    differences: ['absolute-form-host'],
  },
  {
    name: 'HTTP/1.0',
    raw: head('GET /app/env HTTP/1.0\nHost: {host}'),
    differences: [],
  },
  {
    name: 'a WebDAV method (PROPFIND)',
    raw: head('PROPFIND /app/env HTTP/1.1\nHost: {host}\nDepth: 1'),
    differences: [],
  },
  {
    name: 'duplicate headers, cased differently',
    raw: head('GET /app/env HTTP/1.1\nHost: {host}\nX-Dup: one\nx-dup: two'),
    differences: ['duplicate-header'],
  },
  {
    name: 'several Cookie headers',
    raw: head('GET /app/env HTTP/1.1\nHost: {host}\nCookie: a=1\nCOOKIE: b=2; c=3\ncookie: d=4'),
    differences: ['duplicate-cookie'],
  },
  {
    name: 'header values: obs-text bytes, empty, inner whitespace',
    raw: head(
      'GET /app/env HTTP/1.1\nHost: {host}\nX-Latin: caf\xe9 \xff\nX-Empty:\nX-Sp:  a  b  ',
    ),
    differences: [],
  },
  {
    name: 'Proxy header (httpoxy)',
    raw: head('GET /app/env HTTP/1.1\nHost: {host}\nProxy: http://evil.example:3128'),
    differences: ['HTTP_PROXY'],
  },
  {
    name: 'a header name with an underscore is dropped by both',
    raw: head('GET /app/env HTTP/1.1\nHost: {host}\nX_Forwarded_For: 6.6.6.6\nX-Ok: 1'),
    differences: [],
  },
  {
    name: 'X-Forwarded-* from an untrusted client: forwarded, REMOTE_ADDR and scheme unchanged',
    raw: head(
      'GET /app/env HTTP/1.1\nHost: {host}\nX-Forwarded-For: 10.0.0.1, 10.0.0.2\nX-Forwarded-Proto: https\nForwarded: for=1.2.3.4;proto=https',
    ),
    differences: [],
  },
  {
    name: 'Authorization is forwarded by both',
    raw: head('GET /app/env HTTP/1.1\nHost: {host}\nAuthorization: Basic Zm9vOmJhcg=='),
    differences: [],
  },
  {
    name: 'POST with Content-Length and Content-Type',
    raw: `${head(
      'POST /app/env?x=1 HTTP/1.1\nHost: {host}\nContent-Type: application/x-www-form-urlencoded\nContent-Length: 7',
    )}a=1&b=2`,
    differences: ['HTTP_CONTENT_LENGTH', 'HTTP_CONTENT_TYPE'],
  },
  {
    name: 'chunked POST: CONTENT_LENGTH is the de-chunked length',
    raw: `${head(
      'POST /app/env HTTP/1.1\nHost: {host}\nContent-Type: text/plain\nTransfer-Encoding: chunked',
    )}3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n`,
    differences: ['HTTP_CONTENT_TYPE', 'HTTP_TRANSFER_ENCODING'],
  },
  {
    name: 'Expect: 100-continue',
    raw: `${head('PUT /app/env HTTP/1.1\nHost: {host}\nExpect: 100-continue\nContent-Length: 5')}hello`,
    differences: ['HTTP_EXPECT', 'HTTP_CONTENT_LENGTH'],
  },
  {
    name: 'hop-by-hop headers, and a header named in Connection',
    raw: head(
      'GET /app/env HTTP/1.1\nHost: {host}\nConnection: keep-alive, X-Hop\nKeep-Alive: timeout=5\nTE: trailers\nProxy-Connection: keep-alive\nTrailer: X-T\nUpgrade: foo\nX-Hop: secret\nX-End: kept',
    ),
    differences: ['hop-by-hop', 'connection-named'],
  },
];

// ---- requests: what the client gets back -----------------------------------------------------

const RESPONSE_CASES: Case[] = [
  {
    name: 'three Set-Cookie headers stay apart, in order (one holds a comma)',
    raw: head('GET /app/cookies HTTP/1.1\nHost: {host}'),
    differences: ['Server'],
  },
  {
    name: '204: no body, no framing headers',
    raw: head('GET /app/status/204 HTTP/1.1\nHost: {host}'),
    differences: ['Server'],
  },
  {
    name: '304: no body',
    raw: head('GET /app/status/304 HTTP/1.1\nHost: {host}'),
    differences: ['Server'],
  },
  {
    name: 'a status without a registered reason phrase (299 Unknown)',
    raw: head('GET /app/status/299 HTTP/1.1\nHost: {host}'),
    differences: ['Server'],
  },
  {
    name: '302 with a relative Location, passed as is',
    raw: head('GET /app/redirect HTTP/1.1\nHost: {host}'),
    differences: ['Server'],
  },
  {
    name: 'HEAD keeps the Content-Length of GET, no body',
    raw: head('HEAD /app/head HTTP/1.1\nHost: {host}'),
    differences: ['Server'],
  },
  {
    name: 'a body without Content-Length goes out chunked',
    raw: head('GET /app/stream?bytes=100000&chunk=4096 HTTP/1.1\nHost: {host}'),
    differences: ['Server'],
  },
  {
    name: 'the mount itself: PATH_INFO is empty',
    raw: head('GET /app HTTP/1.1\nHost: {host}'),
    differences: ['Server'],
  },
  {
    name: 'a chunked upload reaches the app whole',
    raw: `${head(
      'POST /app/sha256 HTTP/1.1\nHost: {host}\nTransfer-Encoding: chunked',
    )}5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n`,
    differences: ['Server'],
  },
  {
    name: 'the app fails before start_response: 500 from uWSGI',
    raw: head('GET /app/crash HTTP/1.1\nHost: {host}'),
    differences: [],
  },
  {
    name: '%00 in the path is refused by both',
    raw: head('GET /app/env/%00 HTTP/1.1\nHost: {host}'),
    differences: [],
  },
  {
    name: 'a path escaping the mount never reaches the app',
    raw: head('GET /app/../env HTTP/1.1\nHost: {host}'),
    differences: ['escape-mount'],
  },
  {
    name: 'an encoded path escaping the mount never reaches the app',
    raw: head('GET /app/%2e%2e/env HTTP/1.1\nHost: {host}'),
    differences: ['escape-mount'],
  },
  {
    name: 'repeated slashes before the mount',
    raw: head('GET //app/env HTTP/1.1\nHost: {host}'),
    differences: ['merge-slashes-mount'],
  },
  {
    name: 'CONNECT is refused by both',
    raw: head('CONNECT example.com:443 HTTP/1.1\nHost: example.com:443'),
    differences: ['CONNECT'],
  },
  {
    name: 'a WebSocket upgrade request',
    raw: head(
      'GET /app/env HTTP/1.1\nHost: {host}\nConnection: Upgrade\nUpgrade: websocket\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13',
    ),
    differences: ['upgrade'],
  },
  {
    name: 'headers meant for a front server (X-Sendfile, X-Accel-*)',
    raw: head('GET /app/internal HTTP/1.1\nHost: {host}'),
    differences: ['Server', 'x-sendfile'],
  },
];

// ---- the intentional differences -------------------------------------------------------------

/** One request to judge: the header fields as sent, and what each side produced. */
interface Seen {
  sent: [name: string, value: string][];
  /** The request path as sent. */
  path: string;
  nginx: Env;
  ours: Env;
}

/** An intentional difference; `key` is its row in docs/nginx-differences.md. */
interface Intentional {
  key: string;
  /** True when `name` with these two values is exactly this documented difference. */
  explains(name: string, nginx: string | undefined, ours: string | undefined, seen: Seen): boolean;
}

const cgiName = (field: string) => `HTTP_${field.toUpperCase().replaceAll('-', '_')}`;
/** Values of the header fields whose CGI name is `name`, in the order sent. */
const sentValues = (seen: Seen, name: string) =>
  seen.sent.filter(([field]) => cgiName(field) === name).map(([, value]) => value);
/** nginx forwards the header exactly as sent; we do not forward it at all. */
const onlyNginx = (seen: Seen, name: string, nginx?: string, ours?: string) =>
  ours === undefined && nginx !== undefined && sentValues(seen, name).join(', ') === nginx;
/** What nginx's `merge_slashes on` (its default) makes of a path. */
const merged = (path: string) => path.replace(/\/{2,}/g, '/');
const hex = (latin1: string) => Buffer.from(latin1, 'latin1').toString('hex');

/** RFC 9110 §7.6.1 (and Trailer, RFC 9112 §7.1.2), in CGI spelling. */
const HOP_BY_HOP = [
  'CONNECTION',
  'KEEP_ALIVE',
  'PROXY_CONNECTION',
  'TE',
  'TRAILER',
  'TRANSFER_ENCODING',
  'UPGRADE',
].map((n) => `HTTP_${n}`);

/** The host of the absolute-form case: our HTTP_HOST there (rule `absolute-form-host`). */
const ABSOLUTE_FORM_HOST = 'other.example';

/** Differences every /env request shows. */
const ALWAYS = ['DOCUMENT_ROOT', 'GATEWAY_INTERFACE', 'SERVER_ADDR', 'SERVER_NAME'];

const ENV_RULES: Intentional[] = [
  {
    key: 'DOCUMENT_ROOT',
    explains: (name, nginx, ours) =>
      name === 'DOCUMENT_ROOT' && ours === undefined && nginx?.endsWith('/html') === true,
  },
  {
    key: 'GATEWAY_INTERFACE',
    explains: (name, nginx, ours) =>
      name === 'GATEWAY_INTERFACE' && nginx === undefined && ours === 'CGI/1.1',
  },
  {
    key: 'SERVER_ADDR',
    explains: (name, nginx, ours) =>
      name === 'SERVER_ADDR' && nginx === undefined && ours === '127.0.0.1',
  },
  {
    key: 'SERVER_NAME',
    // nginx: the server block's `server_name localhost`; ours: the Host header minus its port.
    explains: (name, nginx, ours, seen) =>
      name === 'SERVER_NAME' &&
      nginx === 'localhost' &&
      ours !== undefined &&
      (seen.ours.HTTP_HOST === `${ours}:<port>` || seen.ours.HTTP_HOST === ours),
  },
  {
    key: 'absolute-form-host',
    // RFC 9112 §3.2.2: the target's authority, not the Host header, names the host.
    explains: (name, nginx, ours, seen) => {
      const authority = /^[a-z]+:\/\/([^/?#]*)/i.exec(seen.path)?.[1];
      if (authority === undefined || ours !== authority) return false;
      return name === 'HTTP_HOST' && nginx === '127.0.0.1:<port>';
    },
  },
  {
    key: 'merge-slashes',
    explains: (name, nginx, ours, seen) => {
      if (!['DOCUMENT_URI', 'PATH_INFO', 'PATH_INFO_hex'].includes(name)) return false;
      if (ours === undefined || nginx === undefined || !/\/\/+/.test(seen.path)) return false;
      if (name !== 'PATH_INFO_hex') return nginx === merged(ours);
      return nginx === hex(merged(Buffer.from(ours, 'hex').toString('latin1')));
    },
  },
  {
    key: 'fragment',
    explains: (name, nginx, ours, seen) => {
      const hash = seen.path.indexOf('#');
      return name === 'REQUEST_URI' && hash !== -1 && nginx === `${ours}${seen.path.slice(hash)}`;
    },
  },
  {
    key: 'duplicate-header',
    // nginx 1.22 sends one SCGI pair per header line; uWSGI's environ keeps the last one.
    explains: (name, nginx, ours, seen) => {
      const values = sentValues(seen, name);
      return (
        name !== 'HTTP_COOKIE' &&
        values.length > 1 &&
        nginx === values.at(-1) &&
        ours === values.join(', ')
      );
    },
  },
  {
    key: 'duplicate-cookie',
    explains: (name, nginx, ours, seen) => {
      const values = sentValues(seen, name);
      return (
        name === 'HTTP_COOKIE' &&
        values.length > 1 &&
        nginx === values.at(-1) &&
        ours === values.join('; ')
      );
    },
  },
  {
    key: 'HTTP_PROXY',
    explains: (name, nginx, ours, seen) =>
      name === 'HTTP_PROXY' && onlyNginx(seen, name, nginx, ours),
  },
  {
    key: 'HTTP_CONTENT_LENGTH',
    explains: (name, nginx, ours, seen) =>
      name === 'HTTP_CONTENT_LENGTH' &&
      onlyNginx(seen, name, nginx, ours) &&
      seen.ours.CONTENT_LENGTH === nginx,
  },
  {
    key: 'HTTP_CONTENT_TYPE',
    explains: (name, nginx, ours, seen) =>
      name === 'HTTP_CONTENT_TYPE' &&
      onlyNginx(seen, name, nginx, ours) &&
      seen.ours.CONTENT_TYPE === nginx,
  },
  {
    key: 'HTTP_TRANSFER_ENCODING',
    explains: (name, nginx, ours, seen) =>
      name === 'HTTP_TRANSFER_ENCODING' && onlyNginx(seen, name, nginx, ours),
  },
  {
    key: 'HTTP_EXPECT',
    explains: (name, nginx, ours, seen) =>
      name === 'HTTP_EXPECT' && onlyNginx(seen, name, nginx, ours),
  },
  {
    key: 'hop-by-hop',
    explains: (name, nginx, ours, seen) =>
      name !== 'HTTP_TRANSFER_ENCODING' &&
      HOP_BY_HOP.includes(name) &&
      onlyNginx(seen, name, nginx, ours),
  },
  {
    key: 'connection-named',
    explains: (name, nginx, ours, seen) => {
      const named = sentValues(seen, 'HTTP_CONNECTION')
        .flatMap((value) => value.split(','))
        .map((token) => cgiName(token.trim()));
      return (
        !HOP_BY_HOP.includes(name) && named.includes(name) && onlyNginx(seen, name, nginx, ours)
      );
    },
  },
];

const RESPONSE_RULES: Intentional[] = [
  {
    key: 'Server',
    explains: (name, nginx, ours) =>
      name === 'server' && nginx === 'nginx/1.22.1' && ours === undefined,
  },
  {
    key: 'escape-mount',
    explains: (name, nginx, ours) =>
      name === 'status' && nginx === '404 Not Found' && ours === '400 Bad Request',
  },
  {
    key: 'CONNECT',
    // nginx 1.22's parser refuses an authority-form target (400) before it sees the method.
    explains: (name, nginx, ours, seen) =>
      name === 'status' &&
      /^[^/]+:\d+$/.test(seen.path) &&
      nginx === '400 Bad Request' &&
      ours === '405 Method Not Allowed',
  },
  {
    key: 'upgrade',
    explains: (name, nginx, ours, seen) =>
      name === 'status' &&
      seen.sent.some(([field]) => field.toLowerCase() === 'upgrade') &&
      nginx === '200 OK' &&
      ours === '501 Not Implemented',
  },
  {
    key: 'x-sendfile',
    // nginx hides X-Accel-* as we do, but passes the other servers' file headers on.
    explains: (name, nginx, ours) =>
      ['x-sendfile', 'x-lighttpd-send-file', 'x-lighttpd-sendfile'].includes(name) &&
      nginx !== undefined &&
      ours === undefined,
  },
  {
    key: 'merge-slashes-mount',
    explains: (name, nginx, ours, seen) =>
      name === 'status' &&
      seen.path.startsWith('//') &&
      nginx === '200 OK' &&
      ours === '404 Not Found',
  },
];

// ---- normalising and diffing -----------------------------------------------------------------

/**
 * Per-connection values become placeholders once their shape is checked. SERVER_SOFTWARE names
 * the product (nginx's stock scgi_params do not send it at all): not compared.
 */
function normaliseEnv(env: Env, port: number): Env {
  const out = { ...env };
  expect(out.REMOTE_PORT).toMatch(/^[1-9]\d*$/);
  expect(out.SERVER_PORT).toBe(String(port));
  out.REMOTE_PORT = '<port>';
  out.SERVER_PORT = '<port>';
  if (out.HTTP_HOST !== undefined && out.HTTP_HOST !== ABSOLUTE_FORM_HOST) {
    expect(out.HTTP_HOST).toBe(`127.0.0.1:${port}`);
    out.HTTP_HOST = '127.0.0.1:<port>';
  }
  delete out.SERVER_SOFTWARE;
  return out;
}

/** Response headers each front sets for its own connection, whatever the backend said. */
const CONNECTION_HEADERS = new Set(['date', 'connection', 'keep-alive']);

/**
 * Status line, backend headers (lower-cased names, RFC 9110 §5.1; values of one name joined by
 * newlines in order) and body, with the front's port replaced by a placeholder.
 */
function responseView(res: RawResponse, port: number): Env {
  expect(res.closedEarly).toBe(false);
  const view: Env = { status: `${res.statusCode} ${res.statusMessage}`, version: res.httpVersion };
  for (const [name, value] of res.headers) {
    const lower = name.toLowerCase();
    if (CONNECTION_HEADERS.has(lower)) continue;
    view[lower] = view[lower] === undefined ? value : `${view[lower]}\n${value}`;
  }
  view.body = res.body.toString('latin1').replaceAll(`127.0.0.1:${port}`, '127.0.0.1:<port>');
  return view;
}

interface Diff {
  name: string;
  nginx: string | undefined;
  ours: string | undefined;
}

function diff(nginx: Env, ours: Env): Diff[] {
  const names = [...new Set([...Object.keys(nginx), ...Object.keys(ours)])].sort();
  return names
    .filter((name) => nginx[name] !== ours[name])
    .map((name) => ({ name, nginx: nginx[name], ours: ours[name] }));
}

/** The diffs no rule explains, and the keys of the rules that explained the others. */
function explain(diffs: Diff[], rules: Intentional[], seen: Seen) {
  const unexplained: Diff[] = [];
  const keys = new Set<string>();
  for (const d of diffs) {
    const rule = rules.find((r) => r.explains(d.name, d.nginx, d.ours, seen));
    if (rule === undefined) unexplained.push(d);
    else keys.add(rule.key);
  }
  return { unexplained, keys: [...keys].sort() };
}

/** Header fields and path of a raw request, as sent. */
function parseSent(raw: string): Pick<Seen, 'sent' | 'path'> {
  const [requestLine = '', ...lines] = raw.slice(0, raw.indexOf('\r\n\r\n')).split('\r\n');
  const sent = lines.map((line): [string, string] => {
    const colon = line.indexOf(':');
    return [line.slice(0, colon), line.slice(colon + 1).trim()];
  });
  return { sent, path: requestLine.split(' ')[1] ?? '' };
}

const sorted = (keys: Iterable<string>) => [...new Set(keys)].sort();
const ALL_RULES = [...ENV_RULES, ...RESPONSE_RULES];

// ---- the tests -------------------------------------------------------------------------------

describe('docs/nginx-differences.md and the allow-list', () => {
  it('documents every allow-listed difference, and no other', () => {
    const doc = readFileSync(DOC_PATH, 'utf8');
    const documented = [...doc.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]!);
    expect(documented.length, 'a key documented twice').toBe(new Set(documented).size);
    expect(sorted(documented)).toEqual(sorted(ALL_RULES.map((r) => r.key)));
  });

  it('every allow-listed difference is shown by some request, and only those', () => {
    const shown = [
      ...ALWAYS,
      ...ENV_CASES.flatMap((c) => c.differences),
      ...RESPONSE_CASES.flatMap((c) => c.differences),
    ];
    expect(sorted(shown)).toEqual(sorted(ALL_RULES.map((r) => r.key)));
  });
});

describe.skipIf(!has('nginx') || !has('uwsgi'))(
  'parity with nginx scgi_pass: one uWSGI backend (Unix socket), all mounted at /app',
  () => {
    let backend: Backend;
    let nginx: Peer;
    const fronts: Partial<Record<'fastify' | 'express', Front>> = {};

    beforeAll(async () => {
      backend = await startUwsgi({ socket: 'unix' });
      [nginx, fronts.fastify, fronts.express] = await Promise.all([
        startNginx({ upstream: backend.address, scriptName: MOUNT }),
        startFastifyFront({ upstream: backend.address, prefix: MOUNT, methods: 'all' }),
        // X-Powered-By is Express's own header, not the proxy's.
        startExpressFront({ upstream: backend.address, mount: MOUNT }, 5, (app) =>
          app.disable('x-powered-by'),
        ),
      ]);
    });
    afterAll(async () => {
      await Promise.all([fronts.fastify?.close(), fronts.express?.close(), nginx?.stop()]);
      await backend?.stop();
    });

    const portOf = (front: { url: string }) => Number(new URL(front.url).port);
    const send = (front: { url: string }, raw: string) =>
      rawRequest(front.url, raw.replaceAll('{host}', `127.0.0.1:${portOf(front)}`));

    async function envOf(front: { url: string }, raw: string): Promise<Env> {
      const res = await send(front, raw);
      expect(res.statusCode, res.body.toString()).toBe(200);
      return normaliseEnv(JSON.parse(res.body.toString('utf8')) as Env, portOf(front));
    }

    for (const kind of ['fastify', 'express'] as const) {
      describe(`${kind}-scgi vs nginx: what the app sees`, () => {
        for (const c of ENV_CASES) {
          it(c.name, async () => {
            const front = fronts[kind]!;
            const [fromNginx, fromOurs] = await Promise.all([
              envOf(nginx, c.raw),
              envOf(front, c.raw),
            ]);
            const seen: Seen = { ...parseSent(c.raw), nginx: fromNginx, ours: fromOurs };
            const { unexplained, keys } = explain(diff(fromNginx, fromOurs), ENV_RULES, seen);
            expect(unexplained, 'differences that no documented rule explains').toEqual([]);
            expect(keys).toEqual(sorted([...ALWAYS, ...c.differences]));
          });
        }
      });

      describe(`${kind}-scgi vs nginx: what the client gets back`, () => {
        for (const c of RESPONSE_CASES) {
          it(c.name, async () => {
            const front = fronts[kind]!;
            const [resNginx, resOurs] = await Promise.all([send(nginx, c.raw), send(front, c.raw)]);
            let fromNginx = responseView(resNginx, portOf(nginx));
            let fromOurs = responseView(resOurs, portOf(front));
            // An error page is each front's own (nginx HTML, Fastify JSON, Express finalhandler
            // with its CSP): then only the status lines are compared.
            if (resNginx.statusCode >= 400 || resOurs.statusCode >= 400) {
              fromNginx = { status: fromNginx.status! };
              fromOurs = { status: fromOurs.status! };
            }
            const seen: Seen = { ...parseSent(c.raw), nginx: fromNginx, ours: fromOurs };
            const { unexplained, keys } = explain(diff(fromNginx, fromOurs), RESPONSE_RULES, seen);
            expect(unexplained, 'differences that no documented rule explains').toEqual([]);
            expect(keys).toEqual(sorted(c.differences));
          });
        }
      });
    }
  },
);
