/**
 * The fronts compared by the suite and how each is started. A front is what the load generator
 * talks to; every one runs as its own process (or group: uWSGI, nginx or a node:cluster on 2
 * workers) so its CPU and peak RSS can be read from /proc, and all the proxies reach the same
 * uWSGI app; the framework-alone fronts answer the same bytes themselves.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startNginx, startUwsgi } from './backends.mjs';
import { startNginxFastcgi, startPhpFpm, startPythonFastcgi, startPythonHttp } from './fastcgi.mjs';
import { childPids, startProcess, waitReady } from './procs.mjs';

const FRONTS_DIR = fileURLToPath(new URL('../fronts/', import.meta.url));

const unixUpstream = (u) => ['--upstream', `unix:${u.scgi.sockets.unix}`];
/** The cases of the fronts that only take part in the req/s comparison. */
const SMALL_CASES = Object.freeze(['tiny', '64k']);
/** nginx's upstream `keepalive` in the keep-alive FastCGI fronts: one per client connection. */
export const NGINX_FCGI_KEEPALIVE = 32;

/**
 * A FastCGI front's arguments for the running FastCGI `backend` (startPhpFpm or
 * startPythonFastcgi): `fastcgi://unix:...`, maxConnections = the backend's workers (every open
 * connection holds a PHP-FPM child or a Python thread, so no more than that are kept: DESIGN,
 * "FastCGI keep-alive"), and PHP's SCRIPT_FILENAME.
 */
export const fastcgiArgs = (backend, extra = []) => [
  ...['--upstream', `fastcgi://unix:${backend.sockets.unix}`],
  ...['--max-connections', String(backend.workers)],
  ...(backend.script ? ['--param', `SCRIPT_FILENAME=${backend.script}`] : []),
  ...extra,
];
const fastcgiUpstream = (kind, extra) => (b) => fastcgiArgs(b[kind], extra);

/**
 * `backend`: which backend serves the front's requests (its CPU is reported as the backend's; a
 * key of BACKENDS); `null` for uWSGI alone, which is front and backend at once, and for the
 * framework-alone fronts, which answer themselves. `kind`: how it starts (`node`: `script` with
 * `args(backends)`, in `workers` node:cluster processes if more than 1; `nginx`: `scgi_pass`, or
 * `fastcgi_pass` with `fastcgi` set, upstream `keepalive` with `keepalive` set; `uwsgi`: the HTTP
 * instance itself). `cases`: the only cases the front runs (default: all). `baseline`: the front
 * its "x nginx" is taken against when that front ran the same case (default: nginx, unless the
 * front has a baseline of its own and another backend than nginx's: then none). `needsFastcgi`:
 * the front proxies `fastcgi://` through scgi-core (run.mjs checks that the build accepts it).
 */
export const FRONTS = Object.freeze({
  'fastify-unix': {
    label: 'fastify-scgi (Unix)',
    kind: 'node',
    backend: 'scgi',
    script: 'fastify.mjs',
    args: unixUpstream,
  },
  'fastify-tcp': {
    label: 'fastify-scgi (TCP)',
    kind: 'node',
    backend: 'scgi',
    script: 'fastify.mjs',
    args: (u) => ['--upstream', u.scgi.sockets.tcp],
  },
  // The same front with a larger initial old generation: V8's default starts it so small that
  // under this load it runs back-to-back full GCs on 64 KiB and larger bodies (docs/tuning.md).
  'fastify-heap': {
    label: 'fastify-scgi, --initial-old-space-size=64 (Unix)',
    kind: 'node',
    backend: 'scgi',
    script: 'fastify.mjs',
    args: unixUpstream,
    nodeFlags: ['--initial-old-space-size=64'],
    cases: ['64k', '16m', 'upload'],
  },
  'express-unix': {
    label: 'express-scgi (Unix)',
    kind: 'node',
    backend: 'scgi',
    script: 'express.mjs',
    args: unixUpstream,
  },
  nginx: { label: 'nginx scgi_pass (Unix)', kind: 'nginx', backend: 'scgi' },
  'reply-from': {
    label: '@fastify/reply-from (HTTP)',
    kind: 'node',
    backend: 'http',
    script: 'reply-from.mjs',
    args: (u) => ['--target', `http://${u.http.sockets.http}`],
  },
  // Express's counterpart of reply-from: express-scgi's target is >= 1.0x of it (issue 13).
  hpm: {
    label: 'Express + http-proxy-middleware (HTTP)',
    kind: 'node',
    backend: 'http',
    script: 'hpm.mjs',
    args: (u) => ['--target', `http://${u.http.sockets.http}`],
    cases: SMALL_CASES,
  },
  'uwsgi-http': { label: 'uWSGI http11-socket alone', kind: 'uwsgi', backend: null },
  'node-floor': {
    label: 'bare Node loop (floor, not a proxy)',
    kind: 'node',
    backend: 'scgi',
    script: 'node-floor.mjs',
    args: unixUpstream,
    cases: SMALL_CASES,
  },
  // The same floor under a Fastify route: what any SCGI plugin for Fastify can reach.
  'fastify-floor': {
    label: 'bare Node loop in a Fastify route (floor, not a proxy)',
    kind: 'node',
    backend: 'scgi',
    script: 'fastify-floor.mjs',
    args: unixUpstream,
    // Tiny only: its naive body handling (chunks concatenated) is no floor for 64 KiB.
    cases: Object.freeze(['tiny']),
  },
  // Node's http answering itself: with fastify-alone, what the framework costs per request.
  'node-alone': {
    label: 'Node http alone (no proxy, no framework)',
    kind: 'node',
    backend: null,
    script: 'node-alone.mjs',
    args: () => [],
    cases: SMALL_CASES,
  },
  'fastify-alone': {
    label: 'Fastify alone (no proxy)',
    kind: 'node',
    backend: null,
    script: 'fastify-alone.mjs',
    args: () => [],
    cases: SMALL_CASES,
  },
  'express-alone': {
    label: 'Express alone (no proxy)',
    kind: 'node',
    backend: null,
    script: 'express-alone.mjs',
    args: () => [],
    cases: SMALL_CASES,
  },
  'nginx-2w': {
    label: 'nginx scgi_pass, 2 workers (Unix)',
    kind: 'nginx',
    backend: 'scgi',
    workers: 2,
    cases: SMALL_CASES,
    baseline: 'nginx-2w',
  },
  'fastify-2w': {
    label: 'fastify-scgi, 2 workers (Unix)',
    kind: 'node',
    backend: 'scgi',
    script: 'fastify.mjs',
    args: unixUpstream,
    workers: 2,
    cases: SMALL_CASES,
    baseline: 'nginx-2w',
  },
  'express-2w': {
    label: 'express-scgi, 2 workers (Unix)',
    kind: 'node',
    backend: 'scgi',
    script: 'express.mjs',
    args: unixUpstream,
    workers: 2,
    cases: SMALL_CASES,
    baseline: 'nginx-2w',
  },
  // FastCGI: the same comparison in front of PHP-FPM (4 children) and of the WSGI app served by
  // examples/python/fastcgi_server.py; "x nginx" is against nginx with keep-alive on the same
  // backend. On PHP-FPM this is also the starvation scenario of the issue (run.mjs
  // --fcgi-starvation): 32 client connections, 32 kept by nginx, 4 children.
  'nginx-fcgi-php': {
    label: 'nginx fastcgi_pass, no keep-alive (PHP-FPM)',
    kind: 'nginx',
    fastcgi: true,
    backend: 'fpm',
    cases: SMALL_CASES,
    baseline: 'nginx-fcgi-ka-php',
  },
  'nginx-fcgi-ka-php': {
    label: `nginx fastcgi_pass, keepalive ${NGINX_FCGI_KEEPALIVE} (PHP-FPM)`,
    kind: 'nginx',
    fastcgi: true,
    keepalive: NGINX_FCGI_KEEPALIVE,
    backend: 'fpm',
    cases: SMALL_CASES,
    baseline: 'nginx-fcgi-ka-php',
  },
  'fastify-fcgi-php': {
    label: 'fastify-scgi over FastCGI, maxConnections 4 (PHP-FPM)',
    kind: 'node',
    backend: 'fpm',
    script: 'fastify.mjs',
    args: fastcgiUpstream('fpm'),
    needsFastcgi: true,
    cases: SMALL_CASES,
    baseline: 'nginx-fcgi-ka-php',
  },
  // The floor of a Node FastCGI proxy with kept connections (node-floor-fcgi.mjs).
  'node-floor-fcgi-php': {
    label: 'bare Node loop over kept FastCGI connections (floor, PHP-FPM)',
    kind: 'node',
    backend: 'fpm',
    script: 'node-floor-fcgi.mjs',
    args: fastcgiUpstream('fpm'),
    needsFastcgi: true,
    cases: SMALL_CASES,
    baseline: 'nginx-fcgi-ka-php',
  },
  'nginx-fcgi-py': {
    label: 'nginx fastcgi_pass, no keep-alive (Python FastCGI)',
    kind: 'nginx',
    fastcgi: true,
    backend: 'pyfcgi',
    cases: SMALL_CASES,
    baseline: 'nginx-fcgi-ka-py',
  },
  'nginx-fcgi-ka-py': {
    label: `nginx fastcgi_pass, keepalive ${NGINX_FCGI_KEEPALIVE} (Python FastCGI)`,
    kind: 'nginx',
    fastcgi: true,
    keepalive: NGINX_FCGI_KEEPALIVE,
    backend: 'pyfcgi',
    cases: SMALL_CASES,
    baseline: 'nginx-fcgi-ka-py',
  },
  'fastify-fcgi-py': {
    label: 'fastify-scgi over FastCGI (Python FastCGI)',
    kind: 'node',
    backend: 'pyfcgi',
    script: 'fastify.mjs',
    args: fastcgiUpstream('pyfcgi'),
    needsFastcgi: true,
    cases: SMALL_CASES,
    baseline: 'nginx-fcgi-ka-py',
  },
  // The floor of a Node FastCGI proxy with kept connections (node-floor-fcgi.mjs), per backend.
  'node-floor-fcgi-py': {
    label: 'bare Node loop over kept FastCGI connections (floor, Python FastCGI)',
    kind: 'node',
    backend: 'pyfcgi',
    script: 'node-floor-fcgi.mjs',
    args: fastcgiUpstream('pyfcgi'),
    needsFastcgi: true,
    cases: SMALL_CASES,
    baseline: 'nginx-fcgi-ka-py',
  },
  // The gain keep-alive gives fastify-scgi itself (flup: 1.7x for nginx, the issue).
  'fastify-fcgi-noka-py': {
    label: 'fastify-scgi over FastCGI, keepAlive: false (Python FastCGI)',
    kind: 'node',
    backend: 'pyfcgi',
    script: 'fastify.mjs',
    args: fastcgiUpstream('pyfcgi', ['--no-keep-alive']),
    needsFastcgi: true,
    cases: SMALL_CASES,
    baseline: 'nginx-fcgi-ka-py',
  },
  // The same WSGI app in the same kind of server (one Python process, a thread per connection)
  // over HTTP/1.1 keep-alive: reply-from "on the same Python app" (README, What runs).
  'reply-from-py': {
    label: '@fastify/reply-from (HTTP, Python threaded server)',
    kind: 'node',
    backend: 'pyhttp',
    script: 'reply-from.mjs',
    args: (b) => ['--target', `http://${b.pyhttp.sockets.http}`],
    cases: SMALL_CASES,
    baseline: 'nginx-fcgi-ka-py',
  },
});

/**
 * How each backend starts, by the `backend` names of FRONTS: uWSGI for SCGI and for HTTP
 * (backends.mjs), PHP-FPM, the Python FastCGI server and the Python HTTP server (fastcgi.mjs).
 * Each resolves to `{ proc, sockets, ... }`; CPU is read over `proc` and its children.
 * `perFront`: each front gets an instance of its own. A FastCGI connection kept open holds a
 * PHP-FPM child or a Python thread until the client closes it, so the idle connections nginx
 * keeps after its rounds (upstream `keepalive`, closed only after 60 s idle) would hold the
 * workers of the next front on a shared instance: measured, nginx without keep-alive then got
 * no answer at all within its round.
 */
export const BACKENDS = Object.freeze({
  scgi: { label: 'uWSGI --scgi-socket', start: (dir) => startUwsgi(dir, 'scgi') },
  http: { label: 'uWSGI --http11-socket', start: (dir) => startUwsgi(dir, 'http') },
  fpm: { label: 'PHP-FPM', start: (dir) => startPhpFpm(dir), perFront: true },
  pyfcgi: {
    label: 'Python FastCGI server',
    start: (dir) => startPythonFastcgi(dir),
    perFront: true,
  },
  pyhttp: { label: 'Python HTTP server', start: (dir) => startPythonHttp(dir) },
});

export const FRONT_NAMES = Object.keys(FRONTS);

/** The backends (keys of BACKENDS) the given fronts need. */
export function backendsFor(names) {
  const kinds = new Set();
  for (const name of names) {
    const front = FRONTS[name];
    if (front.backend) kinds.add(front.backend);
    if (front.kind === 'uwsgi') kinds.add('http');
  }
  return kinds;
}

/** The given front's process and, for a master (nginx, node:cluster), its workers. */
const withWorkers = (pid, workers) => (workers > 1 ? [pid, ...childPids(pid)] : [pid]);

/**
 * Starts one front. `backends` holds the running backends by BACKENDS key; `nodeFlags` are added
 * before the script (e.g. `--cpu-prof`). Returns `{ name, url, pids(), stop() }`; `pids()` lists
 * every process of the front (CPU and peak RSS are summed over them).
 */
export async function startFront(name, backends, dir, { nodeFlags = [] } = {}) {
  const front = FRONTS[name];
  const workers = front.workers ?? 1;
  if (front.kind === 'nginx') {
    const nginx = front.fastcgi
      ? await startNginxFastcgi(dir, backends[front.backend], { keepalive: front.keepalive })
      : await startNginx(dir, backends.scgi.sockets.unix, { workers });
    return {
      name,
      url: `http://127.0.0.1:${nginx.port}`,
      pids: () => withWorkers(nginx.proc.pid, workers),
      proc: nginx.proc,
      stop: () => nginx.proc.stop(),
    };
  }
  if (front.kind === 'uwsgi') {
    const { proc, sockets } = backends.http;
    // The master and its workers; stopped with the backends, not here.
    return {
      name,
      url: `http://${sockets.http}`,
      pids: () => [proc.pid, ...childPids(proc.pid)],
      proc,
      stop: async () => {},
    };
  }
  const script =
    workers > 1
      ? [join(FRONTS_DIR, 'cluster.mjs'), '--workers', String(workers), '--front', front.script]
      : [join(FRONTS_DIR, front.script)];
  const scriptArgs = front.args(backends);
  const { proc, port } = await startNodeFront(
    name,
    [
      ...(front.nodeFlags ?? []),
      ...nodeFlags,
      ...script,
      ...(workers > 1 ? ['--', ...scriptArgs] : scriptArgs),
    ],
    dir,
  );
  return {
    name,
    url: `http://127.0.0.1:${port}`,
    pids: () => withWorkers(proc.pid, workers),
    proc,
    stop: () => proc.stop(),
  };
}

/**
 * Runs `node ...argv` in `cwd` and waits for the front's `READY <port>` line (bench/fronts/lib.mjs
 * prints it once listening). Returns the process and its port.
 */
export async function startNodeFront(name, argv, cwd) {
  let port;
  const proc = startProcess(name, process.execPath, argv, {
    cwd,
    onLine: (line) => {
      const match = /^READY (\d+)$/.exec(line);
      if (match) port = Number(match[1]);
    },
  });
  await waitReady(proc, async () => port);
  return { proc, port };
}

/**
 * Why the fronts that proxy `fastcgi://` through scgi-core cannot run, or undefined when they
 * can: asked as a user would, by constructing an ScgiProxy with such an upstream (nothing
 * connects until a request). False until the engine's FastCGI support is in the build.
 */
export async function fastcgiUnsupported() {
  try {
    const { ScgiProxy } = await import('scgi-core');
    const proxy = new ScgiProxy({ upstream: 'fastcgi://unix:/nonexistent/fpm.sock' });
    await proxy.close(0);
    return undefined;
  } catch (error) {
    return `this scgi-core build does not accept a fastcgi:// upstream (${error?.code ?? error?.name}: ${error?.message})`;
  }
}

/** A front's failure in one line: the first line, and the front's own error line if it logged one. */
export function failureReason(error) {
  const [first, ...rest] = String(error?.message ?? error).split('\n');
  const own = /^.*\b(?:SCGI_ERR_[A-Z_]+|Error)\b.*$/m.exec(rest.join('\n'));
  return own ? `${first} ${own[0].trim()}` : first;
}
