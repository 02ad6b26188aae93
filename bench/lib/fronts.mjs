/**
 * The fronts compared by the suite and how each is started. A front is what the load generator
 * talks to; every one runs as its own process (or group: uWSGI) so its CPU and peak RSS can be
 * read from /proc, and all of them reach the same uWSGI app.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startNginx } from './backends.mjs';
import { childPids, startProcess, waitReady } from './procs.mjs';

const FRONTS_DIR = fileURLToPath(new URL('../fronts/', import.meta.url));

/**
 * `backend`: which uWSGI instance serves the front's requests (its CPU is reported as the
 * backend's); `null` for uWSGI alone, which is front and backend at once.
 */
export const FRONTS = Object.freeze({
  'fastify-unix': {
    label: 'fastify-scgi (Unix)',
    backend: 'scgi',
    script: 'fastify.mjs',
    args: (u) => ['--upstream', `unix:${u.scgi.sockets.unix}`],
  },
  'fastify-tcp': {
    label: 'fastify-scgi (TCP)',
    backend: 'scgi',
    script: 'fastify.mjs',
    args: (u) => ['--upstream', u.scgi.sockets.tcp],
  },
  'express-unix': {
    label: 'express-scgi (Unix)',
    backend: 'scgi',
    script: 'express.mjs',
    args: (u) => ['--upstream', `unix:${u.scgi.sockets.unix}`],
  },
  nginx: { label: 'nginx scgi_pass (Unix)', backend: 'scgi' },
  'reply-from': {
    label: '@fastify/reply-from (HTTP)',
    backend: 'http',
    script: 'reply-from.mjs',
    args: (u) => ['--target', `http://${u.http.sockets.http}`],
  },
  'uwsgi-http': { label: 'uWSGI http11-socket alone', backend: null },
});

export const FRONT_NAMES = Object.keys(FRONTS);

/** The uWSGI instances the given fronts need. */
export function backendsFor(names) {
  const kinds = new Set();
  for (const name of names) {
    const front = FRONTS[name];
    if (front.backend) kinds.add(front.backend);
    if (name === 'uwsgi-http') kinds.add('http');
  }
  return kinds;
}

/**
 * Starts one front. `uwsgi` holds the running instances by kind; `nodeFlags` are added before
 * the script (e.g. `--cpu-prof`). Returns `{ name, url, pids(), stop() }`.
 */
export async function startFront(name, uwsgi, dir, { nodeFlags = [] } = {}) {
  const front = FRONTS[name];
  if (name === 'nginx') {
    const nginx = await startNginx(dir, uwsgi.scgi.sockets.unix);
    return {
      name,
      url: `http://127.0.0.1:${nginx.port}`,
      pids: () => [nginx.proc.pid],
      proc: nginx.proc,
      stop: () => nginx.proc.stop(),
    };
  }
  if (name === 'uwsgi-http') {
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
  let port;
  const proc = startProcess(
    name,
    process.execPath,
    [...nodeFlags, join(FRONTS_DIR, front.script), ...front.args(uwsgi)],
    {
      cwd: dir,
      onLine: (line) => {
        const match = /^READY (\d+)$/.exec(line);
        if (match) port = Number(match[1]);
      },
    },
  );
  await waitReady(proc, async () => port);
  return {
    name,
    url: `http://127.0.0.1:${port}`,
    pids: () => [proc.pid],
    proc,
    stop: () => proc.stop(),
  };
}
