/**
 * The load generator: a child process of bench/run.mjs (forked with IPC) so its CPU is measured
 * apart and it never shares an event loop with anything it measures. Each `run` message starts
 * one autocannon run with keep-alive connections and answers with the figures.
 *
 * Latency is recorded here from autocannon's per-response event (float ms from hrtime), not from
 * its histogram, which keeps whole milliseconds only: at sub-millisecond latencies p50 and p99
 * would otherwise both read 0 or 1.
 *
 * A request still unanswered when the run stops counts too, at the time it had waited (a lower
 * bound of its latency): autocannon drops it, so a front that parks some connections' requests
 * for longer than the round (FastCGI keep-alive starvation, bench/README.md) would otherwise
 * show the p99 of the connections it did serve. Every connection has at most one request in
 * flight (no pipelining), so these are at most `connections` samples.
 */
import { createRequire } from 'node:module';
import autocannon from 'autocannon';

// autocannon appends every body chunk of every response to a string (`req.body += data`) for
// `expectBody` and per-request `onResponse` hooks, neither of which we use. On 16 MiB answers
// that decoding alone made the load generator the bottleneck: the body is counted, not kept.
const PipelinedRequestsQueue = createRequire(import.meta.url)(
  'autocannon/lib/pipelinedRequestsQueue.js',
);
PipelinedRequestsQueue.prototype.addBody = function addBody() {};

/** Shared by all uploads: autocannon copies it into each connection's request buffer once. */
let uploadBody;

function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

function run({ url, method, bodySize, connections, duration, timeout }) {
  let body;
  if (bodySize > 0) {
    if (uploadBody?.length !== bodySize) uploadBody = Buffer.alloc(bodySize, 0x61);
    body = uploadBody;
  }
  let latencies = new Float64Array(1 << 16);
  let count = 0;
  /** Per autocannon client: when its request in flight was sent (hrtime ns), or 0n. */
  const inFlight = new Map();
  let bytes = 0;
  let other = 0;
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const tracker = autocannon(
      {
        url,
        method,
        body,
        headers: body ? { 'content-type': 'application/octet-stream' } : undefined,
        connections,
        pipelining: 1,
        duration,
        timeout,
        // Only our own per-response figures are used; skip autocannon's table.
        renderProgressBar: false,
        renderResultsTable: false,
        renderLatencyTable: false,
        setupClient: (client) => {
          client.on('request', () => inFlight.set(client, process.hrtime.bigint()));
          client.on('response', () => inFlight.set(client, 0n));
          // A timed-out or failed request is counted by autocannon (timeouts, errors).
          client.on('timeout', () => inFlight.set(client, 0n));
        },
      },
      (err, result) => {
        if (err) return reject(err);
        const now = process.hrtime.bigint();
        const elapsed = Number(now - started) / 1e9;
        const seconds = result.duration > 0 ? result.duration : elapsed;
        const unfinished = [...inFlight.values()].filter((t) => t > 0n);
        const all = new Float64Array(count + unfinished.length);
        all.set(latencies.subarray(0, count));
        unfinished.forEach((t, i) => {
          all[count + i] = Number(now - t) / 1e6;
        });
        const sorted = all.sort();
        resolve({
          seconds,
          requests: count,
          reqPerSec: count / seconds,
          // Bytes received (head + body) per second, and request bodies sent per second.
          bytesPerSec: bytes / seconds,
          uploadBytesPerSec: ((body?.length ?? 0) * count) / seconds,
          latencyMs: {
            p50: percentile(sorted, 50),
            p99: percentile(sorted, 99),
            max: percentile(sorted, 100),
          },
          non2xx: other,
          // Requests still unanswered when the run stopped (in p50/p99 at their wait so far).
          unfinished: unfinished.length,
          errors: result.errors,
          timeouts: result.timeouts,
        });
      },
    );
    tracker.on('response', (_client, statusCode, resBytes, responseTime) => {
      if (statusCode < 200 || statusCode > 299) {
        other++;
        return;
      }
      if (count === latencies.length) {
        const grown = new Float64Array(latencies.length * 2);
        grown.set(latencies);
        latencies = grown;
      }
      latencies[count++] = responseTime;
      bytes += resBytes;
    });
  });
}

process.on('message', (message) => {
  if (message?.type !== 'run') return;
  run(message.options).then(
    (result) => process.send({ type: 'result', id: message.id, result }),
    (error) =>
      process.send({ type: 'error', id: message.id, message: String(error?.stack ?? error) }),
  );
});
process.on('disconnect', () => process.exit(0));
process.send({ type: 'ready' });
