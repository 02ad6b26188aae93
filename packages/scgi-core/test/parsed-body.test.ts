// parsedBodyBytes / parsedBodyGuard on real requests (a Node HTTP/1.1 and an HTTP/2 server on
// 127.0.0.1 port 0): the rules the adapters' end-to-end tests (test/parsed-body*.test.ts) do
// not reach through body-parser: raw bytes of the wrong length, Uint8Array and quoted
// charsets, no body at all, HTTP/2 streams ended with their headers, the log-once guard.
import http, { type IncomingMessage } from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  BODY_PARSER_FIX,
  parsedBodyBytes,
  parsedBodyGuard,
  requestBodyConsumed,
} from '../src/http/parsed-body.js';

type Decide = (req: IncomingMessage | http2.Http2ServerRequest, body: Buffer) => unknown;

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

/** Reads the whole request (as a body parser would), then answers JSON of `decide`'s result. */
function answer(decide: Decide) {
  return (req: IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let out: unknown;
      try {
        const r = decide(req, Buffer.concat(chunks));
        out = Buffer.isBuffer(r) ? { hex: r.toString('hex') } : { value: r ?? null };
      } catch (err) {
        out = { code: (err as { code: string }).code, message: (err as Error).message };
      }
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(out));
    });
  };
}

async function serve(decide: Decide): Promise<string> {
  const server = http.createServer(answer(decide));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(
    () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function call(url: string, init: RequestInit = {}): Promise<Record<string, unknown>> {
  return (await (await fetch(url, init)).json()) as Record<string, unknown>;
}

describe('parsedBodyBytes', () => {
  it('sends raw bytes only when their length is the Content-Length', async () => {
    const url = await serve((req, body) => parsedBodyBytes(req, {}, body.subarray(1)));
    const res = await call(url, { method: 'POST', body: 'abcd' });
    expect(res).toMatchObject({ code: 'SCGI_ERR_BODY_CONSUMED' });
    expect(res.message).toContain('the raw body kept has 3 bytes but Content-Length is 4');
  });

  it('takes a Uint8Array (rawBody, or the body itself) as bytes', async () => {
    const url = await serve((req, body) => parsedBodyBytes(req, new Uint8Array(body), undefined));
    expect(await call(url, { method: 'POST', body: 'ab' })).toEqual({ hex: '6162' });
  });

  it('takes a UTF-8 string for a quoted utf-8 charset, not for another one', async () => {
    const url = await serve((req, body) => parsedBodyBytes(req, undefined, body.toString()));
    const post = (type: string) =>
      call(url, { method: 'POST', body: 'é', headers: { 'content-type': type } });
    expect(await post('text/plain; charset="UTF-8"')).toEqual({ hex: 'c3a9' });
    expect(await post('text/plain; charset=utf8')).toEqual({ hex: 'c3a9' });
    expect(await post('text/plain; charset=iso-8859-1')).toMatchObject({
      code: 'SCGI_ERR_BODY_CONSUMED',
    });
  });

  it('sends nothing for a request without a body, whatever the parser left', async () => {
    const url = await serve((req) => parsedBodyBytes(req, { left: 'by a parser' }, undefined));
    expect(await call(url)).toEqual({ hex: '' });
    expect(await call(url, { method: 'POST' })).toEqual({ hex: '' }); // Content-Length: 0
  });

  it('sends nothing for an HTTP/2 stream that ended with its headers', async () => {
    const server = http2.createServer(
      answer((req) => parsedBodyBytes(req, {}, undefined)) as never,
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    closers.push(async () => {
      client.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    const text = await new Promise<string>((resolve, reject) => {
      const s = client.request({ ':method': 'POST', ':path': '/' }, { endStream: true });
      let data = '';
      s.setEncoding('utf8');
      s.on('data', (c: string) => {
        data += c;
      });
      s.on('end', () => resolve(data));
      s.on('error', reject);
    });
    expect(JSON.parse(text)).toEqual({ hex: '' });
  });
});

describe('parsedBodyGuard', () => {
  it('leaves an unread stream alone, refuses a parsed value and logs that once', async () => {
    const warnings: Array<[object, string | undefined]> = [];
    const logger = {
      info: () => {},
      error: () => {},
      warn: (obj: object, msg?: string) => void warnings.push([obj, msg]),
    };
    const guard = parsedBodyGuard({ logger, fix: BODY_PARSER_FIX.express, message: 'order!' });
    const seen: boolean[] = [];
    const server = http.createServer((req, res) => {
      seen.push(requestBodyConsumed(req));
      const untouched = guard(req, { parsed: true }, undefined);
      answer((r) => {
        seen.push(requestBodyConsumed(r));
        return untouched === undefined ? guard(r, { parsed: true }, undefined) : 'read';
      })(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    closers.push(
      () =>
        new Promise((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    );
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    for (let i = 0; i < 3; i++) {
      expect(await call(url, { method: 'POST', body: '{"a":1}' })).toMatchObject({
        code: 'SCGI_ERR_BODY_CONSUMED',
        message: expect.stringContaining('verify: keepRawBody'),
      });
    }
    expect(seen).toEqual([false, true, false, true, false, true]);
    expect(warnings).toEqual([
      [{ code: 'SCGI_ERR_BODY_CONSUMED', reason: expect.any(String) }, 'order!'],
    ]);
  });
});
