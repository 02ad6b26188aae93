/**
 * Real FastCGI backends through the proxy with kept connections (issue 14): PHP-FPM with
 * `pm.max_requests = 3` (it closes a kept connection between requests: no request may fail,
 * whatever its method), uWSGI's FastCGI socket (closes after every request, even with
 * FCGI_KEEP_CONN), and spawned workers speaking FastCGI: `php-cgi -b {socket}` and
 * examples/python/fastcgi_server.py. Through both adapters.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PYTHON_DIR } from './helpers/backends.js';
import { findBinary, has } from './helpers/binaries.js';
import { pseudoRandomBytes, sha256 } from './helpers/bytes.js';
import { eventually } from './helpers/corpus.js';
import { FASTCGI_SERVER_PY, startUwsgiFastcgi } from './helpers/fastcgi-backends.js';
import { countOpenFds, type RawResponse, rawRequest } from './helpers/http.js';
import { PHP_APP, type PhpBackend, phpParams, startPhpFpm } from './helpers/php.js';
import { type ProxyFront, type ProxyFrontKind, startProxyFront } from './helpers/proxy-fronts.js';
import { makeTempDir, removeTempDir } from './helpers/tmp.js';

const KINDS: ProxyFrontKind[] = ['fastify', 'express'];
const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'];

function request(front: ProxyFront, method: string, path: string, body?: Buffer) {
  let head = `${method} /app${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n`;
  if (body !== undefined) {
    head += `Content-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n`;
  }
  return rawRequest(
    front.url,
    Buffer.concat([Buffer.from(`${head}\r\n`), body ?? Buffer.alloc(0)]),
    {
      timeoutMs: 20_000,
    },
  );
}

function expectOk(res: RawResponse): void {
  expect(res.closedEarly, res.body.toString()).toBe(false);
  expect(res.statusCode, res.body.toString()).toBe(200);
}

describe.skipIf(!has('php-fpm'))('PHP-FPM with pm.max_requests = 3', () => {
  let fpm: PhpBackend;
  const fronts: ProxyFront[] = [];
  beforeAll(async () => {
    fpm = await startPhpFpm({ children: 2, maxRequests: 3 });
  });
  afterEach(async () => {
    for (const f of fronts.splice(0)) await f.close();
  });
  afterAll(async () => {
    await fpm?.stop();
  });

  it.each(KINDS)('no request fails while children recycle, any method (%s)', async (kind) => {
    const front = await startProxyFront(kind, {
      upstream: `fastcgi://${fpm.address}`,
      params: phpParams(fpm),
      // As many connections as PHP-FPM has children.
      maxConnections: 2,
    });
    fronts.push(front);
    const pids = new Set<number>();
    for (let i = 0; i < 24; i++) {
      const method = METHODS[i % METHODS.length]!;
      const body = method === 'GET' ? undefined : pseudoRandomBytes(i, 1000 + i * 37);
      const res = await request(front, method, `/app.php?i=${i}`, body);
      expectOk(res);
      const json = JSON.parse(res.body.toString());
      expect(json.env.REQUEST_METHOD).toBe(method);
      expect(json).toMatchObject({
        length: body?.length ?? 0,
        sha256: sha256(body ?? Buffer.alloc(0)),
      });
      pids.add(json.pid);
    }
    // 24 requests, 3 per child: the children were replaced under kept connections.
    expect(pids.size).toBeGreaterThanOrEqual(8);
    const stats = front.proxy.stats().backends[0]!;
    expect(stats).toMatchObject({ failed: 0, state: 'up', served: 24 });
    // Concurrent requests too, two at a time on two children.
    const all = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        request(front, i % 2 ? 'POST' : 'GET', '/app.php', i % 2 ? Buffer.from('x=1') : undefined),
      ),
    );
    for (const res of all) expectOk(res);
  });
});

describe.skipIf(!has('uwsgi'))('uWSGI --fastcgi-socket (closes after every request)', () => {
  it.each(KINDS)('every request is answered with keep-alive on (%s)', async (kind) => {
    const uwsgi = await startUwsgiFastcgi({ socket: 'unix' });
    const front = await startProxyFront(kind, { upstream: `fastcgi://${uwsgi.address}` });
    try {
      for (let i = 0; i < 10; i++) {
        const body = i % 2 ? pseudoRandomBytes(i, 5000) : undefined;
        const res = await request(front, i % 2 ? 'POST' : 'GET', '/sha256', body);
        expectOk(res);
        expect(JSON.parse(res.body.toString()).sha256).toBe(sha256(body ?? Buffer.alloc(0)));
      }
      expect(await eventually(() => front.proxy.stats().backends[0]!.idle === 0)).toBe(true);
    } finally {
      await front.close();
      await uwsgi.stop();
    }
  });
});

describe('spawned FastCGI workers', () => {
  let dir: string;
  beforeAll(() => {
    dir = makeTempDir('fcgi-spawn-');
    writeFileSync(join(dir, 'app.php'), PHP_APP);
  });
  afterAll(() => removeTempDir(dir));

  it.skipIf(!has('php-cgi')).each(KINDS)('php-cgi -b {socket} (%s)', async (kind) => {
    const fdsBefore = countOpenFds();
    const front = await startProxyFront(kind, {
      spawn: {
        protocol: 'fastcgi',
        command: findBinary('php-cgi') ?? 'php-cgi',
        args: ['-n', '-d', 'cgi.force_redirect=0', '-b', '{socket}'],
        instances: 1,
        cwd: dir,
      },
      params: { SCRIPT_FILENAME: join(dir, 'app.php'), SCRIPT_NAME: '/app.php' },
      maxConnections: 1,
    });
    try {
      await front.proxy.ready();
      for (const method of METHODS) {
        const body = method === 'GET' ? undefined : Buffer.from(`hello ${method}`);
        const res = await request(front, method, '/x', body);
        expectOk(res);
        expect(JSON.parse(res.body.toString())).toMatchObject({
          length: body?.length ?? 0,
          env: { REQUEST_METHOD: method },
        });
      }
    } finally {
      await front.close();
    }
    expect(await eventually(() => countOpenFds() <= fdsBefore)).toBe(true);
  });

  it.skipIf(!has('python3')).each(KINDS)('examples/python/fastcgi_server.py (%s)', async (kind) => {
    const front = await startProxyFront(kind, {
      spawn: {
        protocol: 'fastcgi',
        command: process.env.PYTHON ?? 'python3',
        args: ['-u', '-B', FASTCGI_SERVER_PY, '--socket', 'unix:{socket}', '--threads', '4'],
        instances: 2,
        cwd: PYTHON_DIR,
      },
      maxConnections: 4,
    });
    try {
      await front.proxy.ready();
      const body = pseudoRandomBytes(7, 200_000);
      for (let i = 0; i < 6; i++) {
        const res = await request(front, 'POST', '/sha256', body);
        expectOk(res);
        expect(JSON.parse(res.body.toString()).sha256).toBe(sha256(body));
        expectOk(await request(front, 'GET', '/env'));
      }
      // Kept connections to both workers, reused.
      const idle = front.proxy.stats().backends.reduce((n, b) => n + b.idle, 0);
      expect(idle).toBeGreaterThan(0);
    } finally {
      await front.close();
    }
  });
});
