/**
 * Request corpus, the PHP part: a subset of the corpus (bodies both ways, HEAD, bodiless
 * statuses, the CGI variables a PHP app reads) against a private PHP-FPM running a front
 * controller that mirrors the routes of examples/python/app.py the subset uses, through Fastify
 * 5, Express 5 and Express 4, with `phpFrontController` as the params.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { phpFrontController } from 'scgi-core';
import { beforeAll, describe, it } from 'vitest';
import { has } from './helpers/binaries.js';
import {
  type BackendSpec,
  dirEntries,
  eventually,
  pattern,
  type RunningBackend,
  send,
  sha256,
  useFront,
} from './helpers/corpus.js';
import { headerValues } from './helpers/http.js';
import { type PhpBackend, startPhpFpm } from './helpers/php.js';

const MiB = 1024 * 1024;
const EMPTY_SHA = sha256(Buffer.alloc(0));

/** app.py's /sha256, /stream, /status/N and /env, in PHP (bodies streamed, never whole). */
const INDEX_PHP = `<?php
$path = $_SERVER['PATH_INFO'] ?? '/';
$route = '/' . explode('/', ltrim($path, '/'))[0];
if ($route === '/sha256') {
  $in = fopen('php://input', 'rb');
  $h = hash_init('sha256');
  $n = 0;
  while (!feof($in)) {
    $piece = fread($in, 1048576);
    if ($piece === false || $piece === '') break;
    $n += strlen($piece);
    hash_update($h, $piece);
  }
  header('Content-Type: application/json');
  echo json_encode(['length' => $n, 'sha256' => hash_final($h)]);
} elseif ($route === '/stream') {
  $n = (int) ($_GET['bytes'] ?? 0);
  header('Content-Type: application/octet-stream');
  header('Content-Length: ' . $n);
  if ($_SERVER['REQUEST_METHOD'] === 'HEAD') exit;
  $block = str_repeat(implode('', array_map('chr', range(0, 255))), 256);
  for ($sent = 0; $sent < $n; $sent += strlen($block)) {
    echo $n - $sent >= strlen($block) ? $block : substr($block, 0, $n - $sent);
  }
} elseif ($route === '/status') {
  $code = (int) substr($path, strlen('/status/'));
  http_response_code($code);
  header('Content-Type: text/plain');
  echo "status $code\\n";
} elseif ($route === '/env') {
  header('Content-Type: application/json');
  $out = [];
  foreach ($_SERVER as $k => $v) if (is_string($v)) $out[$k] = $v;
  echo json_encode($out);
} else {
  http_response_code(404);
  echo "not found\\n";
}
`;

const spec: BackendSpec = {
  name: 'PHP-FPM over a Unix socket',
  server: 'python', // unused by useFront; the backend is started here
  socket: 'unix',
  app: 'python',
  protocol: 'fastcgi',
};

describe.skipIf(!has('php-fpm'))('corpus (PHP) -> PHP-FPM over a Unix socket', () => {
  const backend = { current: { spec } as RunningBackend & { php?: PhpBackend } };
  const root = { current: '' };
  const big = {} as { body: Buffer; sha: string };
  beforeAll(async () => {
    big.body = randomBytes(50 * MiB);
    big.sha = sha256(big.body);
    const php = await startPhpFpm({ children: 4 });
    root.current = join(php.dir, 'public');
    mkdirSync(root.current);
    writeFileSync(join(root.current, 'index.php'), INDEX_PHP);
    Object.assign(backend.current, {
      address: `fastcgi://${php.address}`,
      pid: php.pid,
      nodeServer: null,
      stop: php.stop,
    });
    return () => php.stop();
  });

  describe.each(['fastify', 'express', 'express4'] as const)('through %s', (kind) => {
    const front = useFront(kind, backend, {
      // A function reads `root` per request: the backend's dir is known only after beforeAll.
      extra: {
        params: (req: never, context: { scriptName: string }) =>
          phpFrontController({ root: root.current })(req, context),
        maxConnections: 4,
      },
    });

    async function sha256Of(body: Buffer, chunked: boolean, method = 'POST') {
      const res = await send(
        front.current,
        { method, target: '/app/sha256', body, chunked },
        60_000,
      );
      return { res, json: JSON.parse(res.body.toString()) as { length: number; sha256: string } };
    }

    describe.concurrent('request bodies', () => {
      it.for([
        ['0 bytes, Content-Length: 0', 0, false],
        ['0 bytes, chunked', 0, true],
        ['1 MiB, Content-Length', MiB, false],
        ['1 MiB, chunked', MiB, true],
        ['50 MiB, Content-Length (streamed)', 50 * MiB, false],
      ] as const)('%s -> same length and sha256', async ([, size, chunked], { expect }) => {
        const body = big.body.subarray(0, size);
        const { res, json } = await sha256Of(body, chunked);
        expect(res.statusCode).toBe(200);
        expect(json).toEqual({ length: size, sha256: size === 0 ? EMPTY_SHA : sha256(body) });
      });

      it.for(['GET', 'DELETE', 'PUT'])('%s with a body: forwarded', async (method, { expect }) => {
        const { res, json } = await sha256Of(Buffer.from('payload'), false, method);
        expect(res.statusCode).toBe(200);
        expect(json).toEqual({ length: 7, sha256: sha256(Buffer.from('payload')) });
      });

      it('50 MiB chunked: spooled to tmpDir, which is empty afterwards', async ({ expect }) => {
        const { res, json } = await sha256Of(big.body, true);
        expect(res.statusCode).toBe(200);
        expect(json).toEqual({ length: big.body.length, sha256: big.sha });
        expect(await eventually(() => dirEntries(front.current.tmpDir).length === 0)).toBe(true);
      });
    });

    describe.concurrent('responses', () => {
      it.for([
        1000, 70_000, 3_000_000,
      ])('/stream?bytes=%i: exact bytes, its Content-Length', async (n, { expect }) => {
        const res = await send(front.current, { target: `/app/stream?bytes=${n}` });
        expect(res.statusCode).toBe(200);
        expect(res.closedEarly).toBe(false);
        expect(headerValues(res, 'content-length')).toEqual([String(n)]);
        expect(res.body.equals(pattern(n))).toBe(true);
      });

      it('HEAD /stream: the Content-Length, no body on the wire', async ({ expect }) => {
        const res = await send(front.current, { method: 'HEAD', target: '/app/stream?bytes=5000' });
        expect(res.statusCode).toBe(200);
        expect(headerValues(res, 'content-length')).toEqual(['5000']);
        expect(res.body.length).toBe(0);
      });

      it.for([
        [204, ''],
        [304, ''],
        [404, 'status 404\n'],
        [503, 'status 503\n'],
      ] as const)('/status/%i: that status, a body only where one is allowed', async ([
        code,
        text,
      ], { expect }) => {
        const res = await send(front.current, { target: `/app/status/${code}` });
        expect(res.statusCode).toBe(code);
        expect(res.body.toString()).toBe(text);
      });

      it('/env: what a PHP app reads, the script fixed by the front controller', async ({
        expect,
      }) => {
        const res = await send(front.current, {
          target: '/app/env/caf%C3%A9/x.php?q=1&r=%20',
          headers: [
            ['X-Test', 'one'],
            ['Cookie', 'a=1'],
          ],
        });
        expect(res.statusCode).toBe(200);
        expect(JSON.parse(res.body.toString())).toMatchObject({
          REQUEST_METHOD: 'GET',
          REQUEST_URI: '/app/env/caf%C3%A9/x.php?q=1&r=%20',
          QUERY_STRING: 'q=1&r=%20',
          SCRIPT_NAME: '/app/index.php',
          SCRIPT_FILENAME: join(root.current, 'index.php'),
          DOCUMENT_ROOT: root.current,
          PATH_INFO: '/env/café/x.php',
          HTTP_X_TEST: 'one',
          HTTP_COOKIE: 'a=1',
          SERVER_PROTOCOL: 'HTTP/1.1',
          GATEWAY_INTERFACE: 'CGI/1.1',
          REMOTE_ADDR: '127.0.0.1',
          SERVER_PORT: String(front.current.port),
        });
      });
    });
  });
});
