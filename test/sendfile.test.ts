/**
 * X-Sendfile and X-Accel-Redirect (`sendfile: { root, header }`), through both adapters: the
 * backend (scgi-core's Node SCGI server) answers with the header and a body that must never
 * reach the client; the proxy serves the file with Range, conditional requests and HEAD, and
 * refuses anything outside the root after symlinks are resolved.
 */
import { mkdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo, type Server as NetServer } from 'node:net';
import { join } from 'node:path';
import { createScgiServer, ScgiProxy } from 'scgi-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, pattern } from './helpers/corpus.js';
import { type Front, type FrontKind, startFront } from './helpers/fronts.js';
import { countOpenFds, headerValue, type RawResponse, rawRequest } from './helpers/http.js';
import { makeTempDir, removeTempDir } from './helpers/tmp.js';

const HELLO = 'hello, sendfile world\n';
const BIG = pattern(8 * 1024 * 1024);
const BACKEND_BODY = 'backend body that must not be sent';

let dir: string;
let root: string;
let backend: NetServer;
let upstream: string;

beforeAll(async () => {
  dir = makeTempDir('sendfile-');
  root = join(dir, 'public');
  mkdirSync(join(root, 'sub'), { recursive: true });
  mkdirSync(join(root, 'dir'));
  mkdirSync(join(dir, 'private'));
  writeFileSync(join(root, 'hello.txt'), HELLO);
  writeFileSync(join(root, 'sub', 'a b%.txt'), 'odd name');
  writeFileSync(join(root, 'big.bin'), BIG);
  writeFileSync(join(dir, 'secret.txt'), 'secret');
  writeFileSync(join(dir, 'private', 'secret.txt'), 'secret');
  symlinkSync(join(root, 'hello.txt'), join(root, 'link-inside'));
  symlinkSync(join(dir, 'secret.txt'), join(root, 'link-out'));
  symlinkSync(join(dir, 'private'), join(root, 'dir-out'));

  // The header's value comes from the query string (`?v=<value>`); `stream` answers without a
  // Content-Length, so the engine streams (and must drop) the backend's body.
  backend = createScgiServer((req) => {
    const q = new URLSearchParams(String(req.env.QUERY_STRING));
    const header = q.get('h') ?? 'X-Sendfile';
    const length = q.has('stream') ? '' : `Content-Length: ${BACKEND_BODY.length}\r\n`;
    req.socket.end(
      `Status: 200 OK\r\n${header}: ${q.get('v')}\r\nContent-Type: text/x-app\r\n` +
        `Cache-Control: private, max-age=60\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n` +
        `X-App: yes\r\n${length}\r\n${BACKEND_BODY}`,
    );
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  upstream = `127.0.0.1:${(backend.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise<void>((r) => backend.close(() => r()));
  removeTempDir(dir);
});

const req = (front: Front, value: string, extra = '', method = 'GET', more = '') =>
  rawRequest(
    front.url,
    `${method} /app/x?v=${encodeURIComponent(value)}${more} HTTP/1.1\r\nHost: x\r\n${extra}Connection: close\r\n\r\n`,
  );

function expectError(res: RawResponse, status: number, code: string) {
  expect(res.statusCode).toBe(status);
  expect(JSON.parse(res.body.toString()).code).toBe(code);
  // The backend's path never reaches the client, not even in the error.
  expect(res.body.toString()).not.toContain(dir);
  expect(headerValue(res, 'x-sendfile')).toBeUndefined();
}

describe.each(['fastify', 'express'] as FrontKind[])('%s', (kind) => {
  let xs: Front;
  let accel: Front;
  const extra = kind === 'fastify' ? {} : { respondOnError: true };
  beforeAll(async () => {
    xs = await startFront(kind, upstream, '/app', { ...extra, sendfile: { root } });
    accel = await startFront(kind, upstream, '/app', {
      ...extra,
      sendfile: { root, header: 'X-Accel-Redirect' },
    });
  });
  afterAll(async () => {
    await xs.close();
    await accel.close();
  });

  it('serves the file in place of the backend body, keeping the app headers', async () => {
    const res = await req(xs, join(root, 'hello.txt'));
    expect(res.statusCode).toBe(200);
    expect(res.body.toString()).toBe(HELLO);
    expect(headerValue(res, 'content-length')).toBe(String(HELLO.length));
    expect(headerValue(res, 'last-modified')).toBe(
      statSync(join(root, 'hello.txt')).mtime.toUTCString(),
    );
    expect(headerValue(res, 'etag')).toMatch(/^W\/"/);
    expect(headerValue(res, 'accept-ranges')).toBe('bytes');
    // The app's labels and cookies stay (as nginx keeps them on X-Accel-Redirect).
    expect(headerValue(res, 'content-type')).toBe('text/x-app');
    expect(headerValue(res, 'cache-control')).toBe('private, max-age=60');
    expect(res.headers.filter(([n]) => n.toLowerCase() === 'set-cookie').map(([, v]) => v)).toEqual(
      ['a=1', 'b=2'],
    );
    expect(headerValue(res, 'x-app')).toBe('yes');
    expect(headerValue(res, 'x-sendfile')).toBeUndefined();
  });

  it('a streamed backend body is dropped too; relative paths resolve against the root', async () => {
    const res = await req(xs, 'sub/a b%.txt', '', 'GET', '&stream=1');
    expect(res.statusCode).toBe(200);
    expect(res.body.toString()).toBe('odd name');
    expect(res.closedEarly).toBe(false);
  });

  it('a symlink that stays inside the root is served', async () => {
    const res = await req(xs, join(root, 'link-inside'));
    expect(res.statusCode).toBe(200);
    expect(res.body.toString()).toBe(HELLO);
  });

  it.each([
    ['../secret.txt'],
    ['sub/../../secret.txt'],
    ['/etc/passwd'],
    ['link-out'],
    ['dir-out/secret.txt'],
    ['dir'],
    ['.'],
  ])('X-Sendfile %s is refused with 403', async (value) => {
    const res = await req(xs, value);
    expectError(res, 403, 'SCGI_ERR_SENDFILE_FORBIDDEN');
  });

  it('a missing file is 404', async () => {
    expectError(await req(xs, 'nope.txt'), 404, 'SCGI_ERR_SENDFILE_NOT_FOUND');
    expectError(await req(xs, 'hello.txt/more'), 404, 'SCGI_ERR_SENDFILE_NOT_FOUND');
  });

  it('Range: one range is 206 with Content-Range; an unsatisfiable one 416', async () => {
    const res = await req(xs, 'hello.txt', 'Range: bytes=7-14\r\n');
    expect(res.statusCode).toBe(206);
    expect(res.body.toString()).toBe(HELLO.slice(7, 15));
    expect(headerValue(res, 'content-range')).toBe(`bytes 7-14/${HELLO.length}`);
    expect(headerValue(res, 'content-length')).toBe('8');
    const bad = await req(xs, 'hello.txt', 'Range: bytes=500-600\r\n');
    expect(bad.statusCode).toBe(416);
    expect(headerValue(bad, 'content-range')).toBe(`bytes */${HELLO.length}`);
  });

  it('conditional requests: If-Modified-Since and If-None-Match give 304, If-Unmodified-Since 412', async () => {
    const first = await req(xs, 'hello.txt');
    const lastModified = headerValue(first, 'last-modified')!;
    const etag = headerValue(first, 'etag')!;
    const ims = await req(xs, 'hello.txt', `If-Modified-Since: ${lastModified}\r\n`);
    expect(ims.statusCode).toBe(304);
    expect(ims.body.length).toBe(0);
    expect(headerValue(ims, 'content-type')).toBeUndefined();
    expect(headerValue(ims, 'etag')).toBe(etag);
    const inm = await req(xs, 'hello.txt', `If-None-Match: ${etag}\r\n`);
    expect(inm.statusCode).toBe(304);
    const stale = await req(xs, 'hello.txt', `If-Modified-Since: ${new Date(0).toUTCString()}\r\n`);
    expect(stale.statusCode).toBe(200);
    expect(stale.body.toString()).toBe(HELLO);
    const ius = await req(xs, 'hello.txt', `If-Unmodified-Since: ${new Date(0).toUTCString()}\r\n`);
    expect(ius.statusCode).toBe(412);
  });

  it('HEAD: the file headers, no body', async () => {
    const res = await req(xs, 'big.bin', '', 'HEAD');
    expect(res.statusCode).toBe(200);
    expect(headerValue(res, 'content-length')).toBe(String(BIG.length));
    expect(res.body.length).toBe(0);
  });

  it('a large file streams whole', async () => {
    const res = await req(xs, 'big.bin');
    expect(res.statusCode).toBe(200);
    expect(res.body.equals(BIG)).toBe(true);
  });

  it('X-Accel-Redirect: a URI under the root, percent-decoded, query ignored', async () => {
    const res = await req(accel, '/sub/a%20b%25.txt?x=1', '', 'GET', '&h=X-Accel-Redirect');
    expect(res.statusCode).toBe(200);
    expect(res.body.toString()).toBe('odd name');
    expect(headerValue(res, 'x-accel-redirect')).toBeUndefined();
  });

  it.each([
    ['/../secret.txt'],
    ['/%2e%2e/secret.txt'],
    ['/sub/..%2f..%2fsecret.txt'],
    ['/link-out'],
    ['/dir-out/secret.txt'],
  ])('X-Accel-Redirect %s is refused with 403', async (value) => {
    const res = await req(accel, value, '', 'GET', '&h=X-Accel-Redirect');
    expectError(res, 403, 'SCGI_ERR_SENDFILE_FORBIDDEN');
  });

  it.each([
    ['sub/a.txt'],
    ['/%zz'],
  ])('X-Accel-Redirect %s (not a URI path) is a 502', async (value) => {
    const res = await req(accel, value, '', 'GET', '&h=X-Accel-Redirect');
    expectError(res, 502, 'SCGI_ERR_SENDFILE_PATH');
  });

  it('the header of the other kind is hidden, not served', async () => {
    const res = await req(xs, '/hello.txt', '', 'GET', '&h=X-Accel-Redirect');
    expect(res.statusCode).toBe(200);
    expect(res.body.toString()).toBe(BACKEND_BODY);
    expect(headerValue(res, 'x-accel-redirect')).toBeUndefined();
  });

  it('no descriptor is left behind, also when the client leaves mid-file', async () => {
    await req(xs, 'hello.txt');
    const before = countOpenFds();
    for (let i = 0; i < 5; i++) {
      await req(xs, 'hello.txt');
      await req(xs, 'link-out');
      await req(xs, 'hello.txt', 'Range: bytes=1-2\r\n');
      await req(xs, 'hello.txt', 'Range: bytes=900-\r\n');
    }
    // A client that reads the head of the 8 MiB file and goes away.
    for (let i = 0; i < 3; i++) {
      await new Promise<void>((resolve, reject) => {
        const { port } = new URL(xs.url);
        const s = net.connect(Number(port), '127.0.0.1', () => {
          s.write(`GET /app/x?v=big.bin HTTP/1.1\r\nHost: x\r\n\r\n`);
        });
        s.once('data', () => {
          s.destroy();
          resolve();
        });
        s.once('error', reject);
      });
    }
    expect(await eventually(() => countOpenFds() <= before)).toBe(true);
  });
});

describe('without sendfile', () => {
  it('X-Sendfile is hidden and the backend body is sent', async () => {
    const front = await startFront('fastify', upstream, '/app');
    try {
      const res = await req(front, join(root, 'hello.txt'));
      expect(res.statusCode).toBe(200);
      expect(res.body.toString()).toBe(BACKEND_BODY);
      expect(headerValue(res, 'x-sendfile')).toBeUndefined();
    } finally {
      await front.close();
    }
  });
});

describe('sendfile option', () => {
  it.each([
    [{ root: '' }, 'sendfile.root'],
    [{ root: '/no/such/dir/at/all' }, 'sendfile.root'],
    [{ root: '.', header: 'X-Foo' }, 'sendfile.header'],
    [{ root: '.', roots: 1 }, 'sendfile.roots'],
    ['yes', 'sendfile'],
  ])('%j is refused naming %s', (sendfile, name) => {
    expect(() => new ScgiProxy({ upstream: '127.0.0.1:1', sendfile } as never)).toThrow(name);
  });

  it('the sendfile header cannot also be passed to the client', () => {
    expect(
      () =>
        new ScgiProxy({
          upstream: '127.0.0.1:1',
          sendfile: { root: '.' },
          passHeaders: ['X-Sendfile'],
        }),
    ).toThrow(/passHeaders/);
  });
});
