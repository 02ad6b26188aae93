/**
 * Front wrapper: another front script (`--front fastify.mjs`) in `--workers N` processes sharing
 * one port through node:cluster, as users run Node on several cores. Default scheduling: on
 * Linux the primary accepts and hands the connections round-robin to the workers. The arguments
 * after `--` go to every worker (all listen on port 0, which the cluster turns into one shared
 * port).
 *
 *   node bench/fronts/cluster.mjs --workers 2 --front fastify.mjs -- --upstream unix:/path
 *
 * Prints `READY <port>` once, when every worker listens. On SIGTERM / SIGINT it passes SIGTERM
 * to the workers (each closes its server as when run alone) and exits once all have exited,
 * SIGKILLing any still there after 2.5 s. A worker that dies on its own stops the whole front
 * (exit 1): a front with a worker fewer would be measured for what it is not.
 */
import cluster from 'node:cluster';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const STOP_TIMEOUT_MS = 2500;

const { values, positionals } = parseArgs({
  options: {
    workers: { type: 'string', default: '2' },
    front: { type: 'string' },
  },
  allowPositionals: true,
});
const count = Number(values.workers);
if (!(Number.isInteger(count) && count > 0) || values.front === undefined) {
  console.error('usage: cluster.mjs --workers N --front SCRIPT -- [front arguments]');
  process.exit(2);
}

cluster.setupPrimary({
  exec: fileURLToPath(new URL(values.front, import.meta.url)),
  args: positionals,
});

const workers = [];
const ports = new Map();
let alive = 0;
let stopping = false;
let exitCode = 0;

/** Called with each worker's `{ ready: port }`: one READY line once all listen on one port. */
function onReady(worker, port) {
  ports.set(worker.id, port);
  if (ports.size < count) return;
  const distinct = new Set(ports.values());
  if (distinct.size !== 1) {
    console.error(`cluster: workers listen on different ports (${[...distinct].join(', ')})`);
    stop(1);
    return;
  }
  console.log(`READY ${port}`);
}

const running = (worker) => worker.process.exitCode === null && worker.process.signalCode === null;

function stop(code) {
  exitCode ||= code;
  if (stopping) return;
  stopping = true;
  if (alive === 0) process.exit(exitCode);
  for (const worker of workers) if (running(worker)) worker.process.kill('SIGTERM');
  const timer = setTimeout(() => {
    for (const worker of workers) if (running(worker)) worker.process.kill('SIGKILL');
    process.exit(exitCode);
  }, STOP_TIMEOUT_MS);
  timer.unref();
}

cluster.on('exit', (worker, code, signal) => {
  alive -= 1;
  if (!stopping) {
    console.error(`cluster: worker ${worker.process.pid} exited (${signal ?? `code ${code}`})`);
    stop(1);
  }
  if (alive === 0) process.exit(exitCode);
});

for (let i = 0; i < count; i++) {
  const worker = cluster.fork();
  workers.push(worker);
  alive += 1;
  worker.on('message', (message) => {
    if (typeof message?.ready === 'number') onReady(worker, message.ready);
  });
}
process.once('SIGTERM', () => stop(0));
process.once('SIGINT', () => stop(0));
