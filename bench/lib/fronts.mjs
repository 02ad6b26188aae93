/**
 * The fronts compared by the suite and how each is started. A front is what the load generator
 * talks to; every one runs as its own process (or group: uWSGI, nginx or a node:cluster on 2
 * workers) so its CPU and peak RSS can be read from /proc, and all the proxies reach the same
 * uWSGI app; the framework-alone fronts answer the same bytes themselves.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startNginx } from './backends.mjs';
import { childPids, startProcess, waitReady } from './procs.mjs';

const FRONTS_DIR = fileURLToPath(new URL('../fronts/', import.meta.url));

const unixUpstream = (u) => ['--upstream', `unix:${u.scgi.sockets.unix}`];
/** The cases of the fronts that only take part in the req/s comparison. */
const SMALL_CASES = Object.freeze(['tiny', '64k']);

/**
 * `backend`: which uWSGI instance serves the front's requests (its CPU is reported as the
 * backend's); `null` for uWSGI alone, which is front and backend at once, and for the
 * framework-alone fronts, which answer themselves. `kind`: how it starts (`node`: `script` with
 * `args(uwsgi)`, in `workers` node:cluster processes if more than 1; `nginx`; `uwsgi`: the HTTP
 * instance itself). `cases`: the only cases the front runs (default: all). `baseline`: the front
 * its "x nginx" is taken against when that front ran the same case (default: nginx).
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
  'uwsgi-http': { label: 'uWSGI http11-socket alone', kind: 'uwsgi', backend: null },
  'node-floor': {
    label: 'bare Node loop (floor, not a proxy)',
    kind: 'node',
    backend: 'scgi',
    script: 'node-floor.mjs',
    args: unixUpstream,
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
});

export const FRONT_NAMES = Object.keys(FRONTS);

/** The uWSGI instances the given fronts need. */
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
 * Starts one front. `uwsgi` holds the running instances by kind; `nodeFlags` are added before
 * the script (e.g. `--cpu-prof`). Returns `{ name, url, pids(), stop() }`; `pids()` lists every
 * process of the front (CPU and peak RSS are summed over them).
 */
export async function startFront(name, uwsgi, dir, { nodeFlags = [] } = {}) {
  const front = FRONTS[name];
  const workers = front.workers ?? 1;
  if (front.kind === 'nginx') {
    const nginx = await startNginx(dir, uwsgi.scgi.sockets.unix, { workers });
    return {
      name,
      url: `http://127.0.0.1:${nginx.port}`,
      pids: () => withWorkers(nginx.proc.pid, workers),
      proc: nginx.proc,
      stop: () => nginx.proc.stop(),
    };
  }
  if (front.kind === 'uwsgi') {
    const { proc, sockets } = uwsgi.http;
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
  const scriptArgs = front.args(uwsgi);
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
