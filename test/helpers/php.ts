/**
 * Private PHP FastCGI backends for the integration tests: PHP-FPM (`-n -y conf -p prefix -F`,
 * pm = static, a Unix socket in its own temp dir, never the system service) and `php-cgi -b`.
 * Both serve test/helpers' tiny PHP script, written into the temp dir as `app.php`: send
 * SCRIPT_FILENAME = `backend.script` (see phpParams).
 */

import { writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import {
  type Backend,
  backend,
  canConnect,
  getFreePort,
  spawnManaged,
  unixSocketPath,
  waitReady,
} from './backends.js';
import { findBinary } from './binaries.js';
import { makeTempDir, removeTempDir } from './tmp.js';

/**
 * GET ?bytes=N: N bytes where byte i is i % 256. Otherwise reads php://input whole and answers
 * JSON {length, sha256, pid, env} (env: the request's CGI variables the tests look at).
 */
export const PHP_APP = `<?php
if (isset($_GET['bytes'])) {
  $n = (int) $_GET['bytes'];
  header('Content-Type: application/octet-stream');
  header('Content-Length: ' . $n);
  $block = str_repeat(implode('', array_map('chr', range(0, 255))), 256);
  for ($i = 0; $i < $n; $i += strlen($block)) echo substr($block, 0, min(strlen($block), $n - $i));
  exit;
}
$in = file_get_contents('php://input');
$env = [];
foreach (['REQUEST_METHOD', 'CONTENT_LENGTH', 'CONTENT_TYPE', 'QUERY_STRING', 'REQUEST_URI',
          'HTTP_X_TEST', 'HTTP_X_BIG', 'SERVER_NAME'] as $k) {
  if (isset($_SERVER[$k])) $env[$k] = $_SERVER[$k];
}
if (isset($_GET['status'])) http_response_code((int) $_GET['status']);
header('Content-Type: application/json');
header('X-Pid: ' . getmypid());
echo json_encode(['length' => strlen($in), 'sha256' => hash('sha256', $in), 'pid' => getmypid(), 'env' => $env]);
`;

/** A running PHP backend; `script` is the SCRIPT_FILENAME to send. */
export interface PhpBackend extends Backend {
  readonly script: string;
}

/** The CGI variables PHP needs on top of the usual ones. */
export function phpParams(php: PhpBackend): Record<string, string> {
  return { SCRIPT_FILENAME: php.script, SCRIPT_NAME: '/app.php', DOCUMENT_ROOT: php.dir };
}

function writeApp(dir: string): string {
  const script = join(dir, 'app.php');
  writeFileSync(script, PHP_APP);
  return script;
}

export interface PhpFpmOptions {
  /** pm.max_children (pm = static). @default 2 */
  children?: number;
  /** pm.max_requests: a child ends after that many requests (0: never). @default 0 */
  maxRequests?: number;
}

/** A private PHP-FPM master with its own config, listening on a Unix socket in a temp dir. */
export async function startPhpFpm(options: PhpFpmOptions = {}): Promise<PhpBackend> {
  const fpm = findBinary('php-fpm') ?? 'php-fpm';
  const dir = makeTempDir('fcgi-fpm-');
  const socket = unixSocketPath(dir, 'fpm.sock');
  const script = writeApp(dir);
  const root = process.getuid?.() === 0;
  const user = userInfo().username;
  const conf = join(dir, 'php-fpm.conf');
  writeFileSync(
    conf,
    `[global]
pid = ${dir}/php-fpm.pid
error_log = ${dir}/php-fpm.log
daemonize = no

[app]
listen = ${socket}
listen.mode = 0600
${root ? `user = ${user}\ngroup = ${user}` : ''}
pm = static
pm.max_children = ${options.children ?? 2}
pm.max_requests = ${options.maxRequests ?? 0}
catch_workers_output = yes
php_admin_value[post_max_size] = 0
php_admin_value[memory_limit] = 512M
php_admin_value[output_buffering] = 0
`,
  );
  const args = ['-n', '-y', conf, '-p', dir, '-F', ...(root ? ['-R'] : [])];
  const proc = spawnManaged(fpm, args, dir, dir);
  const address = `unix:${socket}`;
  try {
    await waitReady(proc, 'php-fpm', async () => ((await canConnect(address)) ? true : undefined));
    return { ...backend('php-fpm', address, proc, dir), script };
  } catch (error) {
    await proc.stop();
    removeTempDir(dir);
    throw error;
  }
}

export interface PhpCgiOptions {
  socket: 'unix' | 'tcp';
  /** PHP_FCGI_CHILDREN: 0 serves in the one process. @default 0 */
  children?: number;
}

/** `php-cgi -b` (PHP's built-in FastCGI mode) on a Unix socket or a TCP port. */
export async function startPhpCgi(options: PhpCgiOptions): Promise<PhpBackend> {
  const phpCgi = findBinary('php-cgi') ?? 'php-cgi';
  const dir = makeTempDir('fcgi-pcgi-');
  const script = writeApp(dir);
  const address =
    options.socket === 'unix'
      ? `unix:${unixSocketPath(dir, 'cgi.sock')}`
      : `127.0.0.1:${await getFreePort()}`;
  const bind = address.replace(/^unix:/, '');
  const args = [
    ...['-n', '-d', 'post_max_size=0', '-d', 'memory_limit=512M', '-d', 'cgi.force_redirect=0'],
    ...['-b', bind],
  ];
  // PHP_FCGI_CHILDREN is read from the environment; spawnManaged passes ours on.
  const saved = process.env.PHP_FCGI_CHILDREN;
  process.env.PHP_FCGI_CHILDREN = String(options.children ?? 0);
  const proc = spawnManaged(phpCgi, args, dir, dir);
  if (saved === undefined) delete process.env.PHP_FCGI_CHILDREN;
  else process.env.PHP_FCGI_CHILDREN = saved;
  try {
    await waitReady(proc, 'php-cgi', async () => ((await canConnect(address)) ? true : undefined));
    return { ...backend('php-cgi', address, proc, dir), script };
  } catch (error) {
    await proc.stop();
    removeTempDir(dir);
    throw error;
  }
}
