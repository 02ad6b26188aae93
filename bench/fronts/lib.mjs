/**
 * Shared by the front processes: argument parsing, the readiness line the suite waits for, and
 * a clean exit on SIGTERM (process.exit, so `node --cpu-prof` writes its profile). A front run as
 * a node:cluster worker (bench/fronts/cluster.mjs) reports its port to the primary instead,
 * which prints the one readiness line once every worker listens.
 */
import cluster from 'node:cluster';
import { parseArgs } from 'node:util';

export function frontArgs() {
  const { values } = parseArgs({
    options: {
      upstream: { type: 'string' },
      target: { type: 'string' },
      port: { type: 'string', default: '0' },
    },
  });
  return values;
}

/**
 * Prints `READY <port>` once listening (a cluster worker sends `{ ready: port }` to the primary
 * instead), and closes on SIGTERM / SIGINT within 2 s.
 */
export function announce(port, close) {
  if (cluster.isWorker) process.send({ ready: port });
  else console.log(`READY ${port}`);
  const stop = () => {
    const timer = setTimeout(() => process.exit(0), 2000);
    timer.unref();
    Promise.resolve()
      .then(close)
      .finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
