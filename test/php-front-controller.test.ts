/**
 * PHP apps behind the proxy (issue 14): a front controller (`phpFrontController`) in front of a
 * private PHP-FPM, through both adapters. Every path under the mount runs `public/index.php`
 * with REQUEST_URI and PATH_INFO kept; a `.php` file uploaded under the root is never run, even
 * when the path names it (`/app/uploads/evil.php/x`, the nginx `cgi.fix_pathinfo` trap). Health
 * checks carry the params PHP-FPM needs (SCRIPT_FILENAME).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { phpFrontController } from 'scgi-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { canConnect, getFreePort } from './helpers/backends.js';
import { has } from './helpers/binaries.js';
import { eventually } from './helpers/corpus.js';
import { rawRequest } from './helpers/http.js';
import { type PhpBackend, startPhpFpm } from './helpers/php.js';
import { type ProxyFront, type ProxyFrontKind, startProxyFront } from './helpers/proxy-fronts.js';

const INDEX_PHP = `<?php
if (($_SERVER['PATH_INFO'] ?? '') === '/healthz') {
  file_put_contents(__DIR__ . '/checks.log', "x", FILE_APPEND);
  if (file_exists(__DIR__ . '/down')) http_response_code(503);
}
header('Content-Type: application/json');
$out = ['script' => 'index.php'];
foreach (['SCRIPT_NAME', 'PATH_INFO', 'REQUEST_URI', 'SCRIPT_FILENAME', 'DOCUMENT_ROOT',
          'PHP_SELF', 'QUERY_STRING'] as $k) {
  $out[$k] = $_SERVER[$k] ?? null;
}
echo json_encode($out);
`;
const EVIL_PHP = `<?php echo json_encode(['script' => 'evil.php']);`;

const KINDS: ProxyFrontKind[] = ['fastify', 'express'];
const repo = fileURLToPath(new URL('..', import.meta.url));

/** The README's PHP-FPM quick start, as a user would paste it. */
function readmePhpExample(): string {
  const readme = readFileSync(join(repo, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]!);
  const block = blocks.find((b) => b.includes('phpFrontController('));
  if (block === undefined) throw new Error('README.md has no PHP-FPM quick start');
  return block;
}

function get(front: ProxyFront, target: string) {
  return rawRequest(
    front.url,
    Buffer.from(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`),
    { timeoutMs: 10_000 },
  );
}

describe.skipIf(!has('php-fpm'))('PHP front controller on PHP-FPM', () => {
  let fpm: PhpBackend;
  let root: string;
  const fronts: ProxyFront[] = [];
  beforeAll(async () => {
    fpm = await startPhpFpm({ children: 2 });
    root = join(fpm.dir, 'public');
    mkdirSync(join(root, 'uploads'), { recursive: true });
    writeFileSync(join(root, 'index.php'), INDEX_PHP);
    // A file a user managed to upload: it must never run.
    writeFileSync(join(root, 'uploads', 'evil.php'), EVIL_PHP);
  });
  afterEach(async () => {
    for (const f of fronts.splice(0)) await f.close();
    rmSync(join(root, 'down'), { force: true });
    rmSync(join(root, 'checks.log'), { force: true });
  });
  afterAll(async () => {
    await fpm?.stop();
  });

  describe.each(KINDS)('through %s mounted at /app', (kind) => {
    it('every path runs index.php with REQUEST_URI and PATH_INFO kept, SCRIPT_NAME = mount + script', async () => {
      const front = await startProxyFront(kind, {
        upstream: `fastcgi://${fpm.address}`,
        params: phpFrontController({ root }),
      });
      fronts.push(front);
      const cases: [string, string | null][] = [
        ['/app/blog/2024/hello?page=2', '/blog/2024/hello'],
        ['/app/', '/'],
        ['/app/caf%C3%A9', '/café'],
      ];
      for (const [target, pathInfo] of cases) {
        const res = await get(front, target);
        expect(res.statusCode, res.body.toString()).toBe(200);
        const [uri, query = ''] = target.split('?');
        expect(JSON.parse(res.body.toString())).toEqual({
          script: 'index.php',
          SCRIPT_NAME: '/app/index.php',
          PATH_INFO: pathInfo,
          REQUEST_URI: target,
          SCRIPT_FILENAME: join(root, 'index.php'),
          DOCUMENT_ROOT: root,
          // PHP builds PHP_SELF from SCRIPT_NAME and PATH_INFO.
          PHP_SELF: `/app/index.php${pathInfo}`,
          QUERY_STRING: query,
        });
        expect(uri?.startsWith('/app/')).toBe(true);
      }
    });

    it('a path naming an uploaded .php file still runs index.php, never the upload', async () => {
      const front = await startProxyFront(kind, {
        upstream: `fastcgi://${fpm.address}`,
        params: phpFrontController({ root, script: '/index.php' }),
      });
      fronts.push(front);
      for (const target of [
        '/app/uploads/evil.php/x',
        '/app/uploads/evil.php',
        '/app/uploads/evil.php%2Fx',
        '/app/uploads/../uploads/evil.php/x.php',
      ]) {
        const res = await get(front, target);
        expect(res.statusCode, target).toBe(200);
        const json = JSON.parse(res.body.toString());
        expect(json.script, target).toBe('index.php');
        expect(json.SCRIPT_FILENAME, target).toBe(join(root, 'index.php'));
      }
    });
  });

  it("the README's PHP-FPM quick start runs as written (socket, root and port swapped)", async () => {
    const port = await getFreePort();
    const code = readmePhpExample()
      .replaceAll('unix:/run/php/php-fpm.sock', `unix:${fpm.address.replace(/^unix:/, '')}`)
      .replaceAll('/srv/myapp/public', root)
      .replace(/\b3000\b/, String(port))
      .replace('logger: true', 'logger: false');
    // --input-type=module resolves the example's imports from cwd, the repo root.
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
      cwd: repo,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    const exited = new Promise((r) => child.once('exit', r));
    try {
      const deadline = Date.now() + 10_000;
      while (!(await canConnect(`127.0.0.1:${port}`))) {
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`not up: ${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const res = await fetch(`http://127.0.0.1:${port}/app/uploads/evil.php/x?a=1`);
      expect(await res.json()).toMatchObject({
        script: 'index.php',
        SCRIPT_NAME: '/app/index.php',
        PATH_INFO: '/uploads/evil.php/x',
        REQUEST_URI: '/app/uploads/evil.php/x?a=1',
      });
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
  });

  it('refuses a relative root and a script with dot segments', () => {
    expect(() => phpFrontController({ root: 'public' })).toThrow(
      expect.objectContaining({ code: 'SCGI_ERR_INVALID_OPTION' }),
    );
    expect(() => phpFrontController({ root, script: '/../index.php' })).toThrow(
      expect.objectContaining({ code: 'SCGI_ERR_INVALID_OPTION' }),
    );
    expect(() => phpFrontController({ root, script: 'index.php' })).toThrow(
      /phpFrontController\.script/,
    );
  });

  describe('health checks with a path', () => {
    const staticParams = () => ({
      SCRIPT_FILENAME: join(root, 'index.php'),
      SCRIPT_NAME: '/index.php',
      DOCUMENT_ROOT: root,
    });

    it.each([
      ['the proxy static params', () => ({ params: staticParams() })],
      [
        'healthCheck.params beside a params function',
        () => ({ params: phpFrontController({ root }), check: staticParams() }),
      ],
    ])('run index.php with %s: healthy while it answers 200, unhealthy on its 503, healthy again', async (_name, setup) => {
      const { params, check } = setup() as {
        params: ReturnType<typeof staticParams> | ReturnType<typeof phpFrontController>;
        check?: ReturnType<typeof staticParams>;
      };
      const front = await startProxyFront('fastify', {
        upstream: `fastcgi://${fpm.address}`,
        params,
        healthCheck: {
          path: '/healthz',
          interval: 50,
          timeout: 2000,
          ...(check === undefined ? {} : { params: check }),
        },
      });
      fronts.push(front);
      const healthy = () => front.proxy.stats().backends[0]!.healthy;
      // index.php counts the checks it ran: several, and the backend is still up.
      const ran = () => {
        try {
          return statSync(join(root, 'checks.log')).size;
        } catch {
          return 0;
        }
      };
      expect(await eventually(() => ran() >= 3, 5000)).toBe(true);
      expect(healthy()).toBe(true);
      writeFileSync(join(root, 'down'), '');
      expect(await eventually(() => !healthy(), 5000)).toBe(true);
      rmSync(join(root, 'down'));
      expect(await eventually(healthy, 5000)).toBe(true);
    });

    it('refuses a function as healthCheck.params', async () => {
      await expect(
        startProxyFront('fastify', {
          upstream: `fastcgi://${fpm.address}`,
          healthCheck: { path: '/healthz', params: phpFrontController({ root }) as never },
        }),
      ).rejects.toThrow(/healthCheck\.params/);
    });
  });
});
