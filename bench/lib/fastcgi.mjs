/**
 * The FastCGI side of the suite: PHP-FPM serving a PHP script with the suite's bodies, the same
 * WSGI app as uWSGI (backends.mjs) over examples/python/fastcgi_server.py and, for
 * @fastify/reply-from, over a threaded HTTP/1.1 server from Python's standard library
 * (wsgi_http_server.py), and nginx `fastcgi_pass` with and without upstream keep-alive. Each in
 * a private temp dir, as backends.mjs does for uWSGI; test/helpers/php.ts and
 * test/helpers/fastcgi-backends.ts start the same servers for the tests.
 */
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findBinary, startNginxWith, WSGI_APP } from './backends.mjs';
import { BODIES, CONTENT_TYPE, phpString } from './bodies.mjs';
import { canConnect, startProcess, waitReady } from './procs.mjs';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FASTCGI_SERVER_PY = join(ROOT, 'examples/python/fastcgi_server.py');
const HTTP_SERVER_PY = fileURLToPath(new URL('./wsgi_http_server.py', import.meta.url));

/** PHP-FPM's children (pm = static): the pool the starvation scenario of the issue had. */
export const PHP_CHILDREN = 4;
/**
 * Threads of the Python servers. examples/python/fastcgi_server.py gives each open connection a
 * thread for as long as it stays open (FCGI_KEEP_CONN): nginx with `keepalive 32` and 32 client
 * connections may hold 32 busy plus up to 32 cached idle ones, so 64, as uWSGI's 4 x 16 threads
 * for HTTP (backends.mjs). Fewer would park requests behind idle kept connections, which is the
 * starvation scenario, measured on PHP-FPM.
 */
export const PY_THREADS = 64;

/**
 * The PHP script: the same answers as the WSGI app (bench/lib/bodies.mjs), each with its
 * Content-Length; a body is built only for its own path (PHP keeps nothing between requests).
 * Routed on REQUEST_URI, which nginx and scgi-core both send. /upload reads php://input to the
 * end in 256 KiB reads and answers the byte count.
 */
export const PHP_APP = `<?php
$path = strtok($_SERVER['REQUEST_URI'] ?? '', '?');
switch ($path) {
${Object.keys(BODIES)
  .map((path) => `  case '${path}': $body = ${phpString(path)}; break;`)
  .join('\n')}
  case '/upload':
    $in = fopen('php://input', 'rb');
    $total = 0;
    while (!feof($in)) {
      $chunk = fread($in, 262144);
      if ($chunk === false) break;
      $total += strlen($chunk);
    }
    $body = (string) $total;
    break;
  default:
    http_response_code(404);
    header('Content-Type: text/plain');
    header('Content-Length: 10');
    echo "not found\\n";
    exit;
}
header('Content-Type: ${CONTENT_TYPE}');
header('Content-Length: ' . strlen($body));
echo $body;
`;

/** Debian names PHP-FPM after its version only (/usr/sbin/php-fpm8.2): the highest one. */
export function findPhpFpm() {
  const plain = findBinary('php-fpm');
  if (plain !== undefined) return plain;
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/sbin'];
  for (const dir of dirs) {
    let names = [];
    try {
      names = readdirSync(dir).filter((n) => /^php-fpm\d+(\.\d+)?$/.test(n));
    } catch {
      continue;
    }
    const best = names.sort((a, b) => a.localeCompare(b, 'en', { numeric: true })).at(-1);
    if (best !== undefined) return join(dir, best);
  }
  return undefined;
}

/**
 * A private PHP-FPM (`-n -y conf -p dir -F`, `-R` as root, as test/helpers/php.ts), `pm = static`
 * with `children` children, on a Unix socket; no access log; opcache on (as any production
 * PHP-FPM runs; `-n` skips Debian's conf.d that would load it) when the extension is there.
 * `script` is the SCRIPT_FILENAME to send.
 */
export async function startPhpFpm(dir, { children = PHP_CHILDREN } = {}) {
  const fpm = findPhpFpm();
  if (fpm === undefined) throw new Error('php-fpm not found (Debian: php-fpm)');
  const socket = join(dir, 'fpm.sock');
  const script = join(dir, 'app.php');
  writeFileSync(script, PHP_APP);
  const root = process.getuid?.() === 0;
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
listen.backlog = 1024
${root ? 'user = root\ngroup = root\n' : ''}pm = static
pm.max_children = ${children}
pm.max_requests = 0
catch_workers_output = yes
php_admin_value[post_max_size] = 0
php_admin_value[memory_limit] = 512M
php_admin_value[output_buffering] = 0
php_admin_value[expose_php] = 0
`,
  );
  const opcache = findOpcache();
  const args = [
    ...['-n', '-y', conf, '-p', dir, '-F'],
    ...(opcache ? ['-d', `zend_extension=${opcache}`, '-d', 'opcache.enable=1'] : []),
    ...(root ? ['-R'] : []),
  ];
  const proc = startProcess('php-fpm', fpm, args, { cwd: dir });
  await waitReady(proc, async () => ((await canConnect({ path: socket })) ? true : undefined));
  return { proc, sockets: { unix: socket }, script, kind: 'fpm', workers: children };
}

/** Debian's opcache.so (/usr/lib/php/<API>/), if installed. */
function findOpcache() {
  let apis = [];
  try {
    apis = readdirSync('/usr/lib/php');
  } catch {
    return undefined; // no PHP extension dir: run without opcache
  }
  return apis.map((api) => join('/usr/lib/php', api, 'opcache.so')).find((p) => existsSync(p));
}

/** The WSGI app of backends.mjs over examples/python/fastcgi_server.py on a Unix socket. */
export async function startPythonFastcgi(dir, { threads = PY_THREADS } = {}) {
  writeFileSync(join(dir, 'app.py'), WSGI_APP);
  const socket = join(dir, 'fcgi.sock');
  const args = [
    ...['-u', '-B', FASTCGI_SERVER_PY, '--socket', `unix:${socket}`],
    ...['--threads', String(threads), '--app', 'app:application'],
  ];
  const proc = startProcess('python-fastcgi', python(), args, { cwd: dir });
  await waitReady(proc, async () => ((await canConnect({ path: socket })) ? true : undefined));
  return { proc, sockets: { unix: socket }, kind: 'pyfcgi', workers: threads };
}

/** The same app over HTTP/1.1 keep-alive (bench/lib/wsgi_http_server.py), for reply-from. */
export async function startPythonHttp(dir) {
  writeFileSync(join(dir, 'app.py'), WSGI_APP);
  const proc = startProcess(
    'python-http',
    python(),
    ['-u', '-B', HTTP_SERVER_PY, '--app', 'app:application'],
    { cwd: dir },
  );
  const http = await waitReady(proc, async () => {
    const match = /^listening on (127\.0\.0\.1:\d+)$/m.exec(proc.log());
    if (!match) return undefined;
    const port = Number(match[1].split(':')[1]);
    return (await canConnect({ host: '127.0.0.1', port })) ? match[1] : undefined;
  });
  return { proc, sockets: { http }, kind: 'pyhttp' };
}

const python = () => process.env.PYTHON ?? findBinary('python3') ?? 'python3';

/**
 * nginx's stock fastcgi_params (nginx's conf/fastcgi_params; nginx adds CONTENT_LENGTH from the
 * request), with SCRIPT_NAME "" and PATH_INFO as for SCGI (backends.mjs: the WSGI app routes on
 * PATH_INFO, and the Node fronts send both), and for PHP the SCRIPT_FILENAME PHP-FPM runs.
 */
const fastcgiParams = (script) => `
      fastcgi_param  QUERY_STRING       $query_string;
      fastcgi_param  REQUEST_METHOD     $request_method;
      fastcgi_param  CONTENT_TYPE       $content_type;
      fastcgi_param  CONTENT_LENGTH     $content_length;
      fastcgi_param  REQUEST_URI        $request_uri;
      fastcgi_param  DOCUMENT_URI       $document_uri;
      fastcgi_param  DOCUMENT_ROOT      $document_root;
      fastcgi_param  SERVER_PROTOCOL    $server_protocol;
      fastcgi_param  REQUEST_SCHEME     $scheme;
      fastcgi_param  HTTPS              $https if_not_empty;
      fastcgi_param  GATEWAY_INTERFACE  CGI/1.1;
      fastcgi_param  SERVER_SOFTWARE    nginx/$nginx_version;
      fastcgi_param  REMOTE_ADDR        $remote_addr;
      fastcgi_param  REMOTE_PORT        $remote_port;
      fastcgi_param  SERVER_ADDR        $server_addr;
      fastcgi_param  SERVER_PORT        $server_port;
      fastcgi_param  SERVER_NAME        $server_name;
      fastcgi_param  REDIRECT_STATUS    200;
      fastcgi_param  SCRIPT_NAME        "";
      fastcgi_param  PATH_INFO          $uri;${
        script ? `\n      fastcgi_param  SCRIPT_FILENAME    ${script};` : ''
      }`;

/**
 * nginx `fastcgi_pass` in front of `backend` (startPhpFpm or startPythonFastcgi). With
 * `keepalive` N: an `upstream` block with `keepalive N` (idle connections cached per worker) and
 * `fastcgi_keep_conn on`, nginx's documented recipe; its upstream `keepalive_requests` stays at
 * the default (1000: a kept connection is closed after 1000 requests). Without: one connection
 * per request, as nginx does by default. Everything else as the SCGI nginx (backends.mjs).
 */
export function startNginxFastcgi(dir, backend, { keepalive } = {}) {
  const params = fastcgiParams(backend.script);
  if (keepalive === undefined) {
    return startNginxWith(dir, {
      location: `${params}
      fastcgi_pass unix:${backend.sockets.unix};`,
    });
  }
  return startNginxWith(dir, {
    upstreamBlock: `  upstream app {
    server unix:${backend.sockets.unix};
    keepalive ${keepalive};
  }
`,
    location: `${params}
      fastcgi_pass app;
      fastcgi_keep_conn on;`,
  });
}
