// nginx (`fastcgi_pass`), the reference FastCGI client, in front of the Node FastCGI server
// (scgi-core's createFastcgiServer) and examples/python/fastcgi_server.py, with and without
// `fastcgi_keep_conn on` + upstream `keepalive`: bodies sha256-exact both ways. (No echo of a
// large body: nginx stops sending the request body once the response head arrives, so an app
// that answers while reading deadlocks behind it, as the README says near its line on full duplex.)
import { once } from 'node:events';
import type { Server, Socket } from 'node:net';
import { join } from 'node:path';
import { createFastcgiServer, type FastcgiHandler } from 'scgi-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Backend, Peer } from './helpers/backends.js';
import { has } from './helpers/binaries.js';
import { pseudoRandomBytes, sha256 } from './helpers/bytes.js';
import { startNginxFastcgi, startPythonFastcgi } from './helpers/fastcgi-backends.js';
import { rawRequest } from './helpers/http.js';
import { makeTempDir, removeTempDir } from './helpers/tmp.js';

const pattern = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => i & 255));

/** The routes of examples/python/app.py the tests use, in Node. */
const nodeApp: FastcgiHandler = (req, res) => {
  const path = req.env.PATH_INFO;
  if (path === '/sha256') {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ length: body.length, sha256: sha256(body) }));
    });
  } else if (path === '/echo') {
    res.setHeader('Content-Type', 'application/octet-stream');
    req.pipe(res);
  } else if (path === '/stream') {
    const n = Number(new URLSearchParams(req.env.QUERY_STRING).get('bytes'));
    res.setHeader('Content-Length', n);
    res.end(pattern(n));
  } else {
    res.writeHead(404);
    res.end();
  }
};

async function post(peer: Peer, path: string, body: Buffer) {
  const head = `POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
  return rawRequest(peer.url, Buffer.concat([Buffer.from(head), body]), { timeoutMs: 30_000 });
}
const get = (peer: Peer, path: string) =>
  rawRequest(peer.url, `GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`, {
    timeoutMs: 30_000,
  });

type Kind = 'node' | 'python';
const cases: [Kind, number | undefined][] = [
  ['node', undefined],
  ['node', 4],
  ['python', undefined],
  ['python', 4],
];

describe.skipIf(!has('nginx') || !has('python3'))('nginx fastcgi_pass', () => {
  describe.each(cases)('-> %s FastCGI server, keepalive %s', (kind, keepalive) => {
    let nginx: Peer;
    let python: Backend | undefined;
    let server: Server | undefined;
    let dir: string | undefined;
    const connections: Socket[] = [];

    beforeAll(async () => {
      let upstream: string;
      if (kind === 'node') {
        dir = makeTempDir('fcgi-ng-');
        const path = join(dir, 'node.sock');
        server = createFastcgiServer(nodeApp);
        server.on('connection', (s) => connections.push(s));
        server.listen(path);
        await once(server, 'listening');
        upstream = `unix:${path}`;
      } else {
        python = await startPythonFastcgi({ socket: 'unix' });
        upstream = python.address;
      }
      nginx = await startNginxFastcgi({ upstream, keepalive });
    });
    afterAll(async () => {
      await nginx?.stop();
      await python?.stop();
      for (const s of connections) s.destroy();
      server?.close();
      if (dir) removeTempDir(dir);
    });

    it('POST bodies reach the app sha256-exact', async () => {
      for (const size of [0, 1, 65535, 65536, 3_000_001]) {
        const body = pseudoRandomBytes(size + 1, size);
        const res = await post(nginx, '/sha256', body);
        expect(res.statusCode, nginx.log().slice(-2000)).toBe(200);
        expect(JSON.parse(res.body.toString())).toEqual({ length: size, sha256: sha256(body) });
      }
    });

    it('responses reach the client sha256-exact', async () => {
      for (const size of [0, 7, 65535, 200_000, 2_500_000]) {
        const res = await get(nginx, `/stream?bytes=${size}`);
        expect(res.statusCode).toBe(200);
        expect(res.closedEarly).toBe(false);
        expect(sha256(res.body)).toBe(sha256(pattern(size)));
      }
    });

    it.runIf(kind === 'node')(
      'uses one connection per request, or keeps one with fastcgi_keep_conn',
      async () => {
        const before = connections.length;
        for (let i = 0; i < 5; i++)
          expect((await get(nginx, '/stream?bytes=10')).statusCode).toBe(200);
        if (keepalive === undefined) expect(connections.length - before).toBe(5);
        // Sequential requests: every one of this describe's went over the same connection.
        else expect(connections.length).toBe(1);
      },
    );
  });
});
