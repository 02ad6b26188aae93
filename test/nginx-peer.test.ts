/**
 * nginx (`scgi_pass`), the reference SCGI client, in front of the real backends: proves the
 * harness that the side-by-side tests and benchmarks use.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Backend,
  type Peer,
  startNginx,
  startPythonBackend,
  startUwsgi,
} from './helpers/backends.js';
import { has } from './helpers/binaries.js';
import { headerValue, headerValues, rawRequest } from './helpers/http.js';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe.skipIf(!has('nginx') || !has('uwsgi'))('nginx scgi_pass -> uWSGI (unix socket)', () => {
  let backend: Backend;
  let nginx: Peer;

  beforeAll(async () => {
    backend = await startUwsgi({ socket: 'unix' });
    nginx = await startNginx({ upstream: backend.address });
  });
  afterAll(async () => {
    await nginx?.stop();
    await backend?.stop();
  });

  it("GET /env over HTTP reaches the app with nginx's CGI variables", async () => {
    const res = await rawRequest(
      nginx.url,
      `GET /env/caf%C3%A9?a=1 HTTP/1.1\r\nHost: 127.0.0.1:${nginx.port}\r\nX-Test: yes\r\nConnection: close\r\n\r\n`,
    );
    expect(res.statusCode).toBe(200);
    expect(res.closedEarly).toBe(false);
    expect(headerValue(res, 'content-type')).toBe('application/json');
    const env = JSON.parse(res.body.toString('utf8'));
    expect(env).toMatchObject({
      SCGI: '1',
      CONTENT_LENGTH: '0',
      REQUEST_METHOD: 'GET',
      REQUEST_URI: '/env/caf%C3%A9?a=1',
      QUERY_STRING: 'a=1',
      SCRIPT_NAME: '',
      SERVER_PROTOCOL: 'HTTP/1.1',
      REMOTE_ADDR: '127.0.0.1',
      SERVER_PORT: String(nginx.port),
      HTTP_HOST: `127.0.0.1:${nginx.port}`,
      HTTP_X_TEST: 'yes',
    });
    // nginx percent-decodes $uri: PATH_INFO carries the raw UTF-8 bytes, as latin-1.
    expect(env.PATH_INFO_hex).toBe(Buffer.from('/env/café').toString('hex'));
  });

  it('keeps three Set-Cookie headers apart', async () => {
    const res = await rawRequest(
      nginx.url,
      'GET /cookies HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    );
    expect(headerValues(res, 'set-cookie')).toHaveLength(3);
  });

  it('POSTs a 1 MiB body through nginx to /sha256', async () => {
    const body = randomBytes(1024 * 1024);
    const head = `POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
    const res = await rawRequest(nginx.url, Buffer.concat([Buffer.from(head), body]));
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(res.body.toString())).toEqual({ length: body.length, sha256: sha256(body) });
  });
});

describe.skipIf(!has('nginx') || !has('python3'))(
  'nginx scgi_pass -> Python backend (tcp), mounted at /app',
  () => {
    let backend: Backend;
    let nginx: Peer;

    beforeAll(async () => {
      backend = await startPythonBackend({ socket: 'tcp' });
      nginx = await startNginx({ upstream: backend.address, scriptName: '/app' });
    });
    afterAll(async () => {
      await nginx?.stop();
      await backend?.stop();
    });

    it('splits SCRIPT_NAME and PATH_INFO at the mount', async () => {
      const res = await rawRequest(
        nginx.url,
        'GET /app/env/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      );
      expect(res.statusCode).toBe(200);
      const env = JSON.parse(res.body.toString());
      expect(env).toMatchObject({
        SCRIPT_NAME: '/app',
        PATH_INFO: '/env/x',
        REQUEST_URI: '/app/env/x',
      });
    });

    it('streams a chunked response of 300000 pattern bytes', async () => {
      const res = await rawRequest(
        nginx.url,
        'GET /app/stream?bytes=300000&chunk=4096 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      );
      expect(headerValue(res, 'transfer-encoding')).toBe('chunked');
      expect(res.body.equals(Buffer.from(Array.from({ length: 300_000 }, (_, i) => i & 255)))).toBe(
        true,
      );
    });

    it('does not route paths outside the mount to the backend', async () => {
      const res = await rawRequest(
        nginx.url,
        'GET /apple HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      );
      expect(res.statusCode).toBe(404);
    });
  },
);
