/**
 * Where each front spends its CPU per request, side by side, measured ON the CPU: Linux `perf`
 * samples the front's process on the `cpu-clock` event, kernel included, while the suite's load
 * runs (node gets `--perf-basic-prof-only-functions`, so JavaScript frames have names). Unlike
 * the V8 profile of the suite (wall-clock), a syscall during which the process waits for the CPU
 * is not counted, so the figures are what the front itself burns, split by who burns it:
 *
 *   npx tsc -b && node bench/oncpu.mjs [--fronts node-floor,fastify-floor,fastify-unix,reply-from]
 *                                      [--case tiny] [--seconds 3] [--rounds 4] [--top 20]
 *
 * Prints µs per request for each front: the kernel, JavaScript by owner (scgi-core, the
 * adapters, Fastify, undici, Node's own modules), V8 (inline caches and other builtins, the
 * runtime, the compiler, the GC), Node's and libuv's C++, libc; then each front's busiest
 * symbols. All fronts run at once against the same backends (bench/lib/fronts.mjs; a FastCGI
 * front gets one of its own, as in the suite), each loaded in turn, in rounds whose order
 * alternates; the figures add up the rounds.
 * Needs `perf` (Debian `linux-perf`) and the right to sample a process (root, or
 * kernel.perf_event_paranoid <= 1 for user space only). Not part of `npm run bench`: a tool for
 * the closing evidence the developers' guide asks for (floor and product side by side).
 */
import { execFileSync, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CASES } from './lib/cases.mjs';
import { BACKENDS, backendsFor, FRONT_NAMES, FRONTS, startFront } from './lib/fronts.mjs';
import { startLoadGenerator } from './lib/loadgen.mjs';
import { cleanupAll, makeTempDir } from './lib/procs.mjs';

const { values: args } = parseArgs({
  options: {
    fronts: { type: 'string', default: 'node-floor,fastify-floor,fastify-unix,reply-from' },
    case: { type: 'string', default: 'tiny' },
    seconds: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '4' },
    top: { type: 'string', default: '20' },
  },
});
const fronts = args.fronts.split(',');
for (const f of fronts) {
  if (!FRONT_NAMES.includes(f)) throw new Error(`unknown front ${f}: ${FRONT_NAMES.join(', ')}`);
}
const c = CASES[args.case];
if (c === undefined || c.method !== 'GET') throw new Error('--case: tiny, 64k or 16m');
const HZ = 4999;

try {
  execFileSync('perf', ['--version'], { stdio: 'ignore' });
} catch {
  console.error('perf not found: install linux-perf');
  process.exit(1);
}

/** The group a sampled symbol belongs to. */
function groupOf(kind, sym) {
  if (kind === 'k') return 'kernel';
  if (sym.startsWith('JS:')) {
    if (sym.includes('/scgi-core/')) return 'JS scgi-core';
    if (sym.includes('/fastify-plugin/') || sym.includes('/express-mw/')) return 'JS adapter';
    const mod = /node_modules\/(@[^/]+\/[^/]+|[^/]+)\//.exec(sym);
    if (mod) return `JS ${mod[1]}`;
    if (/ node:/.test(sym)) return 'JS node internals';
    return 'JS other (front script, wasm)';
  }
  if (sym.startsWith('Builtins_')) return /IC/.test(sym) ? 'V8 inline caches' : 'V8 builtins';
  if (/Scaveng|Heap|Sweep|Mark|Evacuat|GC/.test(sym)) return 'V8 GC';
  if (sym.startsWith('v8::internal::compiler') || /Compil|maglev/i.test(sym)) return 'V8 compiler';
  if (sym.startsWith('v8::')) return 'V8 runtime';
  if (sym.startsWith('node::') || sym.startsWith('uv_') || sym.startsWith('uv__'))
    return 'Node/libuv C++';
  return 'other native (libc...)';
}

/** `[samples, kind, symbol]` rows of a perf.data file (kind: `k` kernel, `.` user space). */
function samples(file) {
  const out = execFileSync(
    'perf',
    [
      'report',
      '-i',
      file,
      '--no-children',
      '--sort',
      'sym',
      '-F',
      'sample,sym',
      '--stdio',
      '-g',
      'none',
    ],
    { maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'ignore'] },
  ).toString();
  const rows = [];
  for (const line of out.split('\n')) {
    const m = /^\s+(\d+)\s+\[([.k])\]\s+(.*)$/.exec(line);
    if (m) rows.push([Number(m[1]), m[2], m[3].trim()]);
  }
  return rows;
}

const backends = {};
const load = await startLoadGenerator();
const started = [];
const results = fronts.map((name) => ({ name, requests: 0, seconds: 0, bySymbol: new Map() }));
try {
  for (const k of backendsFor(fronts)) {
    if (!BACKENDS[k].perFront) backends[k] = await BACKENDS[k].start(makeTempDir());
  }
  for (const name of fronts) {
    // A FastCGI backend is one per front (BACKENDS `perFront`): connections another front keeps
    // open would hold its workers, as in bench/run.mjs.
    const kind = FRONTS[name].backend;
    const mine = BACKENDS[kind]?.perFront
      ? { ...backends, [kind]: await BACKENDS[kind].start(makeTempDir()) }
      : backends;
    const front = await startFront(name, mine, makeTempDir(), {
      nodeFlags: ['--perf-basic-prof-only-functions'],
    });
    started.push(front);
    await load.run({ ...loadOptions(front), duration: 1.5 }); // warm-up: the JIT settles
  }
  // Rounds alternate the order (A B C, then C B A), as bench/run.mjs does, so drift in the
  // machine's speed favours no front; samples and requests add up over the rounds.
  for (let round = 0; round < Number(args.rounds); round++) {
    const order = started.map((_, i) => (round % 2 === 0 ? i : started.length - 1 - i));
    for (const i of order) {
      const front = started[i];
      const file = join(makeTempDir('scgi-oncpu-'), 'perf.data');
      const rec = spawn(
        'perf',
        [
          'record',
          '-q',
          '-e',
          'cpu-clock',
          '-F',
          String(HZ),
          '-p',
          String(front.pids()[0]),
          '-o',
          file,
        ],
        { stdio: 'ignore' },
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
      const r = await load.run({ ...loadOptions(front), duration: Number(args.seconds) });
      rec.kill('SIGINT');
      await new Promise((resolve) => rec.once('exit', resolve));
      const x = results[i];
      x.requests += r.requests;
      x.seconds += r.seconds;
      for (const [n, kind, sym] of samples(file)) {
        const had = x.bySymbol.get(sym);
        if (had === undefined) x.bySymbol.set(sym, [n, kind]);
        else had[0] += n;
      }
    }
  }
} finally {
  await load.stop();
  for (const front of started) {
    const pid = front.pids()[0];
    await front.stop();
    // The JIT symbol map node wrote for perf.
    rmSync(`/tmp/perf-${pid}.map`, { force: true });
  }
  await cleanupAll();
}
for (const x of results) {
  const us = (n) => ((n / HZ) * 1e6) / x.requests;
  x.us = us;
  x.rows = [...x.bySymbol].map(([sym, [n, kind]]) => [n, kind, sym]);
  x.reqPerSec = x.requests / x.seconds;
  x.groups = new Map();
  for (const [n, kind, sym] of x.rows) {
    const g = groupOf(kind, sym);
    x.groups.set(g, (x.groups.get(g) ?? 0) + us(n));
  }
}

/** The load generator's options for a front. */
function loadOptions(front) {
  return {
    url: `${front.url}${c.path}`,
    method: 'GET',
    bodySize: 0,
    connections: c.connections,
    timeout: 10,
  };
}

const pad = (s, n) => String(s).padStart(n);
const width = Math.max(...fronts.map((f) => f.length), 8) + 2;
const names = new Set(results.flatMap((x) => [...x.groups.keys()]));
const order = [...names].sort(
  (a, b) =>
    Math.max(...results.map((x) => x.groups.get(b) ?? 0)) -
    Math.max(...results.map((x) => x.groups.get(a) ?? 0)),
);
console.log(`\nµs of CPU per request, ${args.case}, perf cpu-clock at ${HZ} Hz\n`);
console.log(`${'who'.padEnd(32)}${results.map((x) => pad(x.name, width)).join('')}`);
for (const g of order) {
  console.log(
    `${g.padEnd(32)}${results.map((x) => pad((x.groups.get(g) ?? 0).toFixed(2), width)).join('')}`,
  );
}
const totals = results.map((x) => [...x.groups.values()].reduce((a, b) => a + b, 0));
console.log(`${'total'.padEnd(32)}${totals.map((t) => pad(t.toFixed(2), width)).join('')}`);
console.log(
  `${'req/s while sampled'.padEnd(32)}${results.map((x) => pad(Math.round(x.reqPerSec), width)).join('')}`,
);
for (const x of results) {
  console.log(`\n${x.name}: busiest symbols (µs per request)`);
  for (const [n, , sym] of x.rows.sort((a, b) => b[0] - a[0]).slice(0, Number(args.top))) {
    console.log(`${pad(x.us(n).toFixed(2), 8)}  ${sym.slice(0, 120)}`);
  }
}
process.exit(0);
