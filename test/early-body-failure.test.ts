/**
 * A backend that sends the head of a streamed body (Content-Length over `maxBufferedBody`) and
 * then closes before any body byte. Nothing has reached the client yet, so both adapters answer
 * a clean 502 through the framework's error handler (Fastify's, Express's `next(err)`; the core
 * response writer, scgi-core http/response-writer.ts): that error must not carry the backend's
 * headers (a Set-Cookie given to the wrong answer, a Cache-Control that lets a shared cache keep
 * the 502 for a day, a Content-Encoding the error page does not have).
 */
import type { AddressInfo, Server as NetServer } from 'node:net';
import { createScgiServer } from 'scgi-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Front, type FrontKind, startFront } from './helpers/fronts.js';
import { headerValue, rawRequest } from './helpers/http.js';

const BACKEND_HEADERS = [
  ['Content-Type', 'application/octet-stream'],
  ['Set-Cookie', 'session=from-the-backend'],
  ['Cache-Control', 'public, max-age=86400'],
  ['Content-Encoding', 'gzip'],
  ['ETag', '"v1"'],
  ['Content-Disposition', 'attachment; filename=big.bin'],
] as const;

let backend: NetServer;
let upstream: string;

beforeAll(async () => {
  // `/head-only`: the head announces 1 MiB, then the connection ends. `/ok`: a whole small body.
  backend = createScgiServer((req, res) => {
    if (req.env.PATH_INFO === '/ok') {
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': '3' });
      res.end('ok\n');
      return;
    }
    let head = 'Status: 200 OK\r\nContent-Length: 1048576\r\n';
    for (const [name, value] of BACKEND_HEADERS) head += `${name}: ${value}\r\n`;
    req.socket.end(`${head}\r\n`);
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  upstream = `127.0.0.1:${(backend.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => backend.close(() => r())));

describe.each([
  'fastify',
  'express',
] as FrontKind[])('%s: streamed body fails before its first byte', (kind) => {
  let front: Front;
  beforeAll(async () => {
    front = await startFront(kind, upstream, '/app');
  });
  afterAll(() => front.close());

  const get = (path: string) =>
    rawRequest(
      front.url,
      Buffer.from(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 'latin1'),
    );

  it('never gives a clean answer with the backend headers', async () => {
    const res = await get('/app/head-only');
    expect(res.statusCode).toBe(502);
    expect(res.closedEarly).toBe(false);
    expect(headerValue(res, 'content-length')).toBe(String(res.body.length));
    for (const [name] of BACKEND_HEADERS.slice(1)) {
      expect(headerValue(res, name), name).toBeUndefined();
    }
    if (kind === 'fastify') {
      expect(JSON.parse(res.body.toString()).code).toBe('SCGI_ERR_UPSTREAM_BODY');
      expect(headerValue(res, 'content-type')).toBe('application/json; charset=utf-8');
    } else {
      // Express's final handler answers the error with its own page.
      expect(headerValue(res, 'content-type')).toBe('text/html; charset=utf-8');
    }
  });

  it('the next request on the same front is answered normally', async () => {
    const res = await get('/app/ok');
    expect(res.statusCode).toBe(200);
    expect(res.body.toString()).toBe('ok\n');
  });
});
