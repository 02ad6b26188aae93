// examples/python/fastcgi_server.py and uWSGI `--fastcgi-socket`, both serving app.py, driven by
// the FastCGI test client built from scgi-core's encoder and decoder: the codec against two
// independent FastCGI implementations.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from './helpers/backends.js';
import { has } from './helpers/binaries.js';
import { pseudoRandomBytes, sha256 } from './helpers/bytes.js';
import { startPythonFastcgi, startUwsgiFastcgi } from './helpers/fastcgi-backends.js';
import { FastcgiConnection, fastcgiRequest, fcgiParams } from './helpers/fastcgi-client.js';

const pattern = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => i & 255));

describe.skipIf(!has('python3'))('examples/python/fastcgi_server.py', () => {
  let py: Backend;
  beforeAll(async () => {
    py = await startPythonFastcgi({ socket: 'unix' });
  });
  afterAll(async () => {
    await py?.stop();
  });

  it('serves sequential requests on one KEEP_CONN connection, bodies sha256-exact both ways', async () => {
    const conn = await FastcgiConnection.connect(py.address);
    for (let i = 1; i <= 4; i++) {
      const body = pseudoRandomBytes(i, i * 300_000);
      const reply = await conn.request(fcgiParams('/sha256', body.length), body, {
        keepConn: true,
        requestId: i,
      });
      expect(reply.status).toBe('200 OK');
      expect(reply.reusable).toBe(true);
      expect(JSON.parse(reply.body.toString())).toEqual({
        length: body.length,
        sha256: sha256(body),
      });
    }
    const big = await conn.request(fcgiParams('/stream?bytes=3000000&chunk=100000'), undefined, {
      keepConn: true,
    });
    expect(sha256(big.body)).toBe(sha256(pattern(3_000_000)));
    const env = JSON.parse(
      (
        await conn.request(fcgiParams('/env/x?q=1', 0, { HTTP_X_TEST: 'yes' }), undefined, {
          keepConn: true,
        })
      ).body.toString(),
    );
    expect(env).toMatchObject({ PATH_INFO: '/env/x', QUERY_STRING: 'q=1', HTTP_X_TEST: 'yes' });
    expect(conn.peerEnded).toBe(false);
    conn.close();
  });

  it('echoes a 4 MiB body while still reading it (full duplex)', async () => {
    const body = pseudoRandomBytes(9, 4 * 1024 * 1024);
    const reply = await fastcgiRequest(py.address, fcgiParams('/echo', body.length), body);
    expect(sha256(reply.body)).toBe(sha256(body));
  });

  it('closes after END_REQUEST without KEEP_CONN', async () => {
    const conn = await FastcgiConnection.connect(py.address);
    const reply = await conn.request(fcgiParams('/env'), undefined, { keepConn: false });
    expect(reply.status).toBe('200 OK');
    await conn.closed;
    expect(conn.peerEnded).toBe(true);
  });

  it('answers GET_VALUES and refuses other roles with UNKNOWN_ROLE', async () => {
    const conn = await FastcgiConnection.connect(py.address);
    const values = await conn.getValues(['FCGI_MPXS_CONNS', 'FCGI_MAX_CONNS']);
    expect(Object.fromEntries(values)).toEqual({ FCGI_MPXS_CONNS: '0', FCGI_MAX_CONNS: '8' });
    const refused = await conn.request(fcgiParams('/env'), undefined, { role: 2, keepConn: true });
    expect(refused.protocolStatus).toBe(3);
    const ok = await conn.request(fcgiParams('/env'), undefined, { keepConn: true });
    expect(ok.status).toBe('200 OK');
    conn.close();
  });
});

describe.skipIf(!has('uwsgi'))('uWSGI --fastcgi-socket', () => {
  let uw: Backend;
  beforeAll(async () => {
    uw = await startUwsgiFastcgi({ socket: 'unix' });
  });
  afterAll(async () => {
    await uw?.stop();
  });

  it('answers one request per connection, bodies sha256-exact both ways', async () => {
    const body = pseudoRandomBytes(5, 2_000_000);
    const conn = await FastcgiConnection.connect(uw.address);
    const reply = await conn.request(fcgiParams('/sha256', body.length), body, { keepConn: true });
    expect(JSON.parse(reply.body.toString())).toEqual({
      length: body.length,
      sha256: sha256(body),
    });
    // uWSGI closes after every request, even with FCGI_KEEP_CONN.
    await conn.closed;
    const big = await fastcgiRequest(uw.address, fcgiParams('/stream?bytes=1500000'));
    expect(sha256(big.body)).toBe(sha256(pattern(1_500_000)));
  });
});
