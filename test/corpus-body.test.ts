/**
 * Request corpus, part 2: request bodies and responses, through every front to every backend.
 * Bodies are checked by their sha256 as the app computed it (/sha256, /echo); responses by their
 * exact status, header fields and bytes (/head, /status, /redirect, /cookies, /stream, /unicode).
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { beforeAll, describe, it } from 'vitest';
import {
  type AppKind,
  available,
  BACKENDS,
  dirEntries,
  errorBody,
  eventually,
  expectedErrorFields,
  FASTCGI_BACKENDS,
  fields,
  frontsFor,
  pattern,
  type Req,
  type RunningFront,
  requestBytes,
  send,
  sha256,
  useBackend,
  useFront,
} from './helpers/corpus.js';

const MiB = 1024 * 1024;
const EMPTY_SHA = sha256(Buffer.alloc(0));

/** Large bodies, made once per file and shared by every pair (they are only read). */
const big = {} as { body: Buffer; sha: string };
beforeAll(() => {
  big.body = randomBytes(50 * MiB);
  big.sha = sha256(big.body);
});

/** Every byte the front sends until it closes the connection (Connection: close). */
function wireBytes(front: RunningFront, r: Req): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port: front.port });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('no close within 10 s'));
    }, 10_000);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    socket.write(requestBytes(front, r));
  });
}

async function sha256Of(front: RunningFront, r: Req) {
  const res = await send(front, { method: 'POST', target: '/app/sha256', ...r }, 60_000);
  return { res, json: JSON.parse(res.body.toString()) as { length: number; sha256: string } };
}

const jsonFields = (body: Buffer): [string, string][] => [
  ['content-type', 'application/json'],
  ['content-length', String(body.length)],
];

/** Each app's exact answers where the two apps differ (texts, cookie values). */
const APP = {
  python: {
    head: {
      type: 'text/html',
      body: '<!doctype html><title>head</title><p>GET and HEAD both see this length.</p>\n',
    },
    redirect: {
      fields: [
        ['content-type', 'text/plain; charset=utf-8'],
        ['content-length', '12'],
        ['location', '/target'],
      ],
      body: 'see /target\n',
    },
    cookies: {
      values: [
        'a=1; Path=/',
        'b=2; Path=/; HttpOnly',
        'c=3; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Path=/',
      ],
      body: 'three cookies\n',
      framing: ['content-length', '14'],
    },
    unicode: { body: 'héllo wörld, ☃, 日本語, 🎉\n', withLength: true },
  },
  // Backend difference (the apps, not the servers): node-app.mjs writes the same routes more
  // tersely: no Content-Length on /redirect, /cookies and /unicode (the front chunks them), no
  // body on /redirect, its own texts and cookie attributes.
  node: {
    head: { type: 'text/plain', body: 'hello head\n' },
    redirect: {
      // The backend's body is empty and ends before the front writes its head: Node then
      // frames it as Content-Length: 0 (nothing was written before end()).
      fields: [
        ['location', '/target'],
        ['content-length', '0'],
      ],
      body: '',
    },
    cookies: {
      values: ['a=1; Path=/', 'b=2; HttpOnly', 'c=3'],
      body: 'cookies\n',
      framing: ['transfer-encoding', 'chunked'],
    },
    unicode: { body: 'héllo wörld ✓\n', withLength: false },
  },
} satisfies Record<AppKind, unknown>;

describe.each([...BACKENDS, ...FASTCGI_BACKENDS])('corpus (bodies, responses) -> $name', (spec) => {
  describe.skipIf(!available(spec))(`${spec.server} backend`, () => {
    const backend = useBackend(spec);
    const app = APP[spec.app];

    describe.each(frontsFor(spec))('through %s', (kind) => {
      const front = useFront(kind, backend);

      describe.concurrent('request bodies', () => {
        it.for([
          ['0 bytes, Content-Length: 0', 0, false],
          ['0 bytes, chunked', 0, true],
          ['1 MiB, Content-Length', MiB, false],
          ['1 MiB, chunked', MiB, true],
        ] as const)('%s -> same length and sha256', async ([, size, chunked], { expect }) => {
          const body = big.body.subarray(0, size);
          const { res, json } = await sha256Of(front.current, { body, chunked });
          expect(res.statusCode).toBe(200);
          expect(json).toEqual({ length: size, sha256: size === 0 ? EMPTY_SHA : sha256(body) });
          expect(fields(res)).toEqual(jsonFields(res.body));
        });

        it.for(['GET', 'DELETE'])('%s with a body: forwarded', async (method, { expect }) => {
          const { res, json } = await sha256Of(front.current, { method, body: 'payload' });
          expect(res.statusCode).toBe(200);
          expect(json).toEqual({ length: 7, sha256: sha256(Buffer.from('payload')) });
        });

        it('50 MiB with Content-Length, streamed', async ({ expect }) => {
          const { res, json } = await sha256Of(front.current, { body: big.body });
          expect(res.statusCode).toBe(200);
          expect(json).toEqual({ length: big.body.length, sha256: big.sha });
        });

        it('50 MiB chunked: spooled to tmpDir, which is empty afterwards', async ({ expect }) => {
          const { res, json } = await sha256Of(front.current, { body: big.body, chunked: true });
          expect(res.statusCode).toBe(200);
          expect(json).toEqual({ length: big.body.length, sha256: big.sha });
          // The spool file is unlinked asynchronously once the exchange is released.
          expect(await eventually(() => dirEntries(front.current.tmpDir).length === 0)).toBe(true);
        });

        it('8 MiB /echo: the app answers while still reading (full duplex), no deadlock', async ({
          expect,
        }) => {
          const body = big.body.subarray(0, 8 * MiB);
          const res = await send(
            front.current,
            {
              method: 'PUT',
              target: '/app/echo',
              headers: [['Content-Type', 'application/x-test']],
              body,
            },
            30_000,
          );
          expect(res.statusCode).toBe(200);
          expect(res.closedEarly).toBe(false);
          expect(fields(res)).toEqual([
            ['content-type', 'application/x-test'],
            ['content-length', String(body.length)],
          ]);
          expect(sha256(res.body)).toBe(sha256(body));
        });

        it('a small body the app never reads: 200 every time', async ({ expect }) => {
          // Regression: uWSGI answers from the head alone and closes. The engine wrote the head
          // and the body in two writes, the second into the closed socket: EPIPE, a false 502 on
          // about every second request. The head now leaves with the first body chunk.
          for (let i = 0; i < 20; i++) {
            const res = await send(front.current, {
              method: 'POST',
              target: '/app/status/200',
              body: 'ignored',
            });
            expect(res.statusCode).toBe(200);
            expect(res.body.toString()).toBe('status 200\n');
          }
        });
      });

      describe.concurrent('responses', () => {
        it('HEAD /head: the GET head with its Content-Length, no body on the wire', async ({
          expect,
        }) => {
          const get = await send(front.current, { target: '/app/head' });
          const expected: [string, string][] = [
            ['content-type', app.head.type],
            ['content-length', String(Buffer.byteLength(app.head.body))],
          ];
          expect(get.statusCode).toBe(200);
          expect(fields(get)).toEqual(expected);
          expect(get.body.toString()).toBe(app.head.body);
          const wire = await wireBytes(front.current, { method: 'HEAD', target: '/app/head' });
          const end = wire.indexOf('\r\n\r\n');
          expect(wire.subarray(0, 17).toString()).toBe('HTTP/1.1 200 OK\r\n');
          expect(wire.subarray(end + 4).length).toBe(0);
          const head = await send(front.current, { method: 'HEAD', target: '/app/head' });
          expect(fields(head)).toEqual(expected);
        });

        it.for([
          [204, 'No Content'],
          [304, 'Not Modified'],
        ] as const)('/status/%i: no body, no framing headers', async ([code, reason], {
          expect,
        }) => {
          const wire = await wireBytes(front.current, { target: `/app/status/${code}` });
          const end = wire.indexOf('\r\n\r\n');
          expect(wire.subarray(0, end).toString()).toMatch(
            new RegExp(`^HTTP/1.1 ${code} ${reason}\\r\\n`),
          );
          expect(wire.subarray(end + 4).length).toBe(0);
          const res = await send(front.current, { target: `/app/status/${code}` });
          expect(res.statusCode).toBe(code);
          expect(fields(res)).toEqual([]);
        });

        it('/redirect: 302 with Location', async ({ expect }) => {
          const res = await send(front.current, { target: '/app/redirect' });
          expect([res.statusCode, res.statusMessage]).toEqual([302, 'Found']);
          expect(fields(res)).toEqual(app.redirect.fields);
          expect(res.body.toString()).toBe(app.redirect.body);
        });

        it('/cookies: three Set-Cookie fields kept apart', async ({ expect }) => {
          const res = await send(front.current, { target: '/app/cookies' });
          expect(res.statusCode).toBe(200);
          expect(fields(res)).toEqual([
            ['content-type', spec.app === 'python' ? 'text/plain; charset=utf-8' : 'text/plain'],
            ...(spec.app === 'python' ? [app.cookies.framing] : []),
            ...app.cookies.values.map((v): [string, string] => ['set-cookie', v]),
            ...(spec.app === 'node' ? [app.cookies.framing] : []),
          ]);
          expect(res.body.toString()).toBe(app.cookies.body);
        });

        it('/unicode: UTF-8 bytes as sent', async ({ expect }) => {
          const res = await send(front.current, { target: '/app/unicode' });
          const body = Buffer.from(app.unicode.body);
          expect(res.statusCode).toBe(200);
          expect(fields(res)).toEqual([
            ['content-type', 'text/plain; charset=utf-8'],
            app.unicode.withLength
              ? ['content-length', String(body.length)]
              : ['transfer-encoding', 'chunked'],
          ]);
          expect(res.body.equals(body)).toBe(true);
        });

        it.for([
          ['with Content-Length', '&cl=1'],
          ['chunked (no Content-Length)', ''],
        ])('/stream 10 MiB %s: the byte pattern, exactly', async ([, cl], { expect }) => {
          const size = 10 * MiB;
          const res = await send(front.current, { target: `/app/stream?bytes=${size}${cl}` });
          expect(res.statusCode).toBe(200);
          expect(res.closedEarly).toBe(false);
          expect(fields(res)).toEqual([
            ['content-type', 'application/octet-stream'],
            cl ? ['content-length', String(size)] : ['transfer-encoding', 'chunked'],
          ]);
          expect(res.body.length).toBe(size);
          expect(sha256(res.body)).toBe(sha256(pattern(size)));
        });
      });
    });

    describe.each(frontsFor(spec))('through %s with maxBodySize 1 MiB', (kind) => {
      const front = useFront(kind, backend, { extra: { maxBodySize: MiB } });
      const tooLarge = errorBody(
        kind,
        413,
        'SCGI_ERR_BODY_TOO_LARGE',
        `Request body is larger than the limit of ${MiB} bytes`,
      );

      describe.concurrent('body limit', () => {
        it('exactly 1 MiB: forwarded', async ({ expect }) => {
          const { res, json } = await sha256Of(front.current, { body: big.body.subarray(0, MiB) });
          expect(res.statusCode).toBe(200);
          expect(json.length).toBe(MiB);
        });

        it('Content-Length over the limit: 413 from the head alone, connection closed', async ({
          expect,
        }) => {
          // Only the head is sent: the answer must not wait for the body.
          const res = await send(front.current, {
            method: 'POST',
            target: '/app/sha256',
            headers: [['Content-Length', String(MiB + 1)]],
          });
          expect(res.statusCode).toBe(413);
          expect(JSON.parse(res.body.toString())).toEqual(tooLarge);
          expect(fields(res)).toEqual(expectedErrorFields(JSON.stringify(tooLarge)));
          expect(res.headers.find(([n]) => n.toLowerCase() === 'connection')?.[1]).toBe('close');
        });

        it('chunked over the limit: 413, nothing left in tmpDir', async ({ expect }) => {
          const res = await sha256Of(front.current, {
            body: big.body.subarray(0, 2 * MiB),
            chunked: true,
          }).then(({ res }) => res);
          expect(res.statusCode).toBe(413);
          expect(JSON.parse(res.body.toString())).toEqual(tooLarge);
          expect(await eventually(() => dirEntries(front.current.tmpDir).length === 0)).toBe(true);
        });
      });
    });
  });
});
