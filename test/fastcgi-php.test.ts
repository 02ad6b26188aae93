// PHP-FPM and `php-cgi -b`, private instances (test/helpers/php.ts), driven by the FastCGI test
// client built from scgi-core's encoder and decoder: the codec against PHP's own FastCGI code.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { has } from './helpers/binaries.js';
import { pseudoRandomBytes, sha256 } from './helpers/bytes.js';
import { FastcgiConnection, fastcgiRequest, fcgiParams } from './helpers/fastcgi-client.js';
import { type PhpBackend, phpParams, startPhpCgi, startPhpFpm } from './helpers/php.js';

const pattern = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => i & 255));
const params = (
  php: PhpBackend,
  path: string,
  bodyLength = 0,
  extra: Record<string, string> = {},
) =>
  fcgiParams(path, bodyLength, {
    ...phpParams(php),
    CONTENT_TYPE: 'application/octet-stream',
    ...extra,
  });

describe.skipIf(!has('php-fpm'))('PHP-FPM (private instance, pm = static, 2 children)', () => {
  let fpm: PhpBackend;
  beforeAll(async () => {
    fpm = await startPhpFpm({ children: 2 });
  });
  afterAll(async () => {
    await fpm?.stop();
  });

  it('keeps one connection (and one child) across requests, bodies sha256-exact both ways', async () => {
    const conn = await FastcgiConnection.connect(fpm.address);
    const pids = new Set<number>();
    for (let i = 1; i <= 4; i++) {
      const body = pseudoRandomBytes(i, i * 700_000 + i);
      const reply = await conn.request(
        params(fpm, '/app.php?n=1', body.length, { HTTP_X_TEST: `r${i}` }),
        body,
        {
          keepConn: true,
          requestId: i,
        },
      );
      expect(reply.stderr.toString()).toBe('');
      expect(reply.protocolStatus).toBe(0);
      expect(reply.reusable).toBe(true);
      const json = JSON.parse(reply.body.toString());
      expect(json).toMatchObject({ length: body.length, sha256: sha256(body) });
      expect(json.env).toMatchObject({
        REQUEST_METHOD: 'POST',
        HTTP_X_TEST: `r${i}`,
        QUERY_STRING: 'n=1',
      });
      pids.add(json.pid);
    }
    expect(pids.size).toBe(1);
    const big = await conn.request(params(fpm, '/app.php?bytes=3000000'), undefined, {
      keepConn: true,
    });
    expect(big.headers).toContainEqual(['Content-Length', '3000000']);
    expect(sha256(big.body)).toBe(sha256(pattern(3_000_000)));
    expect(conn.peerEnded).toBe(false);
    conn.close();
  });

  it('takes 150 KB of variables in several PARAMS records (whole pairs each), unpadded, with a Status', async () => {
    const big = 'b'.repeat(50_000);
    const reply = await fastcgiRequest(
      fpm.address,
      params(fpm, '/app.php?status=418', 0, { HTTP_X_BIG: big, HTTP_X_A: big, HTTP_X_TEST: big }),
      undefined,
      { pad: false },
    );
    expect(reply.status).toMatch(/^418/);
    expect(JSON.parse(reply.body.toString()).env).toMatchObject({
      HTTP_X_BIG: big,
      HTTP_X_TEST: big,
    });
  });

  it('closes without END_REQUEST on one variable larger than a record (PHP decodes each record alone)', async () => {
    // Documents the peer: spec-wise the PARAMS stream is a byte stream, but PHP-FPM refuses a
    // pair cut by a record end; the encoder therefore splits only pairs over 65,535 bytes.
    await expect(
      fastcgiRequest(fpm.address, params(fpm, '/app.php', 0, { HTTP_X_BIG: 'b'.repeat(70_000) })),
    ).rejects.toMatchObject({ code: 'SCGI_ERR_FASTCGI_TRUNCATED' });
    // The pool is fine afterwards.
    const ok = await fastcgiRequest(fpm.address, params(fpm, '/app.php'));
    expect(JSON.parse(ok.body.toString()).length).toBe(0);
  });

  it('answers GET_VALUES (FCGI_MPXS_CONNS only)', async () => {
    const conn = await FastcgiConnection.connect(fpm.address);
    const values = await conn.getValues(['FCGI_MPXS_CONNS', 'FCGI_MAX_CONNS', 'FCGI_MAX_REQS']);
    // PHP-FPM knows only FCGI_MPXS_CONNS and leaves the other names out, as the spec allows.
    expect(Object.fromEntries(values)).toEqual({ FCGI_MPXS_CONNS: '0' });
    conn.close();
  });
});

describe.skipIf(!has('php-cgi'))('php-cgi -b', () => {
  let cgi: PhpBackend;
  beforeAll(async () => {
    cgi = await startPhpCgi({ socket: 'tcp' });
  });
  afterAll(async () => {
    await cgi?.stop();
  });

  it('serves requests on one KEEP_CONN connection, bodies sha256-exact both ways', async () => {
    const conn = await FastcgiConnection.connect(cgi.address);
    for (let i = 1; i <= 3; i++) {
      const body = pseudoRandomBytes(i + 10, i * 500_000);
      const reply = await conn.request(params(cgi, '/app.php', body.length), body, {
        keepConn: true,
        requestId: i,
      });
      expect(reply.reusable).toBe(true);
      expect(JSON.parse(reply.body.toString())).toMatchObject({
        length: body.length,
        sha256: sha256(body),
      });
    }
    const big = await conn.request(params(cgi, '/app.php?bytes=1000000'), undefined, {
      keepConn: true,
    });
    expect(sha256(big.body)).toBe(sha256(pattern(1_000_000)));
    conn.close();
  });

  it('closes after the request without KEEP_CONN', async () => {
    const conn = await FastcgiConnection.connect(cgi.address);
    const reply = await conn.request(params(cgi, '/app.php'), undefined, { keepConn: false });
    expect(JSON.parse(reply.body.toString()).length).toBe(0);
    await conn.closed;
    expect(conn.peerEnded).toBe(true);
  });
});
