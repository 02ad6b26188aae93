/**
 * A small ops/s harness: warm up, then time rounds of fixed length with the implementations of
 * one case interleaved, and report medians. The median of several short rounds resists the
 * noise of a shared machine (a GC or a neighbour's burst spoils one round, not the result).
 */
import { availableParallelism, cpus } from 'node:os';
import { performance } from 'node:perf_hooks';

/** When and where a benchmark ran: the head of every result JSON (suite and microbenchmarks). */
export function machineFacts() {
  return {
    date: new Date().toISOString(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: availableParallelism(),
  };
}

/** Iterations between clock reads: enough that `performance.now()` costs well under 1%. */
const BATCH = 64;

/**
 * The timing loop of one implementation, compiled separately for each with `new Function`
 * (as benchmark.js does): each loop has its own call-site feedback, so V8 can inline `fn`
 * there, and no case makes another case's loop megamorphic.
 */
function compileLoop() {
  return new Function(
    'fn',
    'now',
    'ms',
    'batch',
    `let sink = 0;
    let n = 0;
    const start = now();
    let elapsed = 0;
    do {
      for (let i = 0; i < batch; i++) sink = (sink + fn()) | 0;
      n += batch;
      elapsed = now() - start;
    } while (elapsed < ms);
    return { n, elapsed, sink };`,
  );
}

const now = () => performance.now();

function median(sorted) {
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Measures the implementations of one case. Each `fn` does one operation and returns a number
 * derived from its result (summed into a sink, so the work cannot be optimised away).
 *
 * @param {Record<string, () => number>} impls e.g. `{ ours, naive }`; the first is the subject
 * @param {{ warmup: number, rounds: number, roundMs: number }} plan
 * @returns {Record<string, { opsPerSec: number, usPerOp: number, spread: number, samples: number[] }>}
 */
export function measure(impls, { warmup, rounds, roundMs }) {
  const names = Object.keys(impls);
  const loops = Object.fromEntries(names.map((name) => [name, compileLoop()]));
  const samples = Object.fromEntries(names.map((name) => [name, []]));
  let sink = 0;
  // All warmed before any is timed, so the first timed one is not also the first optimised.
  for (const name of names) sink ^= loops[name](impls[name], now, 0, warmup).sink;
  for (let round = 0; round < rounds; round++) {
    // A B, then B A: a drift in machine speed during the run favours neither.
    const order = round % 2 === 0 ? names : [...names].reverse();
    for (const name of order) {
      const { n, elapsed, sink: s } = loops[name](impls[name], now, roundMs, BATCH);
      sink ^= s;
      samples[name].push((n / elapsed) * 1000);
    }
  }
  const out = {};
  for (const name of names) {
    const sorted = [...samples[name]].sort((a, b) => a - b);
    const opsPerSec = median(sorted);
    out[name] = {
      opsPerSec: Math.round(opsPerSec),
      usPerOp: round3(1e6 / opsPerSec),
      // (max - min) / median over the rounds: how much to trust the figure on this machine.
      spread: round3((sorted[sorted.length - 1] - sorted[0]) / opsPerSec),
      samples: samples[name].map(Math.round),
    };
  }
  // Read once so the sink is observably used.
  if (sink === 0.5) console.error('unreachable');
  return out;
}

export const round3 = (x) => Math.round(x * 1000) / 1000;
