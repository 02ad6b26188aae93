/**
 * Response headers meant for a front server (X-Sendfile, X-Lighttpd-Send-File, every X-Accel-*)
 * never reach the client by default, through both adapters: they expose paths on the backend's
 * disk. nginx hides X-Accel-* the same way; `passHeaders` (nginx `scgi_pass_header`) lets named
 * ones through. The backend is a Node SCGI server writing the head byte for byte.
 */
import type { AddressInfo, Server as NetServer } from 'node:net';
import { createScgiServer, ScgiProxy } from 'scgi-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from './helpers/corpus.js';
import { type Front, type FrontKind, startFront } from './helpers/fronts.js';
import { countOpenFds, headerValue, rawRequest } from './helpers/http.js';

const INTERNAL = [
  ['X-Sendfile', '/srv/private/report.pdf'],
  ['X-Accel-Redirect', '/protected/report.pdf'],
  ['X-Accel-Buffering', 'no'],
  ['X-Accel-Charset', 'utf-8'],
  ['X-Accel-Expires', '60'],
  ['X-Accel-Limit-Rate', '1024'],
  ['x-accel-anything-else', '1'],
  ['X-Lighttpd-Send-File', '/srv/private/report.pdf'],
  ['X-Lighttpd-Sendfile', '/srv/private/report.pdf'],
];
/** Look-alikes that are ordinary headers. */
const KEPT = [
  ['X-Accelerated', 'yes'],
  ['X-Sendfile-Type', 'X-Sendfile'],
  ['X-Custom', 'kept'],
];

let backend: NetServer;
let upstream: string;

beforeAll(async () => {
  backend = createScgiServer((req) => {
    const body = 'body';
    // Small with a Content-Length (collected whole), or streamed to the close.
    const length = req.env.PATH_INFO === '/stream' ? '' : `Content-Length: ${body.length}\r\n`;
    const lines = [...INTERNAL, ...KEPT].map(([n, v]) => `${n}: ${v}\r\n`).join('');
    req.socket.end(`Status: 200 OK\r\nContent-Type: text/plain\r\n${lines}${length}\r\n${body}`);
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  upstream = `127.0.0.1:${(backend.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => backend.close(() => r())));

const get = (front: Front, path: string) =>
  rawRequest(front.url, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);

describe.each(['fastify', 'express'] as FrontKind[])('%s', (kind) => {
  let front: Front;
  let passing: Front;
  beforeAll(async () => {
    front = await startFront(kind, upstream, '/app');
    passing = await startFront(kind, upstream, '/app', {
      passHeaders: ['X-Accel-Buffering', 'x-sendfile'],
    });
  });
  afterAll(async () => {
    await front.close();
    await passing.close();
  });

  it.each([
    '/app/small',
    '/app/stream',
  ])('%s: X-Sendfile, X-Lighttpd-Send-File and X-Accel-* are hidden; look-alikes are kept', async (path) => {
    await get(front, path);
    const before = countOpenFds();
    const res = await get(front, path);
    expect(res.statusCode).toBe(200);
    expect(res.body.toString()).toBe('body');
    for (const [name] of INTERNAL) expect(headerValue(res, name!), name).toBeUndefined();
    for (const [name, value] of KEPT) expect(headerValue(res, name!), name).toBe(value);
    expect(await eventually(() => countOpenFds() <= before)).toBe(true);
  });

  it('passHeaders lets the named ones through, and only those', async () => {
    const res = await get(passing, '/app/small');
    expect(res.statusCode).toBe(200);
    expect(headerValue(res, 'x-accel-buffering')).toBe('no');
    expect(headerValue(res, 'x-sendfile')).toBe('/srv/private/report.pdf');
    for (const [name] of INTERNAL.filter(([n]) => !/^x-(accel-buffering|sendfile)$/i.test(n!))) {
      expect(headerValue(res, name!), name).toBeUndefined();
    }
  });
});

describe('passHeaders is validated', () => {
  it.each([
    ['a string', 'X-Sendfile', 'passHeaders'],
    ['a name that is not hidden', ['X-Custom'], 'passHeaders[0]'],
    ['not a header name', ['X Sendfile'], 'passHeaders[0]'],
    ['not a string', [1], 'passHeaders[0]'],
  ])('%s: SCGI_ERR_INVALID_OPTION naming it', (_, value, name) => {
    expect(() => new ScgiProxy({ upstream, passHeaders: value as string[] })).toThrow(
      expect.objectContaining({
        code: 'SCGI_ERR_INVALID_OPTION',
        message: expect.stringContaining(name),
      }),
    );
  });
});
