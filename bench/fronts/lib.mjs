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
      'max-connections': { type: 'string' },
      'no-keep-alive': { type: 'boolean', default: false },
      param: { type: 'string', multiple: true, default: [] },
    },
  });
  return values;
}

/**
 * The proxy options of fastify.mjs and express.mjs: `--upstream` (`unix:/path`, `host:port`, or
 * `fastcgi://unix:/path`), and only what the command line sets on top, so the SCGI fronts run on
 * the defaults: `--max-connections N` (FastCGI: the backend's workers, README "FastCGI"),
 * `--no-keep-alive` (`keepAlive: false`), `--param NAME=VALUE` (repeatable; `params`, e.g.
 * PHP-FPM's SCRIPT_FILENAME).
 */
export function proxyOptions(values) {
  const options = { upstream: values.upstream };
  if (values['max-connections'] !== undefined)
    options.maxConnections = Number(values['max-connections']);
  if (values['no-keep-alive']) options.keepAlive = false;
  if (values.param.length > 0) {
    options.params = Object.fromEntries(
      values.param.map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]),
    );
  }
  return options;
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
