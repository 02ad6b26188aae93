// The demo (`npm start`): a real SCGI app behind Fastify, with nothing else to start.
//
// fastify-scgi spawns the Python example backend (examples/python/scgi_server.py running app.py,
// standard library only) as 2 workers, each on its own Unix socket in a private 0700 temp dir,
// supervises them (a worker that dies is restarted) and mounts the app under /app. Ctrl-C stops
// Fastify and the workers and removes the sockets. Without python3 it says so and spawns the same
// routes as Node SCGI workers (examples/node-app.mjs) instead.
//
// PROTOCOL=fastcgi runs the same app over FastCGI (examples/python/fastcgi_server.py, or the
// Node workers under createFastcgiServer), with kept connections.
//
//   PORT=3000 HOST=127.0.0.1 npm start       (HEADERS_TIMEOUT=ms bounds slow request heads)
//   PROTOCOL=fastcgi npm start
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';
import fastifyScgi from 'fastify-scgi';

const PORT = Number(process.env.PORT ?? 3000);
const HOST = process.env.HOST ?? '127.0.0.1';
const PYTHON = process.env.PYTHON ?? 'python3';
const pythonDir = fileURLToPath(new URL('./python/', import.meta.url));
const PROTOCOL = process.env.PROTOCOL ?? 'scgi';
if (PROTOCOL !== 'scgi' && PROTOCOL !== 'fastcgi') {
  console.error(`PROTOCOL must be scgi or fastcgi, got ${PROTOCOL}`);
  process.exit(2);
}

function havePython() {
  return spawnSync(PYTHON, ['--version'], { stdio: 'ignore' }).status === 0;
}

let spawnOptions;
if (havePython()) {
  spawnOptions = {
    protocol: PROTOCOL,
    command: PYTHON,
    args: [
      PROTOCOL === 'fastcgi' ? 'fastcgi_server.py' : 'scgi_server.py',
      ...['--socket', 'unix:{socket}', '--app', 'app:application'],
    ],
    cwd: pythonDir,
    instances: 2,
  };
  console.log(`backend: Python WSGI app (examples/python/app.py) over ${PROTOCOL}, 2 workers`);
} else {
  console.log(
    'python3 not found: install it (Debian: apt-get install python3) to run the Python backend.',
  );
  console.log(
    `Spawning the same routes as Node ${PROTOCOL} workers (examples/node-app.mjs) instead.`,
  );
  spawnOptions = {
    protocol: PROTOCOL,
    command: process.execPath,
    args: [fileURLToPath(new URL('./node-app.mjs', import.meta.url)), 'unix:{socket}', PROTOCOL],
    instances: 2,
  };
}

// A client that sends its headers a byte at a time holds a connection until Node's
// headersTimeout; Node checks it only every connectionsCheckingInterval (30 s by default), so the
// default cut comes after 60 to 90 s. These bound it at 60 s (HEADERS_TIMEOUT + at most 10 s).
const HEADERS_TIMEOUT = Number(process.env.HEADERS_TIMEOUT ?? 50_000);
const CHECK_INTERVAL = Math.max(100, Math.min(10_000, Math.ceil(HEADERS_TIMEOUT / 5)));

const app = Fastify({
  logger: { level: process.env.LOG_LEVEL ?? 'info' },
  // Fastify 5 hands `http` to http.createServer.
  http: { headersTimeout: HEADERS_TIMEOUT, connectionsCheckingInterval: CHECK_INTERVAL },
});
await app.register(fastifyScgi, { prefix: '/app', spawn: spawnOptions, closeGrace: 3000 });
app.get('/', async (_req, reply) =>
  reply
    .type('text/html')
    .send(
      `<p>fastify-scgi demo: the ${PROTOCOL === 'fastcgi' ? 'FastCGI' : 'SCGI'} app is mounted at <a href="/app/">/app/</a></p>`,
    ),
);

let stopping = false;
async function stop(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`\n${signal}: stopping`);
  // Fastify's close lets requests in flight finish, then fastify-scgi stops the workers
  // (SIGTERM, then SIGKILL) and removes their sockets and directory.
  const forced = setTimeout(() => process.exit(1), 10_000);
  await app.close();
  clearTimeout(forced);
  process.exit(0);
}
process.once('SIGINT', () => stop('SIGINT'));
process.once('SIGTERM', () => stop('SIGTERM'));

await app.listen({ port: PORT, host: HOST });
const { port } = app.server.address();
console.log(`tmp: ${app.scgiProxy.options.spawn.dir}`);
console.log(`workers: ${app.scgiProxy.workerPids().join(' ')}`);
console.log(
  `demo ready: http://${HOST}:${port}/app/  (try /app/env, /app/cookies, /app/stream?bytes=1000000)`,
);
