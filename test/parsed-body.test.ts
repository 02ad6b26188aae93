/**
 * Issue 12 §1: a body a framework parser already read reaches the backend byte for byte, or the
 * request fails with SCGI_ERR_BODY_CONSUMED; never different bytes. Every case of the issue, on
 * Express 4 and 5, with the sha256 computed by a real backend (examples/python/app.py /sha256
 * under scgi_server.py), and fastify-scgi's reply.scgi() on a route whose body Fastify parsed.
 */
import { gzipSync } from 'node:zlib';
import Fastify, { type FastifyInstance } from 'fastify';
import fastifyScgi from 'fastify-scgi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, startPythonBackend } from './helpers/backends.js';
import { has } from './helpers/binaries.js';
import { countOpenFds, rawRequest } from './helpers/http.js';
import {
  exact,
  type ParsedBodyFront,
  post,
  REFUSED,
  startParsedBodyFront,
} from './helpers/parsed-body.js';
import { eventually } from './helpers/pool.js';
import { pinoCapture } from './helpers/workers.js';

const FORM = 'application/x-www-form-urlencoded';
const JSON_TYPE = 'application/json';

/** The forms (express.urlencoded({ extended: true })), and two that re-encode alike. */
const FORMS = [
  'user[name]=a&user[roles][]=x&user[roles][]=y',
  'a[b][c][d][e][f][g]=1',
  'list[0]=x&list[1]=y&list[5]=z',
  '__proto__[admin]=true&constructor[prototype][y]=1',
  'a=%41+&b=A%20&a=1',
];
/** The JSON documents (express.json()): a big integer, whitespace, escapes, duplicates. */
const JSONS = [
  '{"id":12345678901234567890}',
  '{ "name" : "caf\\u00e9",\n\t"a": 1, "a": 2 }',
  '{"a":1e2}',
  '[1.0, -0, "\\/"]',
];

let backend: Backend;
beforeAll(async () => {
  if (has('python3')) backend = await startPythonBackend({ socket: 'unix', threads: 16 });
});
afterAll(async () => {
  await backend?.stop();
});

describe.skipIf(!has('python3')).each([4, 5] as const)('Express %i', (version) => {
  let front: ParsedBodyFront;
  beforeAll(async () => {
    front = await startParsedBodyFront(version, backend.address);
  });
  afterAll(async () => {
    await front?.close();
  });
  const at = (mount: string, route = '/sha256') => `${front.url}/${mount}${route}`;

  it.each([
    ...FORMS.map((b) => [FORM, b]),
    ...JSONS.map((b) => [JSON_TYPE, b]),
  ])('%s %s: exact with keepRawBody or the proxy first, else refused', async (type, body) => {
    expect(await post(at('keep'), body, type)).toEqual(exact(body));
    expect(await post(at('first'), body, type)).toEqual(exact(body));
    expect(await post(at('parsed'), body, type)).toEqual(REFUSED);
  });

  it('the refusal names the fix, and is logged once per middleware at warn level', async () => {
    const res = await post(at('parsed'), JSONS[0], JSON_TYPE);
    expect(res.body.message).toMatch(/mount the proxy before the body parser.*keepRawBody/);
    await post(at('parsed'), FORMS[0], FORM);
    expect(front.warnings.filter((r) => r.level === 40)).toEqual([
      expect.objectContaining({
        code: 'SCGI_ERR_BODY_CONSUMED',
        msg: expect.stringContaining('mount scgiProxy() before express.json()'),
      }),
    ]);
  });

  it('a POST with Content-Type json and no body reaches the backend empty (CONTENT_LENGTH 0)', async () => {
    for (const mount of ['keep', 'parsed', 'first']) {
      expect(await post(at(mount), undefined, JSON_TYPE)).toEqual(exact(''));
      const env = await post(at(mount, '/env'), undefined, JSON_TYPE);
      expect(env.body).toMatchObject({ CONTENT_LENGTH: '0', CONTENT_TYPE: JSON_TYPE });
      // Neither Content-Length nor Transfer-Encoding: no body on the wire at all.
      const bare = await rawRequest(
        front.url,
        `POST /${mount}/sha256 HTTP/1.1\r\nHost: x\r\nContent-Type: ${JSON_TYPE}\r\nConnection: close\r\n\r\n`,
      );
      expect(JSON.parse(bare.body.toString())).toEqual(exact('').body);
    }
  });

  it('gzip-encoded JSON is refused once a parser inflated it, exact with the proxy first', async () => {
    const gz = gzipSync(Buffer.from(JSONS[1]!));
    const headers = { 'content-encoding': 'gzip' };
    const refused = await post(at('keep'), gz, JSON_TYPE, headers);
    expect(refused).toEqual(REFUSED);
    expect(refused.body.message).toContain('Content-Encoding "gzip"');
    expect(await post(at('parsed'), gz, JSON_TYPE, headers)).toEqual(REFUSED);
    expect(await post(at('first'), gz, JSON_TYPE, headers)).toEqual(exact(gz));
  });

  it('a chunked body kept by keepRawBody is exact; a parsed one is refused', async () => {
    const body = JSONS[1]!;
    const chunked = (mount: string) =>
      rawRequest(
        front.url,
        Buffer.concat([
          Buffer.from(
            `POST /${mount}/sha256 HTTP/1.1\r\nHost: x\r\nContent-Type: ${JSON_TYPE}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`,
          ),
          Buffer.from(`${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n`),
        ]),
      );
    const kept = await chunked('keep');
    expect(kept.statusCode).toBe(200);
    expect(JSON.parse(kept.body.toString())).toEqual(exact(body).body);
    const parsed = await chunked('parsed');
    expect(parsed.statusCode).toBe(500);
    expect(JSON.parse(parsed.body.toString()).code).toBe('SCGI_ERR_BODY_CONSUMED');
  });

  it('text and raw bodies: exact only where the bytes provably round-trip', async () => {
    const text = 'héllo wörld ☃';
    const bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]);
    const latin1 = Buffer.from('caf\xe9', 'latin1');
    const notUtf8 = Buffer.from([0x61, 0xff, 0x62]);
    // UTF-8 text of the Content-Length's size: the string is the bytes.
    expect(await post(at('parsed'), text, 'text/plain')).toEqual(exact(text));
    expect(await post(at('parsed'), text, 'text/plain; charset=UTF-8')).toEqual(exact(text));
    // The decoder stripped a BOM / decoded Latin-1 / replaced a bad byte: not the client's bytes.
    expect(await post(at('parsed'), bom, 'text/plain; charset=utf-8')).toEqual(REFUSED);
    expect(await post(at('parsed'), latin1, 'text/plain; charset=latin1')).toEqual(REFUSED);
    expect(await post(at('parsed'), notUtf8, 'text/plain')).toEqual(REFUSED);
    // keepRawBody keeps the bytes before decoding: all exact.
    for (const [body, type] of [
      [bom, 'text/plain; charset=utf-8'],
      [latin1, 'text/plain; charset=latin1'],
      [notUtf8, 'text/plain'],
    ] as const) {
      expect(await post(at('keep'), body, type)).toEqual(exact(body));
    }
    // express.raw(): req.body is the Buffer itself.
    const bin = Buffer.from([0, 1, 2, 0xfe, 0xff]);
    expect(await post(at('parsed'), bin, 'application/octet-stream')).toEqual(exact(bin));
  });

  it('refused requests leave no descriptor behind', async () => {
    const refuse = () =>
      rawRequest(
        front.url,
        `POST /parsed/sha256 HTTP/1.1\r\nHost: x\r\nContent-Type: ${JSON_TYPE}\r\nContent-Length: 8\r\nConnection: close\r\n\r\n{"a": 1}`,
      );
    expect((await refuse()).statusCode).toBe(500); // warm-up: lazy handles exist from here on
    const before = countOpenFds();
    for (let i = 0; i < 20; i++) expect((await refuse()).statusCode).toBe(500);
    const after = await eventually(countOpenFds, (n) => n <= before, 5000);
    expect(after).toBeLessThanOrEqual(before);
  });
});

describe.skipIf(!has('python3'))(
  'fastify-scgi reply.scgi() on a route whose body Fastify parsed',
  () => {
    let app: FastifyInstance;
    let url: string;
    const log = pinoCapture();
    beforeAll(async () => {
      app = Fastify({ logger: { level: 'warn', stream: log.stream } });
      await app.register(fastifyScgi, { upstream: backend.address, prefix: '/app' });
      // Fastify's own JSON parser: no raw bytes.
      app.post('/sha256', (_request, reply) => reply.scgi());
      // The recipe of the README: a parser that keeps the bytes as request.rawBody.
      await app.register(
        async (scope) => {
          scope.addContentTypeParser(JSON_TYPE, { parseAs: 'buffer' }, (request, body, done) => {
            (request as { rawBody?: unknown }).rawBody = body;
            try {
              done(null, JSON.parse(body.toString()));
            } catch (err) {
              done(err as Error, undefined);
            }
          });
          scope.post('/sha256', (_request, reply) => reply.scgi({ scriptName: '/kept' }));
        },
        { prefix: '/kept' },
      );
      // fastify-raw-body's default: request.rawBody as a UTF-8 string.
      await app.register(
        async (scope) => {
          scope.addContentTypeParser(JSON_TYPE, { parseAs: 'string' }, (request, body, done) => {
            (request as { rawBody?: unknown }).rawBody = body;
            done(null, JSON.parse(body as string));
          });
          scope.post('/sha256', (_request, reply) => reply.scgi({ scriptName: '/text' }));
        },
        { prefix: '/text' },
      );
      await app.listen({ port: 0, host: '127.0.0.1' });
      url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    });
    afterAll(async () => {
      await app?.close();
    });

    it.each(JSONS)('%s: refused without raw bytes, exact with request.rawBody', async (body) => {
      const refused = await post(`${url}/sha256`, body, JSON_TYPE);
      expect(refused.status).toBe(500);
      expect(refused.body).toMatchObject({
        code: 'SCGI_ERR_BODY_CONSUMED',
        message: expect.stringContaining('request.rawBody'),
      });
      expect(await post(`${url}/kept/sha256`, body, JSON_TYPE)).toEqual(exact(body));
      expect(await post(`${url}/text/sha256`, body, JSON_TYPE)).toEqual(exact(body));
      // The plugin's own routes read no body: the stream goes through.
      expect(await post(`${url}/app/sha256`, body, JSON_TYPE)).toEqual(exact(body));
    });

    it('logs the first refusal once at warn level, naming the fix', async () => {
      await post(`${url}/sha256`, '{}', JSON_TYPE);
      const warnings = log.records.filter((r) => r.level === 40 && r.code !== undefined);
      expect(warnings).toEqual([
        expect.objectContaining({
          code: 'SCGI_ERR_BODY_CONSUMED',
          msg: expect.stringContaining('keep the raw bytes as request.rawBody'),
        }),
      ]);
    });
  },
);
