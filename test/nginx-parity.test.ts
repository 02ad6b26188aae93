/**
 * Parity with nginx, the reference SCGI client: nginx 1.22 (`scgi_pass`, Debian nginx-light,
 * stock scgi_params), fastify-scgi and express-scgi sit in front of the SAME uWSGI backend (one
 * Unix socket), all three mounted at /app, and get the same raw requests. What the app sees
 * (examples/python/app.py `/env`: the WSGI environ) must be identical, except for the
 * intentional differences below; each has a precise rule, a reason, and an entry with the same
 * key in docs/nginx-differences.md (checked here, so the test and the doc stay in step).
 * A difference no rule explains fails the test: it is a bug until someone argues otherwise.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, type Peer, startNginx, startUwsgi } from './helpers/backends.js';
import { has } from './helpers/binaries.js';
import { type Front, startExpressFront, startFastifyFront } from './helpers/fronts.js';
import { type RawResponse, rawRequest } from './helpers/http.js';

const DOC_PATH = new URL('../docs/nginx-differences.md', import.meta.url);
const MOUNT = '/app';

// ---- the requests ------------------------------------------------------------------------------

/** One request sent to all three fronts; `{host}` becomes `127.0.0.1:<front's port>`. */
interface EnvCase {
  name: string;
  raw: string;
  /** Keys of the intentional differences this request shows, besides {@link ALWAYS}. */
  differences: string[];
}

const head = (lines: string) => `${lines.replaceAll('\n', '\r\n')}\r\n\r\n`;

const ENV_CASES: EnvCase[] = [
  {
    name: 'plain GET with a query',
    raw: head('GET /app/env/x?a=1&b=%20+c&&d HTTP/1.1\nHost: {host}\nUser-Agent: parity/1'),
    differences: [],
  },
  {
    name: 'unicode path (caf%C3%A9) is decoded to UTF-8 bytes',
    raw: head('GET /app/env/caf%C3%A9?q=caf%C3%A9 HTTP/1.1\nHost: {host}'),
    differences: [],
  },
  {
    name: 'invalid UTF-8 after decoding (%E9) is still forwarded as the byte E9',
    raw: head('GET /app/env/%E9t%E9 HTTP/1.1\nHost: {host}'),
    differences: [],
  },
  {
    name: '%2F is decoded into PATH_INFO, REQUEST_URI stays raw',
    raw: head('GET /app/env/a%2Fb HTTP/1.1\nHost: {host}'),
    differences: [],
  },
  {
    name: 'dot segments are resolved inside the mount',
    raw: head('GET /app/env/a/./b/../c/%2e%2e/d HTTP/1.1\nHost: {host}'),
    differences: [],
  },
  {
    name: 'duplicate headers, cased differently',
    raw: head('GET /app/env HTTP/1.1\nHost: {host}\nX-Dup: one\nx-dup: two'),
    differences: ['duplicate-header'],
  },
  {
    name: 'several Cookie headers',
    raw: head('GET /app/env HTTP/1.1\nHost: {host}\nCookie: a=1\nCookie: b=2; c=3\nCookie: d=4'),
    differences: ['duplicate-cookie'],
  },
  {
    name: 'Proxy header (httpoxy)',
    raw: head('GET /app/env HTTP/1.1\nHost: {host}\nProxy: http://evil.example:3128'),
    differences: ['HTTP_PROXY'],
  },
  {
    name: 'underscore header name is dropped by both',
    raw: head('GET /app/env HTTP/1.1\nHost: {host}\nX_Forwarded_For: 6.6.6.6\nX-Ok: 1'),
    differences: [],
  },
  {
    name: 'X-Forwarded-For is forwarded, REMOTE_ADDR stays the peer',
    raw: head('GET /app/env HTTP/1.1\nHost: {host}\nX-Forwarded-For: 10.0.0.1, 10.0.0.2'),
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
    name: 'chunked POST gets CONTENT_LENGTH from the spooled body',
    raw: `${head(
      'POST /app/env HTTP/1.1\nHost: {host}\nContent-Type: text/plain\nTransfer-Encoding: chunked',
    )}3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n`,
    differences: ['HTTP_CONTENT_TYPE', 'HTTP_TRANSFER_ENCODING'],
  },
  {
    name: 'Expect: 100-continue',
    raw: `${head(
      'PUT /app/env HTTP/1.1\nHost: {host}\nExpect: 100-continue\nContent-Length: 5',
    )}hello`,
    differences: ['HTTP_EXPECT', 'HTTP_CONTENT_LENGTH'],
  },
  {
    name: 'hop-by-hop headers and a header named in Connection',
    raw: head(
      'GET /app/env HTTP/1.1\nHost: {host}\nConnection: keep-alive, X-Hop\nKeep-Alive: timeout=5\nX-Hop: secret\nX-End: kept',
    ),
    differences: ['hop-by-hop', 'connection-named'],
  },
];

// ---- the intentional differences ---------------------------------------------------------------

type Env = Record<string, string>;

/** One request to compare: what was sent, and each side's environ. */
interface Seen {
  /** Header fields as sent, in order. */
  sent: [name: string, value: string][];
  nginx: Env;
  ours: Env;
}

/** An intentional difference: `key` is its row in docs/nginx-differences.md. */
interface Intentional {
  key: string;
  /** True when variable `name`, with these values, is exactly this documented difference. */
  explains(name: string, nginx: string | undefined, ours: string | undefined, seen: Seen): boolean;
  reason: string;
}

const cgiName = (field: string) => `HTTP_${field.toUpperCase().replaceAll('-', '_')}`;
/** Values of the header field(s) whose CGI name is `name`, as sent. */
const sentValues = (seen: Seen, name: string) =>
  seen.sent.filter(([field]) => cgiName(field) === name).map(([, value]) => value);
/** nginx forwards a header as sent, ours does not forward it at all. */
const onlyNginx = (seen: Seen, name: string, nginx?: string, ours?: string) =>
  ours === undefined && nginx !== undefined && sentValues(seen, name).join(', ') === nginx;

/** Differences every request shows. */
const ALWAYS = ['DOCUMENT_ROOT', 'GATEWAY_INTERFACE', 'SERVER_ADDR', 'SERVER_NAME'];

const INTENTIONAL: Intentional[] = [
  {
    key: 'DOCUMENT_ROOT',
    explains: (name, nginx, ours) =>
      name === 'DOCUMENT_ROOT' && ours === undefined && nginx?.endsWith('/html') === true,
    reason: 'nginx sends its static root (scgi_params); a proxy mount has no document root',
  },
  {
    key: 'GATEWAY_INTERFACE',
    explains: (name, nginx, ours) =>
      name === 'GATEWAY_INTERFACE' && nginx === undefined && ours === 'CGI/1.1',
    reason: 'RFC 3875 §4.1.4 requires it; stock scgi_params omit it',
  },
  {
    key: 'SERVER_ADDR',
    explains: (name, nginx, ours) =>
      name === 'SERVER_ADDR' && nginx === undefined && ours === '127.0.0.1',
    reason: 'DESIGN.md lists it (nginx has it in fastcgi_params, not scgi_params)',
  },
  {
    key: 'SERVER_NAME',
    explains: (name, nginx, ours, seen) =>
      name === 'SERVER_NAME' &&
      nginx === 'localhost' &&
      ours !== undefined &&
      seen.ours.HTTP_HOST === `${ours}:<port>`,
    reason: 'nginx: the server block\'s server_name; ours: the Host without its port (option serverName)',
  },
  {
    key: 'duplicate-header',
    explains: (name, nginx, ours, seen) => {
      const values = sentValues(seen, name);
      return (
        name !== 'HTTP_COOKIE' &&
        values.length > 1 &&
        nginx === values.at(-1) &&
        ours === values.join(', ')
      );
    },
    reason: 'nginx 1.22 sends one pair per field, uWSGI keeps the last; we join (RFC 9110 §5.3)',
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
    reason: 'as duplicate-header, but crumbs are joined with "; " (RFC 9113 §8.2.3)',
  },
  {
    key: 'HTTP_PROXY',
    explains: (name, nginx, ours, seen) => name === 'HTTP_PROXY' && onlyNginx(seen, name, nginx, ours),
    reason: 'httpoxy (CVE-2016-5385): CGI code reads HTTP_PROXY as its outbound proxy',
  },
  {
    key: 'HTTP_CONTENT_LENGTH',
    explains: (name, nginx, ours, seen) =>
      name === 'HTTP_CONTENT_LENGTH' &&
      onlyNginx(seen, name, nginx, ours) &&
      seen.ours.CONTENT_LENGTH === nginx,
    reason: 'RFC 3875 §4.1.18: already in CONTENT_LENGTH; DESIGN.md forbids HTTP_CONTENT_LENGTH',
  },
  {
    key: 'HTTP_CONTENT_TYPE',
    explains: (name, nginx, ours, seen) =>
      name === 'HTTP_CONTENT_TYPE' &&
      onlyNginx(seen, name, nginx, ours) &&
      seen.ours.CONTENT_TYPE === nginx,
    reason: 'RFC 3875 §4.1.18: already in CONTENT_TYPE',
  },
  {
    key: 'HTTP_TRANSFER_ENCODING',
    explains: (name, nginx, ours, seen) =>
      name === 'HTTP_TRANSFER_ENCODING' && onlyNginx(seen, name, nginx, ours),
    reason: 'hop-by-hop (RFC 9110 §7.6.1); the body goes de-chunked with CONTENT_LENGTH',
  },
  {
    key: 'HTTP_EXPECT',
    explains: (name, nginx, ours, seen) => name === 'HTTP_EXPECT' && onlyNginx(seen, name, nginx, ours),
    reason: 'the proxy answers 100-continue itself (RFC 9110 §10.1.1); SCGI has no interim answer',
  },
  {
    key: 'hop-by-hop',
    explains: (name, nginx, ours, seen) =>
      ['HTTP_CONNECTION', 'HTTP_KEEP_ALIVE', 'HTTP_TE'].includes(name) &&
      onlyNginx(seen, name, nginx, ours),
    reason: 'RFC 9110 §7.6.1: Connection, Keep-Alive, TE... describe one connection',
  },
  {
    key: 'connection-named',
    explains: (name, nginx, ours, seen) => {
      const named = sentValues(seen, 'HTTP_CONNECTION')
        .flatMap((v) => v.split(','))
        .map((token) => cgiName(token.trim()));
      return named.includes(name) && onlyNginx(seen, name, nginx, ours);
    },
    reason: 'RFC 9110 §7.6.1: fields named in Connection are hop-by-hop too',
  },
];

/**
 * Per-connection values, set to a placeholder once their shape is checked; SERVER_SOFTWARE
 * names the product (nginx's stock scgi_params do not send it at all).
 */
function normalise(env: Env, port: number): Env {
  const out = { ...env };
  expect(out.REMOTE_PORT).toMatch(/^[1-9]\d*$/);
  expect(out.SERVER_PORT).toBe(String(port));
  expect(out.HTTP_HOST).toBe(`127.0.0.1:${port}`);
  out.REMOTE_PORT = '<port>';
  out.SERVER_PORT = '<port>';
  out.HTTP_HOST = '127.0.0.1:<port>';
  delete out.SERVER_SOFTWARE;
  return out;
}

interface Diff {
  name: string;
  nginx: string | undefined;
  ours: string | undefined;
}

function diffEnv(nginx: Env, ours: Env): Diff[] {
  const names = [...new Set([...Object.keys(nginx), ...Object.keys(ours)])].sort();
  return names
    .filter((name) => nginx[name] !== ours[name])
    .map((name) => ({ name, nginx: nginx[name], ours: ours[name] }));
}

/** Header fields of a raw request, as sent. */
function sentHeaders(raw: string): [string, string][] {
  const lines = raw.slice(0, raw.indexOf('\r\n\r\n')).split('\r\n').slice(1);
  return lines.map((line) => {
    const colon = line.indexOf(':');
    return [line.slice(0, colon), line.slice(colon + 1).trim()];
  });
}

// ---- response handling -------------------------------------------------------------------------

interface ResponseCase {
  name: string;
  raw: string;
  differences: string[];
}

/** Response headers each front adds of its own accord, not from the backend. */
const FRONT_HEADERS = new Set(['date', 'connection', 'keep-alive']);

const RESPONSE_INTENTIONAL: Intentional[] = [
  {
    key: 'response-server',
    explains: (name, nginx, ours) =>
      name === 'server' && nginx?.startsWith('nginx/') === true && ours === undefined,
    reason: 'nginx adds Server (server_tokens); we add none, so no version leaks',
  },
  {
    key: 'escape-mount',
    explains: (name, nginx, ours) => name === 'status' && nginx === '404' && ours === '400',
    reason: 'both refuse /app/../x; nginx finds no location (404), we refuse the path (400)',
  },
];

const RESPONSE_CASES: ResponseCase[] = [
  {
    name: 'three Set-Cookie headers stay apart, in order',
    raw: head('GET /app/cookies HTTP/1.1\nHost: {host}'),
    differences: ['response-server'],
  },
  {
    name: '204 without a body',
    raw: head('GET /app/status/204 HTTP/1.1\nHost: {host}'),
    differences: ['response-server'],
  },
  {
    name: '302 with a relative Location',
    raw: head('GET /app/redirect HTTP/1.1\nHost: {host}'),
    differences: ['response-server'],
  },
  {
    name: 'HEAD keeps the Content-Length of GET, no body',
    raw: head('HEAD /app/head HTTP/1.1\nHost: {host}'),
    differences: ['response-server'],
  },
  {
    name: 'chunked upload reaches the app whole',
    raw: `${head(
      'POST /app/sha256 HTTP/1.1\nHost: {host}\nTransfer-Encoding: chunked',
    )}5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n`,
    differences: ['response-server'],
  },
  {
    name: 'a path escaping the mount never reaches the app',
    raw: head('GET /app/../env HTTP/1.1\nHost: {host}'),
    differences: ['escape-mount', 'response-server'],
  },
];

/**
 * Status, body and the backend's headers (lower-cased names; same-name values kept in order). An
 * error page is the front's own (nginx's HTML, Fastify's JSON, Express's finalhandler with its
 * CSP): only its status is compared.
 */
function responseView(res: RawResponse): Env {
  expect(res.closedEarly).toBe(false);
  const view: Env = { status: String(res.statusCode) };
  if (res.statusCode >= 400) return view;
  for (const [name, value] of res.headers) {
    const lower = name.toLowerCase();
    if (FRONT_HEADERS.has(lower)) continue;
    view[lower] = view[lower] === undefined ? value : `${view[lower]}\n${value}`;
  }
  view.body = res.body.toString('latin1');
  return view;
}

// ---- the test ----------------------------------------------------------------------------------

const send = (front: { url: string }, raw: string) =>
  rawRequest(front.url, raw.replaceAll('{host}', new URL(front.url).host));
const portOf = (front: { url: string }) => Number(new URL(front.url).port);

/** Diffs no rule explains, and the keys of the rules that explained the others. */
function explain(diffs: Diff[], rules: Intentional[], seen: Seen) {
  const unexplained: Diff[] = [];
  const keys = new Set<string>();
  for (const diff of diffs) {
    const rule = rules.find((r) => r.explains(diff.name, diff.nginx, diff.ours, seen));
    if (rule === undefined) unexplained.push(diff);
    else keys.add(rule.key);
  }
  return { unexplained, keys: [...keys].sort() };
}

describe('docs/nginx-differences.md', () => {
  it('documents every allow-listed difference, and no other', () => {
    const doc = readFileSync(DOC_PATH, 'utf8');
    const documented = [...doc.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]).sort();
    const listed = [...INTENTIONAL, ...RESPONSE_INTENTIONAL].map((r) => r.key).sort();
    expect(documented).toEqual(listed);
  });

  it('every allow-listed difference is shown by some request', () => {
    const shown = new Set([
      ...ALWAYS,
      ...ENV_CASES.flatMap((c) => c.differences),
      ...RESPONSE_CASES.flatMap((c) => c.differences),
    ]);
    const listed = [...INTENTIONAL, ...RESPONSE_INTENTIONAL].map((r) => r.key);
    expect(listed.filter((key) => !shown.has(key))).toEqual([]);
    expect([...shown].filter((key) => !listed.includes(key))).toEqual([]);
  });
});

describe.skipIf(!has('nginx') || !has('uwsgi'))(
  'parity with nginx scgi_pass: one uWSGI backend (Unix socket), mounted at /app',
  () => {
    let backend: Backend;
    let nginx: Peer;
    const fronts: Record<'fastify' | 'express', Front | undefined> = {
      fastify: undefined,
      express: undefined,
    };

    beforeAll(async () => {
      backend = await startUwsgi({ socket: 'unix' });
      [nginx, fronts.fastify, fronts.express] = await Promise.all([
        startNginx({ upstream: backend.address, scriptName: MOUNT }),
        startFastifyFront({ upstream: backend.address, prefix: MOUNT }),
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

    async function envOf(front: { url: string }, raw: string): Promise<Env> {
      const res = await send(front, raw);
      expect(res.statusCode, res.body.toString()).toBe(200);
      return normalise(JSON.parse(res.body.toString('utf8')) as Env, portOf(front));
    }

    for (const kind of ['fastify', 'express'] as const) {
      describe(`${kind}-scgi vs nginx: what the app sees`, () => {
        for (const c of ENV_CASES) {
          it(c.name, async () => {
            const [fromNginx, fromOurs] = await Promise.all([
              envOf(nginx, c.raw),
              envOf(fronts[kind]!, c.raw),
            ]);
            const seen: Seen = { sent: sentHeaders(c.raw), nginx: fromNginx, ours: fromOurs };
            const { unexplained, keys } = explain(diffEnv(fromNginx, fromOurs), INTENTIONAL, seen);
            expect(unexplained, 'differences no documented rule explains').toEqual([]);
            expect(keys).toEqual([...new Set([...ALWAYS, ...c.differences])].sort());
          });
        }
      });

      describe(`${kind}-scgi vs nginx: responses`, () => {
        for (const c of RESPONSE_CASES) {
          it(c.name, async () => {
            const [fromNginx, fromOurs] = await Promise.all([
              send(nginx, c.raw),
              send(fronts[kind]!, c.raw),
            ]);
            const seen: Seen = { sent: sentHeaders(c.raw), nginx: {}, ours: {} };
            const diffs = diffEnv(responseView(fromNginx), responseView(fromOurs));
            const { unexplained, keys } = explain(diffs, RESPONSE_INTENTIONAL, seen);
            expect(unexplained, 'differences no documented rule explains').toEqual([]);
            expect(keys).toEqual([...c.differences].sort());
          });
        }
      });
    }
  },
);
