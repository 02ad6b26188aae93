/**
 * examples/python/scgi_server.py + app.py on their own, spoken to by a hand-written SCGI client
 * (test/helpers/scgi-client.ts, no scgi-core code), over a Unix socket and over TCP.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, connectOptions, startPythonBackend } from './helpers/backends.js';
import { has } from './helpers/binaries.js';
import {
  get,
  headerList,
  netstringHead,
  type Pair,
  parseReply,
  pattern,
  requestPairs,
  scgi,
  sha256,
} from './helpers/scgi-client.js';

describe.skipIf(!has('python3'))('Python SCGI backend (examples/python)', () => {
  describe.each(['unix', 'tcp'] as const)('over %s', (socket) => {
    let backend: Backend;

    beforeAll(async () => {
      backend = await startPythonBackend({ socket, threads: 8 });
    });
    afterAll(async () => {
      await backend?.stop();
    });

    it('reports where it listens', () => {
      expect(backend.address).toMatch(
        socket === 'unix' ? /^unix:\/.+\.sock$/ : /^127\.0\.0\.1:\d+$/,
      );
      expect(backend.address).not.toBe('127.0.0.1:0');
    });

    it('answers with a CGI head: "Status: 200 OK" first, CRLF lines', async () => {
      const reply = await get(backend.address, '/head');
      expect(reply.raw.toString('latin1')).toMatch(
        /^Status: 200 OK\r\nContent-Type: text\/html\r\n/,
      );
      expect(headerList(reply, 'content-length')).toEqual([String(reply.body.length)]);
    });

    it('/env returns the environment we sent, PATH_INFO byte for byte', async () => {
      const rawPath = Buffer.from([...Buffer.from('/env/caf'), 0xe9, 0x20, 0x25, 0x32, 0x46, 0xff]);
      const head = netstringHead(
        requestPairs(rawPath, 0, [
          ['QUERY_STRING', 'a=1&b=%20'],
          ['HTTP_X_LATIN', Buffer.from([0x63, 0xe4])],
          ['HTTP_X_EMPTY', ''],
        ]),
      );
      const reply = await scgi(backend.address, head);
      expect(reply.status).toBe('200 OK');
      const env = JSON.parse(reply.body.toString('utf8'));
      expect(env.PATH_INFO_hex).toBe(rawPath.toString('hex'));
      expect(env.PATH_INFO).toBe(rawPath.toString('latin1'));
      expect(env).toMatchObject({
        CONTENT_LENGTH: '0',
        SCGI: '1',
        REQUEST_METHOD: 'GET',
        SCRIPT_NAME: '',
        QUERY_STRING: 'a=1&b=%20',
        HTTP_X_LATIN: 'c\u00e4',
        HTTP_X_EMPTY: '',
        'wsgi.url_scheme': 'http',
      });
      // wsgiref would copy the server's os.environ into every request; ours does not.
      expect(env.PATH).toBeUndefined();
      expect(env.HOME).toBeUndefined();
    });

    it('derives PATH_INFO and QUERY_STRING from REQUEST_URI when the client sends none', async () => {
      const head = netstringHead([
        ['CONTENT_LENGTH', '0'],
        ['SCGI', '1'],
        ['REQUEST_METHOD', 'GET'],
        ['REQUEST_URI', '/env/a%20b?x=1'],
      ]);
      const env = JSON.parse((await scgi(backend.address, head)).body.toString());
      expect(env).toMatchObject({ PATH_INFO: '/env/a b', QUERY_STRING: 'x=1', SCRIPT_NAME: '' });
    });

    it('sets wsgi.url_scheme from HTTPS and REQUEST_SCHEME', async () => {
      for (const extra of [[['HTTPS', 'on']], [['REQUEST_SCHEME', 'https']]] as Pair[][]) {
        const env = JSON.parse((await get(backend.address, '/env', extra)).body.toString());
        expect(env['wsgi.url_scheme']).toBe('https');
      }
    });

    it('/echo returns 1 MiB exactly', async () => {
      const body = randomBytes(1024 * 1024);
      const head = netstringHead(
        requestPairs('/echo', body.length, [['CONTENT_TYPE', 'application/x-test']]),
      );
      const reply = await scgi(backend.address, head, body);
      expect(reply.status).toBe('200 OK');
      expect(headerList(reply, 'content-type')).toEqual(['application/x-test']);
      expect(reply.body.length).toBe(body.length);
      expect(sha256(reply.body)).toBe(sha256(body));
    });

    it('/echo is full duplex: answers before the upload is complete', async () => {
      const body = randomBytes(1024 * 1024);
      const half = body.length / 2;
      const received: Buffer[] = [];
      let total = 0;
      const socket = net.connect(connectOptions(backend.address));
      const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
      socket.on('data', (chunk: Buffer) => {
        received.push(chunk);
        total += chunk.length;
      });
      socket.write(netstringHead(requestPairs('/echo', body.length)));
      socket.write(body.subarray(0, half));
      // Bounded wait for echoed bytes while half of the body is still unsent.
      for (let i = 0; i < 200 && total < 100_000; i++) await delay(25);
      expect(total).toBeGreaterThanOrEqual(100_000);
      socket.end(body.subarray(half));
      await closed;
      const reply = parseReply(Buffer.concat(received));
      expect(sha256(reply.body)).toBe(sha256(body));
    });

    it('wsgi.input stops at CONTENT_LENGTH even when more bytes follow', async () => {
      const head = netstringHead(requestPairs('/sha256', 5));
      const reply = await scgi(backend.address, head, Buffer.from('helloEXTRA BYTES'));
      expect(JSON.parse(reply.body.toString())).toEqual({
        length: 5,
        sha256: sha256(Buffer.from('hello')),
      });
    });

    it('a body the app ignores is drained, not answered with a reset', async () => {
      // Without the drain the server closes with unread input: RST, and our write fails EPIPE.
      const body = randomBytes(16 * 1024 * 1024);
      const reply = await scgi(
        backend.address,
        netstringHead(requestPairs('/status/200', body.length)),
        body,
      );
      expect(reply.error).toBeUndefined();
      expect(reply.raw.toString()).toMatch(/^Status: 200 OK\r\n[\s\S]*\r\n\r\nstatus 200\n$/);
    });

    it('the response ends (FIN) at once even while the announced body is still unsent', async () => {
      const socket = net.connect(connectOptions(backend.address));
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      const ended = new Promise<void>((resolve) => socket.once('end', () => resolve()));
      socket.write(netstringHead(requestPairs('/status/200', 1024 * 1024)));
      const started = Date.now();
      await ended;
      expect(Date.now() - started).toBeLessThan(2000); // not the server's 5 s drain limit
      expect(Buffer.concat(chunks).toString()).toMatch(/status 200\n$/);
      socket.destroy();
    });

    it('/cookies gives three separate Set-Cookie lines', async () => {
      const reply = await get(backend.address, '/cookies');
      expect(headerList(reply, 'set-cookie')).toEqual([
        'a=1; Path=/',
        'b=2; Path=/; HttpOnly',
        'c=3; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Path=/',
      ]);
    });

    it('/status/204 has no body and no Content-Length', async () => {
      const reply = await get(backend.address, '/status/204');
      expect(reply.raw.toString('latin1')).toBe('Status: 204 No Content\r\n\r\n');
    });

    it('/stream sends the documented pattern, chunk by chunk', async () => {
      const reply = await scgi(
        backend.address,
        netstringHead(requestPairs('/stream', 0, [['QUERY_STRING', 'bytes=300000&chunk=1000']])),
      );
      expect(headerList(reply, 'content-length')).toEqual([]);
      expect(reply.body.equals(pattern(300_000))).toBe(true);
    });

    it('an app error before the head is sent becomes "Status: 500"', async () => {
      const reply = await get(backend.address, '/crash');
      expect(reply.status).toBe('500 Internal Server Error');
    });

    it('an app error after the head closes the connection: body shorter than Content-Length', async () => {
      const reply = await scgi(
        backend.address,
        netstringHead(requestPairs('/crash', 0, [['QUERY_STRING', 'after=5000&cl=1']])),
      );
      expect(reply.status).toBe('200 OK');
      expect(headerList(reply, 'content-length')).toEqual(['6000']);
      expect(reply.body.equals(pattern(5000))).toBe(true);
    });

    it('runs requests in parallel threads', async () => {
      const started = Date.now();
      const replies = await Promise.all(
        Array.from({ length: 4 }, () =>
          get(backend.address, '/slow', [['QUERY_STRING', 'delay=0.5']]),
        ),
      );
      expect(replies.map((r) => r.status)).toEqual(Array(4).fill('200 OK'));
      expect(Date.now() - started).toBeLessThan(1900);
    });

    const malformed: [string, Buffer][] = [
      [
        'CONTENT_LENGTH not first',
        netstringHead([
          ['SCGI', '1'],
          ['CONTENT_LENGTH', '0'],
          ['PATH_INFO', '/env'],
        ]),
      ],
      [
        'SCGI=1 missing',
        netstringHead([
          ['CONTENT_LENGTH', '0'],
          ['PATH_INFO', '/env'],
        ]),
      ],
      ['empty CONTENT_LENGTH', netstringHead(requestPairs('/env').with(0, ['CONTENT_LENGTH', '']))],
      // 0xB2 is "²": Python's str.isdigit() alone would accept it.
      [
        'non-ASCII digit in CONTENT_LENGTH',
        netstringHead(requestPairs('/env').with(0, ['CONTENT_LENGTH', Buffer.from([0xb2])])),
      ],
      ['duplicate name', netstringHead([...requestPairs('/env'), ['PATH_INFO', '/other']])],
      ['letters in the length', Buffer.from('1x:CONTENT_LENGTH\x000\x00,')],
      ['leading zero in the length', Buffer.from('025:CONTENT_LENGTH\x000\x00SCGI\x001\x00,')],
      ['no trailing comma', Buffer.from('24:CONTENT_LENGTH\x000\x00SCGI\x001\x00;')],
      ['odd number of strings', Buffer.from('22:CONTENT_LENGTH\x000\x00SCGI\x00,')],
      ['head over --max-head', Buffer.from('99999999:')],
    ];

    it.each(malformed)('malformed head (%s): closed without a response', async (_name, head) => {
      const reply = await scgi(backend.address, head);
      expect(reply.raw.length).toBe(0);
      // The server logged it and lives on.
      expect((await get(backend.address, '/head')).status).toBe('200 OK');
    });
  });

  it('SIGTERM: exits 0, closes the listener and removes its Unix socket', async () => {
    const backend = await startPythonBackend({ socket: 'unix' });
    try {
      const socketPath = backend.address.slice('unix:'.length);
      expect(existsSync(socketPath)).toBe(true);
      process.kill(backend.pid, 'SIGTERM');
      for (let i = 0; i < 100 && backend.exitStatus() === undefined; i++) await delay(50);
      expect(backend.exitStatus()).toBe('code 0');
      expect(existsSync(socketPath)).toBe(false);
    } finally {
      await backend.stop();
    }
  });
});
