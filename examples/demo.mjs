// The demo (`npm start`): a real SCGI app behind Fastify.
//
// Starts the Python example backend (examples/python/scgi_server.py running app.py, standard
// library only) on a Unix socket in a private temp dir, puts Fastify with fastify-scgi in front
// of it under /app, and prints the URL. Ctrl-C stops both. Without python3 it says so and serves
// the same routes from the Node SCGI server in scgi-core instead.
//
//   PORT=3000 HOST=127.0.0.1 npm start
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';
import fastifyScgi from 'fastify-scgi';
import { startNodeApp } from './node-app.mjs';

const PORT = Number(process.env.PORT ?? 3000);
const HOST = process.env.HOST ?? '127.0.0.1';
const PYTHON = process.env.PYTHON ?? 'python3';
const dir = mkdtempSync(join(tmpdir(), 'scgi-demo-'));
const socketPath = join(dir, 'app.sock');
const upstream = `unix:${socketPath}`;

function havePython() {
  const r = spawnSync(PYTHON, ['--version'], { stdio: 'ignore' });
  return r.status === 0;
}

/** Waits until the backend accepts connections (bounded: 10 s). */
async function waitForSocket(path, child) {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null)
      throw new Error(`backend exited with code ${child.exitCode}`);
    const ok = await new Promise((resolve) => {
      const s = connect(path);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('backend did not start within 10 s');
}

let child = null;
let nodeBackend = null;
if (havePython()) {
  const pythonDir = fileURLToPath(new URL('./python/', import.meta.url));
  child = spawn(
    PYTHON,
    [join(pythonDir, 'scgi_server.py'), '--socket', upstream, '--app', 'app:application'],
    {
      cwd: pythonDir,
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  await waitForSocket(socketPath, child);
  console.log(`backend: Python WSGI app (examples/python/app.py) on ${upstream}`);
} else {
  console.log(
    'python3 not found: install it (Debian: apt-get install python3) to run the Python backend.',
  );
  console.log('Serving the same routes from the Node SCGI server in scgi-core instead.');
  nodeBackend = await startNodeApp(upstream);
}

const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info' } });
await app.register(fastifyScgi, { upstream, prefix: '/app' });
app.get('/', async (_req, reply) =>
  reply
    .type('text/html')
    .send('<p>fastify-scgi demo: the SCGI app is mounted at <a href="/app/">/app/</a></p>'),
);

let stopping = false;
async function stop(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`\n${signal}: stopping`);
  await app.close();
  if (child && child.exitCode === null) {
    child.kill('SIGTERM');
    await new Promise((resolve) => {
      const t = setTimeout(() => {
        child.kill('SIGKILL');
        resolve();
      }, 3000);
      child.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
  if (nodeBackend) await new Promise((r) => nodeBackend.close(r));
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}
process.once('SIGINT', () => stop('SIGINT'));
process.once('SIGTERM', () => stop('SIGTERM'));
child?.once('exit', (code) => {
  if (!stopping) {
    console.error(`backend exited (code ${code}); stopping`);
    stop('backend exit');
  }
});

await app.listen({ port: PORT, host: HOST });
// PORT=0 lets the kernel pick a free port: print the one it picked.
const { port } = app.server.address();
console.log(`tmp: ${dir}`);
console.log(
  `demo ready: http://${HOST}:${port}/app/  (try /app/env, /app/cookies, /app/stream?bytes=1000000)`,
);
