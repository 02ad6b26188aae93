/**
 * uWSGI (Debian uwsgi-core + uwsgi-plugin-python3, `--scgi-socket`) serving examples/python/app.py,
 * spoken to by a hand-written SCGI client (test/helpers/scgi-client.ts, no scgi-core code), over
 * a Unix socket and over TCP.
 * Also pins down what uWSGI's SCGI answers look like, which the proxy's response parser must take.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, startUwsgi } from './helpers/backends.js';
import { has } from './helpers/binaries.js';
import {
  get,
  headerList,
  netstringHead,
  requestPairs,
  scgi,
  sha256,
} from './helpers/scgi-client.js';

describe.skipIf(!has('uwsgi'))('uWSGI SCGI backend', () => {
  describe.each(['unix', 'tcp'] as const)('over %s', (socket) => {
    let backend: Backend;

    beforeAll(async () => {
      backend = await startUwsgi({ socket, processes: 2, threads: 4 });
    });
    afterAll(async () => {
      await backend?.stop();
    });

    it('answers with a CGI head: "Status: 200 OK" first, CRLF, no Date or Server', async () => {
      const reply = await get(backend.address, '/head');
      expect(reply.raw.toString('latin1')).toMatch(
        /^Status: 200 OK\r\nContent-Type: text\/html\r\nContent-Length: \d+\r\n\r\n<!doctype/,
      );
    });

    it('/env returns the environment we sent, PATH_INFO byte for byte', async () => {
      const rawPath = Buffer.from([...Buffer.from('/env/caf'), 0xe9, 0x20, 0x25, 0xff]);
      const head = netstringHead(
        requestPairs(rawPath, 0, [
          ['QUERY_STRING', 'a=1&b=%20'],
          ['HTTP_X_LATIN', Buffer.from([0x63, 0xe4])],
        ]),
      );
      const reply = await scgi(backend.address, head);
      expect(reply.raw.subarray(0, 16).toString()).toBe('Status: 200 OK\r\n');
      const env = JSON.parse(reply.body.toString('utf8'));
      expect(env.PATH_INFO_hex).toBe(rawPath.toString('hex'));
      expect(env).toMatchObject({
        CONTENT_LENGTH: '0',
        SCGI: '1',
        REQUEST_METHOD: 'GET',
        PATH_INFO: rawPath.toString('latin1'),
        QUERY_STRING: 'a=1&b=%20',
        HTTP_X_LATIN: 'c\u00e4',
      });
    });

    it('/echo returns 1 MiB exactly', async () => {
      const body = randomBytes(1024 * 1024);
      const reply = await scgi(
        backend.address,
        netstringHead(requestPairs('/echo', body.length)),
        body,
      );
      expect(headerList(reply, 'content-length')).toEqual([String(body.length)]);
      expect(reply.body.length).toBe(body.length);
      expect(sha256(reply.body)).toBe(sha256(body));
    });

    it('/cookies gives three separate Set-Cookie lines', async () => {
      const reply = await get(backend.address, '/cookies');
      expect(headerList(reply, 'set-cookie')).toEqual([
        'a=1; Path=/',
        'b=2; Path=/; HttpOnly',
        'c=3; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Path=/',
      ]);
    });

    it('/status/204 is a bare status line: no headers, no body', async () => {
      const reply = await get(backend.address, '/status/204');
      expect(reply.raw.toString('latin1')).toBe('Status: 204 No Content\r\n\r\n');
    });

    it('answers a head larger than 4096 bytes (thanks to --buffer-size 65535)', async () => {
      const big = 'x'.repeat(10_000);
      const head = netstringHead(requestPairs('/env', 0, [['HTTP_X_BIG', big]]));
      expect(head.length).toBeGreaterThan(4096);
      const reply = await scgi(backend.address, head);
      expect(JSON.parse(reply.body.toString()).HTTP_X_BIG).toBe(big);
    });
  });

  // Known trap (DESIGN.md): the default --buffer-size refuses larger heads with a reset.
  describe('with the default --buffer-size of 4096', () => {
    let backend: Backend;

    beforeAll(async () => {
      backend = await startUwsgi({ socket: 'unix', processes: 1, threads: 1, bufferSize: 4096 });
    });
    afterAll(async () => {
      await backend?.stop();
    });

    it('drops a 5 KB head without answering and logs "invalid SCGI request size"', async () => {
      const head = netstringHead(requestPairs('/env', 0, [['HTTP_X_BIG', 'x'.repeat(5000)]]));
      const reply = await scgi(backend.address, head);
      expect(reply.raw.length).toBe(0);
      expect(backend.log()).toContain('invalid SCGI request size (max 4096)');
      // A small head still works.
      expect((await get(backend.address, '/head')).raw.subarray(0, 16).toString()).toBe(
        'Status: 200 OK\r\n',
      );
    });
  });
});
