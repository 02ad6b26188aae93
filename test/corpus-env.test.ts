/**
 * Request corpus, part 1: the CGI environment. One corpus of methods, query strings, paths and
 * headers, sent byte for byte through every front (Fastify 5, Express 5; Express 4 against the
 * Node backend) to every backend (uWSGI over TCP and a Unix socket, scgi_server.py, the Node
 * SCGI server), asserting what the app sees in /env. Protocol rules: DESIGN.md.
 */
import { describe, it } from 'vitest';
import {
  type AppKind,
  available,
  BACKENDS,
  envOf,
  errorBody,
  expectedErrorFields,
  FASTCGI_BACKENDS,
  fields,
  frontsFor,
  type RunningFront,
  send,
  useBackend,
  useFront,
  utf8Target,
} from './helpers/corpus.js';

const hex = (text: string) => Buffer.from(text, 'utf8').toString('hex');

/** The variables every request carries, as the app sees them. */
function baseEnv(front: RunningFront, over: Record<string, string>) {
  return {
    CONTENT_LENGTH: '0',
    SCGI: '1',
    REQUEST_METHOD: 'GET',
    SCRIPT_NAME: front.prefix,
    SERVER_PROTOCOL: 'HTTP/1.1',
    REQUEST_SCHEME: 'http',
    REMOTE_ADDR: '127.0.0.1',
    SERVER_ADDR: '127.0.0.1',
    SERVER_NAME: '127.0.0.1',
    SERVER_PORT: String(front.port),
    SERVER_SOFTWARE: 'scgi-core',
    GATEWAY_INTERFACE: 'CGI/1.1',
    HTTP_HOST: `127.0.0.1:${front.port}`,
    ...over,
  };
}

/** The exact index page (PATH_INFO "" or "/") of each app. */
function indexPage(app: AppKind, front: RunningFront, pathInfo: string, query = ''): string {
  if (app === 'node') {
    // node-app.mjs's index shows SCRIPT_NAME only, so PATH_INFO is checked through /env instead.
    return `<!doctype html><title>SCGI demo (Node)</title><h1>Hello from a Node SCGI app</h1><p>SCRIPT_NAME=${front.prefix}</p>`;
  }
  const rows = Object.entries({
    REQUEST_METHOD: 'GET',
    SCRIPT_NAME: front.prefix,
    PATH_INFO: pathInfo,
    QUERY_STRING: query,
    SERVER_PROTOCOL: 'HTTP/1.1',
    REMOTE_ADDR: '127.0.0.1',
    HTTP_HOST: `127.0.0.1:${front.port}`,
  })
    .map(([k, v]) => `<tr><th>${k}</th><td>${v}</td></tr>`)
    .join('');
  return `<!doctype html><html><head><meta charset="utf-8"><title>Hello over SCGI</title></head><body><h1>Hello from WSGI over SCGI</h1><table>${rows}</table></body></html>\n`;
}

const METHODS: [method: string, body: string | null][] = [
  ['GET', null],
  ['POST', 'hello'],
  ['PUT', 'hello'],
  ['DELETE', 'hello'],
  ['PATCH', 'hello'],
  ['OPTIONS', null],
  // WebDAV: Fastify's router knows neither without addHttpMethod; the plugin must forward them.
  ['PROPFIND', '<propfind xmlns="DAV:"/>'],
  ['MKCOL', null],
];

/** [request-target, REQUEST_URI, QUERY_STRING]: the query is raw, the fragment never sent. */
const QUERIES: [target: string, uri: string, query: string][] = [
  ['/app/env', '/app/env', ''],
  ['/app/env?a=1&b=%20x', '/app/env?a=1&b=%20x', 'a=1&b=%20x'],
  ['/app/env?', '/app/env?', ''],
  ['/app/env?a=b?c=d', '/app/env?a=b?c=d', 'a=b?c=d'],
  [
    '/app/env?q=caf%C3%A9&e=%F0%9F%8E%89',
    '/app/env?q=caf%C3%A9&e=%F0%9F%8E%89',
    'q=caf%C3%A9&e=%F0%9F%8E%89',
  ],
  ['/app/env?a=1#frag', '/app/env?a=1', 'a=1'],
  ['/app/env#frag?x', '/app/env', ''],
];

/** [request-target, PATH_INFO as text (UTF-8) or hex]: decoded, dot-segments resolved. */
const PATHS: [target: string, pathInfoHex: string][] = [
  ['/app/env/caf%C3%A9', '2f656e762f636166c3a9'],
  // Not valid UTF-8: Fastify's router would answer 400; the plugin forwards the byte as sent.
  ['/app/env/%E9', '2f656e762fe9'],
  ['/app/env/%E9%zz', `2f656e762fe9${hex('%zz')}`],
  ['/app/env/a%2Fb', hex('/env/a/b')],
  ['/app/env/a%20b', hex('/env/a b')],
  ['/app/env/a/../b', hex('/env/b')],
  ['/app/env/./c/.', hex('/env/c/')],
  ['/app/env/a/%2e%2E/b', hex('/env/b')],
  ['/app/env//x', hex('/env//x')],
];

/** Paths that must never reach the backend. */
const REFUSED: [target: string, code: string, message: string][] = [
  ['/app/env/%00', 'SCGI_ERR_PATH_NUL', 'Request path decodes to a NUL byte'],
  ...['/app/../etc', '/app/%2e%2e/etc', '/app/env/../../etc', '/app/..', '/app/.%2E'].map(
    (t): [string, string, string] => [
      t,
      'SCGI_ERR_BAD_PATH',
      'Request path is not valid for this mount: the path is outside the mount prefix',
    ],
  ),
];

/** DESIGN.md "Environment", for a GET without body or extra headers. */
const DESIGN_ORDER = [
  'CONTENT_LENGTH',
  'SCGI',
  'REQUEST_METHOD',
  'REQUEST_URI',
  'QUERY_STRING',
  'CONTENT_TYPE',
  'DOCUMENT_URI',
  'SCRIPT_NAME',
  'PATH_INFO',
  'SERVER_PROTOCOL',
  'REQUEST_SCHEME',
  'REMOTE_ADDR',
  'REMOTE_PORT',
  'SERVER_ADDR',
  'SERVER_NAME',
  'SERVER_PORT',
  'SERVER_SOFTWARE',
  'GATEWAY_INTERFACE',
  'HTTP_HOST',
];

describe.each([...BACKENDS, ...FASTCGI_BACKENDS])('corpus (env) -> $name', (spec) => {
  describe.skipIf(!available(spec))(`${spec.server} backend`, () => {
    const backend = useBackend(spec);

    describe.each(frontsFor(spec))('through %s mounted at /app', (kind) => {
      const front = useFront(kind, backend);

      describe.concurrent('methods', () => {
        it.for(METHODS)('%s -> REQUEST_METHOD', async ([method, body], { expect }) => {
          const f = front.current;
          const headers: [string, string][] = body === null ? [] : [['Content-Type', 'text/xml']];
          const env = await envOf(f, {
            method,
            target: '/app/env',
            headers,
            body: body ?? undefined,
          });
          expect(env).toMatchObject(
            baseEnv(f, {
              REQUEST_METHOD: method,
              REQUEST_URI: '/app/env',
              PATH_INFO: '/env',
              DOCUMENT_URI: '/app/env',
              CONTENT_LENGTH: String(body?.length ?? 0),
              CONTENT_TYPE: body === null ? '' : 'text/xml',
            }),
          );
        });

        it('HEAD: the head of the GET answer, no body', async ({ expect }) => {
          const res = await send(front.current, { method: 'HEAD', target: '/app/env' });
          expect(res.statusCode).toBe(200);
          expect(fields(res).map(([n]) => n)).toEqual(['content-type', 'content-length']);
          expect(fields(res)[0]).toEqual(['content-type', 'application/json']);
          expect(res.body.length).toBe(0);
        });
      });

      describe.concurrent('query strings', () => {
        it.for(QUERIES)('%j', async ([target, uri, query], { expect }) => {
          const f = front.current;
          const env = await envOf(f, { target });
          expect(env).toMatchObject(
            baseEnv(f, { REQUEST_URI: uri, QUERY_STRING: query, PATH_INFO: '/env' }),
          );
        });
      });

      describe.concurrent('paths', () => {
        it.for([
          utf8Target('/app/env/café'),
          utf8Target('/app/env?q=café'),
        ])("raw UTF-8 bytes in %j: Node's HTTP parser answers 400 before the adapter runs", async (target, {
          expect,
        }) => {
          // Clients send UTF-8 percent-encoded (the cases above); llhttp refuses raw bytes > 0x7F.
          const res = await send(front.current, { target });
          expect(res.statusCode).toBe(400);
        });

        it.for(PATHS)('%j -> PATH_INFO bytes %s', async ([target, pathInfoHex], { expect }) => {
          const f = front.current;
          const env = await envOf(f, { target });
          const pathInfo = Buffer.from(pathInfoHex, 'hex').toString('latin1');
          expect(env).toMatchObject(
            baseEnv(f, {
              REQUEST_URI: target,
              QUERY_STRING: '',
              SCRIPT_NAME: '/app',
              PATH_INFO: pathInfo,
              DOCUMENT_URI: `/app${pathInfo}`,
            }),
          );
          expect(env.PATH_INFO_hex).toBe(pathInfoHex);
        });

        it.for(REFUSED)('%j -> 400 %s, not forwarded', async ([target, code, message], {
          expect,
        }) => {
          const res = await send(front.current, { target });
          const body = errorBody(kind, 400, code, message);
          expect(res.statusCode).toBe(400);
          expect(JSON.parse(res.body.toString())).toEqual(body);
          expect(fields(res)).toEqual(expectedErrorFields(JSON.stringify(body)));
        });

        it.for([
          ['/app', ''],
          ['/app/', '/'],
          ['/app?x=1', ''],
        ])('the bare prefix %j is the app root (PATH_INFO %j)', async ([target, pathInfo], {
          expect,
        }) => {
          const f = front.current;
          const res = await send(f, { target });
          const query = target.includes('?') ? 'x=1' : '';
          const page = indexPage(spec.app, f, pathInfo, query);
          expect(res.statusCode).toBe(200);
          expect(res.body.toString('utf8')).toBe(page);
          if (spec.app === 'python') {
            expect(fields(res)).toEqual([
              ['content-type', 'text/html; charset=utf-8'],
              ['content-length', String(Buffer.byteLength(page))],
            ]);
          } else {
            // node-app.mjs sends no Content-Length here: the front chunks the answer.
            expect(fields(res)).toEqual([
              ['content-type', 'text/html; charset=utf-8'],
              ['transfer-encoding', 'chunked'],
            ]);
          }
        });

        it('/appx/env is outside the mount: the front answers 404, the app never sees it', async ({
          expect,
        }) => {
          const res = await send(front.current, { target: '/appx/env' });
          expect(res.statusCode).toBe(404);
          expect(res.body.toString()).not.toBe('not found\n');
        });
      });

      describe.concurrent('headers', () => {
        it('joins duplicates, drops spoofing and hop-by-hop fields, trusts no proxy', async ({
          expect,
        }) => {
          const f = front.current;
          const env = await envOf(f, {
            method: 'POST',
            target: '/app/env',
            keepAlive: true,
            headers: [
              ['X-Dup', '1'],
              ['x-dup', '2'],
              ['Cookie', 'a=1'],
              ['Cookie', 'b=2'],
              ['X_Forwarded_For', 'evil-underscore'],
              ['Proxy', 'http://evil-proxy.example:8080'],
              ['X-Forwarded-For', '10.9.8.7'],
              ['X-Forwarded-Proto', 'https'],
              ['Authorization', 'Basic dXNlcjpwYXNz'],
              ['Connection', 'close, X-Hop'],
              ['X-Hop', 'evil-hop'],
              ['Content-Type', 'text/plain'],
            ],
            body: 'hello',
          });
          expect(env).toMatchObject(
            baseEnv(f, {
              REQUEST_METHOD: 'POST',
              CONTENT_LENGTH: '5',
              CONTENT_TYPE: 'text/plain',
              HTTP_X_DUP: '1, 2',
              HTTP_COOKIE: 'a=1; b=2',
              HTTP_X_FORWARDED_FOR: '10.9.8.7',
              HTTP_X_FORWARDED_PROTO: 'https',
              HTTP_AUTHORIZATION: 'Basic dXNlcjpwYXNz',
            }),
          );
          expect(
            Object.keys(env)
              .filter((k) => k.startsWith('HTTP_'))
              .sort(),
          ).toEqual([
            'HTTP_AUTHORIZATION',
            'HTTP_COOKIE',
            'HTTP_HOST',
            'HTTP_X_DUP',
            'HTTP_X_FORWARDED_FOR',
            'HTTP_X_FORWARDED_PROTO',
          ]);
          expect(env.HTTPS).toBeUndefined();
          expect(JSON.stringify(env)).not.toMatch(/evil/);
          if (spec.server === 'uwsgi') {
            // Backend difference: uWSGI sets wsgi.url_scheme from HTTP_X_FORWARDED_PROTO by itself
            // (its core reads that header), whatever REQUEST_SCHEME says. The proxy sent
            // REQUEST_SCHEME=http and no HTTPS, as checked above; nginx forwards the header too.
            expect(env['wsgi.url_scheme']).toBe('https');
          } else if (spec.app === 'python') {
            expect(env['wsgi.url_scheme']).toBe('http');
          }
        });

        it('a chunked body: CONTENT_LENGTH is the spooled length, no HTTP_TRANSFER_ENCODING', async ({
          expect,
        }) => {
          const f = front.current;
          const env = await envOf(f, {
            method: 'PUT',
            target: '/app/env',
            body: 'hello chunked',
            chunked: true,
          });
          expect(env).toMatchObject(baseEnv(f, { REQUEST_METHOD: 'PUT', CONTENT_LENGTH: '13' }));
          expect(Object.keys(env).filter((k) => k.startsWith('HTTP_'))).toEqual(['HTTP_HOST']);
        });

        it('sends exactly the DESIGN.md variables (in order, where the app can tell)', async ({
          expect,
        }) => {
          const env = await envOf(front.current, { target: '/app/env?a=1' });
          const cgi = Object.keys(env).filter((k) => /^[A-Z][A-Z0-9_]*$/.test(k));
          if (spec.app === 'node') {
            // node-app.mjs reports every variable in arrival order.
            expect(env.__order).toEqual(DESIGN_ORDER);
          } else {
            // A WSGI environ is a dict: the order is lost, the set is checked.
            expect(cgi.sort()).toEqual([...DESIGN_ORDER].sort());
          }
          expect(env.REMOTE_PORT).toMatch(/^[1-9][0-9]*$/);
        });
      });
    });

    describe.each(['fastify', 'express'] as const)('through %s mounted at the root', (kind) => {
      const front = useFront(kind, backend, { prefix: '' });

      describe.concurrent('root mount', () => {
        it.for([
          ['/env', hex('/env')],
          ['/env/caf%C3%A9', '2f656e762f636166c3a9'],
          ['/env/%E9', '2f656e762fe9'],
          // At the root nothing is outside the mount: `..` stops at "/" and the rest is forwarded.
          ['/../env/x', hex('/env/x')],
        ])('%j -> SCRIPT_NAME "" and PATH_INFO bytes %s', async ([target, pathInfoHex], {
          expect,
        }) => {
          const f = front.current;
          const env = await envOf(f, { target });
          const pathInfo = Buffer.from(pathInfoHex, 'hex').toString('latin1');
          expect(env).toMatchObject(
            baseEnv(f, {
              SCRIPT_NAME: '',
              REQUEST_URI: target,
              PATH_INFO: pathInfo,
              DOCUMENT_URI: pathInfo,
            }),
          );
          expect(env.PATH_INFO_hex).toBe(pathInfoHex);
        });

        it('/ is the app root', async ({ expect }) => {
          const res = await send(front.current, { target: '/' });
          expect(res.statusCode).toBe(200);
          expect(res.body.toString()).toBe(indexPage(spec.app, front.current, '/'));
        });

        it('/%00 -> 400 SCGI_ERR_PATH_NUL', async ({ expect }) => {
          const res = await send(front.current, { target: '/%00' });
          expect(res.statusCode).toBe(400);
          expect(JSON.parse(res.body.toString())).toEqual(
            errorBody(kind, 400, 'SCGI_ERR_PATH_NUL', 'Request path decodes to a NUL byte'),
          );
        });
      });
    });
  });
});
