/**
 * The benchmark suite (`npm run bench`): fastify-scgi and express-scgi side by side with nginx
 * `scgi_pass`, @fastify/reply-from and uWSGI's own HTTP socket, all in front of the same uWSGI
 * app, plus the scgi-core microbenchmarks (bench/core.mjs). On tiny and 64k also both SCGI
 * proxies and nginx on 2 workers, and Fastify and Express answering alone (no proxy).
 * Everything runs on 127.0.0.1 and Unix sockets in temp dirs, and stops on its own (a watchdog
 * bounds the whole run).
 *
 *   node bench/run.mjs [--quick] [--cases tiny,64k,16m,upload] [--fronts nginx,fastify-unix,...]
 *                      [--rounds N] [--duration S] [--out bench/results/latest.json]
 *                      [--no-profile] [--no-core]
 *
 * See bench/README.md for the method and what each figure means.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { writeCharts } from './chart.mjs';
import { findBinary } from './lib/backends.mjs';
import { CASE_NAMES, CASES, checkFront } from './lib/cases.mjs';
import { findPhpFpm } from './lib/fastcgi.mjs';
import {
  BACKENDS,
  backendsFor,
  FRONT_NAMES,
  FRONTS,
  failureReason,
  fastcgiUnsupported,
  startFront,
} from './lib/fronts.mjs';
import { startLoadGenerator } from './lib/loadgen.mjs';
import { runCore, versions } from './lib/machine.mjs';
import { machineFacts } from './lib/measure.mjs';
import {
  childPids,
  cleanupAll,
  clockTicks,
  cpuTicks,
  makeTempDir,
  peakRssKb,
  resetPeakRss,
} from './lib/procs.mjs';
import {
  checkTargets,
  ROUND_HEADER,
  ROUND_WIDTHS,
  renderTable,
  round3,
  roundRow,
  SUMMARY_HEADER,
  summarize,
  summaryRows,
  TARGET_HEADER,
  targetRows,
} from './lib/report.mjs';
import { formatSummary, summarizeProfile } from './profile-summary.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DEFAULT_OUT = join(ROOT, 'bench/results/latest.json');
/**
 * `--fcgi-starvation`: the keep-alive starvation scenario alone. PHP-FPM with 4 children,
 * 32 client connections on tiny, nginx with `keepalive 32` against nginx without keep-alive
 * against fastify-scgi with maxConnections 4; rounds long enough for requests parked for
 * seconds behind kept connections to show in p99.
 */
const STARVATION = {
  cases: 'tiny',
  fronts: 'nginx-fcgi-php,nginx-fcgi-ka-php,fastify-fcgi-php',
  rounds: 3,
  duration: 10,
};

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    'fcgi-starvation': { type: 'boolean', default: false },
    cases: { type: 'string' },
    fronts: { type: 'string' },
    rounds: { type: 'string' },
    duration: { type: 'string' },
    out: { type: 'string', default: DEFAULT_OUT },
    'no-profile': { type: 'boolean', default: false },
    'no-core': { type: 'boolean', default: false },
    'max-seconds': { type: 'string' },
  },
});

function list(value, known, what) {
  const names = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const n of names) {
    if (!known.includes(n)) {
      console.error(`unknown ${what} "${n}"; known: ${known.join(', ')}`);
      process.exit(2);
    }
  }
  return known.filter((n) => names.includes(n)); // canonical order
}
const starvation = args['fcgi-starvation'];
const caseNames = list(
  args.cases ?? (starvation ? STARVATION.cases : CASE_NAMES.join(',')),
  CASE_NAMES,
  'case',
);
/** The selected cases `name` runs: a front's `cases` restricts it to those. */
const casesOf = (name) => caseNames.filter((c) => FRONTS[name].cases?.includes(c) ?? true);
const requestedFronts = list(
  args.fronts ?? (starvation ? STARVATION.fronts : FRONT_NAMES.join(',')),
  FRONT_NAMES,
  'front',
);
// A front none of whose cases is selected is not started at all.
const frontNames = requestedFronts.filter((name) => casesOf(name).length > 0);
const idleFronts = requestedFronts.filter((name) => !frontNames.includes(name));
if (frontNames.length === 0) {
  console.error(`no selected front runs any of the cases ${caseNames.join(', ')}`);
  process.exit(2);
}
/**
 * Fronts that did not start or failed their check, and why (the others still run): e.g. the
 * FastCGI fronts of fastify-scgi while the scgi-core build does not accept `fastcgi://` yet.
 */
const skipped = new Map();
/** The fronts of a case, in canonical order: the order of its interleaved rounds. */
const frontsOf = (caseName) =>
  frontNames.filter((name) => !skipped.has(name) && casesOf(name).includes(caseName));
const positive = (value, fallback, name) => {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!(n > 0)) {
    console.error(`--${name} must be a positive number`);
    process.exit(2);
  }
  return n;
};
// The starvation scenario is about the FastCGI fronts alone: no microbenchmarks.
const coreWanted = !args['no-core'] && !starvation;
const plan = {
  rounds: Math.round(
    positive(args.rounds, args.quick ? 1 : starvation ? STARVATION.rounds : 4, 'rounds'),
  ),
  duration: positive(
    args.duration,
    args.quick ? 1 : starvation ? STARVATION.duration : 3,
    'duration',
  ),
  // 3 s: a Node front's JIT settles in about that much load (bench/README.md, Method).
  warmup: args.quick ? 0.5 : 3,
  settleMs: 250,
  requestTimeout: 10,
  baseline: frontNames.includes('nginx') ? 'nginx' : null,
};
// Per front and case: the warm-up, the rounds, and ~0.4 s around each run (settle, start, stop);
// per front ~1 s to start and check it.
const perPair = plan.warmup + plan.rounds * plan.duration + (plan.rounds + 1) * 0.4;
const pairs = caseNames.reduce((n, caseName) => n + frontsOf(caseName).length, 0);
const estimate =
  pairs * perPair +
  frontNames.length +
  (coreWanted ? (args.quick ? 5 : 20) : 0) +
  (args.quick ? 5 : 20);
const maxSeconds = positive(args['max-seconds'], Math.max(900, estimate * 1.5), 'max-seconds');
const out = resolve(args.out);
const outDir = dirname(out);
// A smoke run or a run written elsewhere never replaces the published figures.
const publish = out === DEFAULT_OUT && !args.quick;
mkdirSync(outDir, { recursive: true });
const profileWanted =
  !args['no-profile'] &&
  !args.quick &&
  caseNames.includes('tiny') &&
  frontNames.includes('fastify-unix');

const watchdog = setTimeout(() => {
  console.error(`\nbench: still running after ${maxSeconds} s; stopping everything.`);
  cleanupAll();
  process.exit(1);
}, maxSeconds * 1000);
watchdog.unref();

const backendKinds = backendsFor(frontNames);
for (const [bin, pkg, needed, find] of [
  [
    'uwsgi',
    'uwsgi-core uwsgi-plugin-python3',
    backendKinds.has('scgi') || backendKinds.has('http'),
  ],
  ['nginx', 'nginx-light', frontNames.some((name) => FRONTS[name].kind === 'nginx')],
  ['php-fpm', 'php-fpm', backendKinds.has('fpm'), findPhpFpm],
  ['python3', 'python3', backendKinds.has('pyfcgi') || backendKinds.has('pyhttp')],
]) {
  if (needed && (find ?? findBinary)(bin) === undefined) {
    console.error(`bench: ${bin} not found; install the Debian package(s) ${pkg}`);
    process.exit(1);
  }
}

const ticksPerSec = clockTicks();
const startedAt = Date.now();
const result = {
  ...machineFacts(),
  loadavgAtStart: loadavg().map(round3),
  loadavgAtEnd: null,
  versions: versions(ROOT),
  quick: args.quick,
  plan: {
    ...plan,
    cases: Object.fromEntries(caseNames.map((c) => [c, CASES[c]])),
    fronts: Object.fromEntries(frontNames.map((f) => [f, FRONTS[f].label])),
    frontCases: Object.fromEntries(frontNames.map((f) => [f, casesOf(f)])),
  },
  cases: [],
  skipped: {},
  targets: [],
  profile: null,
  core: null,
  warnings: [],
  seconds: 0,
};
const warn = (text) => {
  result.warnings.push(text);
  console.log(`  warning: ${text}`);
};

console.log(
  `scgi benchmark suite (${args.quick ? 'quick' : 'full'}): ${caseNames.join(', ')} x ${frontNames.join(', ')}; ` +
    `${plan.rounds} round(s) of ${plan.duration} s after a ${plan.warmup} s warm-up; about ${Math.round(estimate)} s`,
);
const limited = frontNames.filter((name) => casesOf(name).length < caseNames.length);
if (limited.length > 0)
  console.log(
    `only on ${[...new Set(limited.flatMap(casesOf))].join(', ')}: ${limited.join(', ')}`,
  );
if (idleFronts.length > 0)
  console.log(`not started (none of their cases selected): ${idleFronts.join(', ')}`);
console.log(
  `${result.cpu}, ${result.cores} cores, load average ${result.loadavgAtStart.join(' ')}, Node ${process.version}`,
);
if (result.loadavgAtStart[0] > result.cores / 2)
  warn(`the machine was busy at start (load ${result.loadavgAtStart[0]})`);

try {
  if (coreWanted) result.core = await runCore({ root: ROOT, outDir, quick: args.quick });
  await gateFastcgi();
  await runFronts();
} finally {
  cleanupAll();
}
result.skipped = Object.fromEntries(skipped);
result.targets = checkTargets(result);
result.loadavgAtEnd = loadavg().map(round3);
result.seconds = Math.round((Date.now() - startedAt) / 1000);
mkdirSync(outDir, { recursive: true });
writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);

console.log(
  `\n== summary (medians over rounds; x nginx = median of per-round ratios, min-max${baselineNote(result)}) ==`,
);
for (const c of result.cases) {
  console.log(`\n${c.name}: ${c.method} ${c.path}, ${c.connections} connections`);
  console.log(renderTable(SUMMARY_HEADER, summaryRows(c)));
}
if (skipped.size > 0) console.log('');
for (const [name, { reason }] of skipped) console.log(`skipped ${name}: ${reason}`);
if (result.targets.some((t) => t.value !== null)) {
  console.log(`\n${renderTable(TARGET_HEADER, targetRows(result.targets))}`);
}
if (result.profile) {
  console.log(
    `\nCPU profile of ${result.profile.front}, ${result.profile.case} (${result.profile.file}):`,
  );
  console.log(formatSummary(result.profile.summary));
}
const written = writeCharts(result, { outDir, publish });
console.log(
  `\nwritten: ${[out, ...written].map((p) => relative(ROOT, p) || p).join(', ')} (${result.seconds} s)`,
);
if (!publish)
  console.log('(docs/ left alone: only a full run to the default --out publishes there)');
// A front that failed to start or answer is a failed run (the others were still measured);
// one the scgi-core build cannot run yet (no fastcgi:// support) is not.
const failed = [...skipped].filter(([, s]) => s.failed).map(([name]) => name);
if (failed.length > 0) {
  console.error(`bench: ${failed.length} front(s) failed: ${failed.join(', ')}`);
  process.exit(1);
}
process.exit(0);

// ---- steps ------------------------------------------------------------------------------------

/**
 * The front whose figures of the same round `name`'s "x nginx" is taken against: its own
 * `baseline` (nginx-2w for the 2-worker fronts) if that front runs the case too, else nginx.
 */
function baselineOf(name, caseFronts) {
  const own = FRONTS[name].baseline;
  if (own && caseFronts.includes(own)) return own;
  // nginx in front of another backend than this front's (SCGI uWSGI against PHP-FPM) is no
  // baseline for a front that has one of its own.
  if (own && FRONTS[name].backend !== FRONTS.nginx.backend) return null;
  return plan.baseline;
}

/** "; x nginx-2w for nginx-2w, fastify-2w" when some fronts were compared with another baseline. */
function baselineNote(result) {
  const byBase = new Map();
  for (const c of result.cases) {
    for (const [name, front] of Object.entries(c.fronts)) {
      if (!front.baseline || front.baseline === plan.baseline) continue;
      byBase.set(front.baseline, new Set([...(byBase.get(front.baseline) ?? []), name]));
    }
  }
  return [...byBase].map(([base, names]) => `; x ${base} for ${[...names].join(', ')}`).join('');
}

/** Sum of utime + stime over `pids`, in seconds. */
function cpuSeconds(pids) {
  return pids.reduce((sum, pid) => sum + cpuTicks(pid), 0) / ticksPerSec;
}

/** Skips the fronts that need `fastcgi://` support when this scgi-core build lacks it. */
async function gateFastcgi() {
  const needing = frontNames.filter((name) => FRONTS[name].needsFastcgi);
  if (needing.length === 0) return;
  const reason = await fastcgiUnsupported();
  if (reason === undefined) return;
  for (const name of needing) {
    skipped.set(name, { reason, failed: false });
    warn(`${name} skipped: ${reason}`);
  }
}

async function runFronts() {
  const shared = {};
  const started = frontNames.filter((name) => !skipped.has(name));
  for (const kind of backendsFor(started)) {
    if (!BACKENDS[kind].perFront)
      shared[kind] = await BACKENDS[kind].start(makeTempDir(`scgi-b${kind}-`));
  }
  // The backends each front sees: the shared ones, and its own instance of a FastCGI backend.
  const backendsOf = {};
  for (const name of started) {
    const kind = FRONTS[name].backend;
    backendsOf[name] = BACKENDS[kind]?.perFront
      ? { ...shared, [kind]: await BACKENDS[kind].start(makeTempDir(`scgi-b${kind}-`)) }
      : shared;
  }
  const backendPids = (name) => {
    const backend = backendsOf[name][FRONTS[name].backend];
    return backend ? [backend.proc.pid, ...childPids(backend.proc.pid)] : [];
  };
  const load = await startLoadGenerator();
  const fronts = {};
  // A front that does not start or fails its check is reported and left out; the rest still run.
  const drop = async (name, error) => {
    const reason = failureReason(error);
    skipped.set(name, { reason, failed: true });
    warn(`${name} failed, left out: ${reason}`);
    await fronts[name]?.stop();
    delete fronts[name];
  };
  for (const name of started) {
    try {
      fronts[name] = await startFront(name, backendsOf[name], makeTempDir('scgi-bf-'));
    } catch (error) {
      await drop(name, error);
    }
  }
  for (const name of Object.keys(fronts)) {
    try {
      await checkFront(fronts[name], casesOf(name));
    } catch (error) {
      await drop(name, error);
    }
  }

  /** One timed load run against a front, with the CPU and peak RSS of every process around it. */
  const measureRun = async (name, caseName, round) => {
    const c = CASES[caseName];
    const front = fronts[name];
    const frontPids = front.pids();
    const backPids = backendPids(name);
    for (const pid of frontPids) resetPeakRss(pid);
    const before = [cpuSeconds(frontPids), cpuSeconds(backPids), cpuSeconds([load.pid])];
    const t0 = performance.now();
    const r = await load.run({
      url: `${front.url}${c.path}`,
      method: c.method,
      bodySize: c.bodySize,
      connections: c.connections,
      duration: round === null ? plan.warmup : plan.duration,
      timeout: plan.requestTimeout,
    });
    const wall = (performance.now() - t0) / 1000;
    const after = [cpuSeconds(frontPids), cpuSeconds(backPids), cpuSeconds([load.pid])];
    const pct = (i) => round3(((after[i] - before[i]) / wall) * 100);
    return {
      round,
      reqPerSec: round3(r.reqPerSec),
      mbPerSec: round3((c.bodySize > 0 ? r.uploadBytesPerSec : r.bytesPerSec) / 1e6),
      p50Ms: round3(r.latencyMs.p50),
      p99Ms: round3(r.latencyMs.p99),
      maxMs: round3(r.latencyMs.max),
      requests: r.requests,
      seconds: round3(r.seconds),
      errors: r.errors,
      timeouts: r.timeouts,
      unfinished: r.unfinished,
      non2xx: r.non2xx,
      cpu: { front: pct(0), backend: backPids.length ? pct(1) : null, load: pct(2) },
      frontCpuUsPerReq: r.requests > 0 ? round3(((after[0] - before[0]) * 1e6) / r.requests) : null,
      peakRssMb: round3(frontPids.reduce((kb, pid) => kb + peakRssKb(pid), 0) / 1024),
      vsBaseline: null,
      p99VsBaseline: null,
    };
  };

  for (const caseName of caseNames) {
    const c = CASES[caseName];
    const caseFronts = frontsOf(caseName);
    if (caseFronts.length === 0) continue; // all its fronts were left out
    console.log(`\n== ${caseName}: ${c.method} ${c.path}, ${c.connections} connections ==`);
    const caseResult = { name: caseName, ...c, fronts: {} };
    for (const name of caseFronts) {
      caseResult.fronts[name] = {
        label: FRONTS[name].label,
        baseline: baselineOf(name, caseFronts),
        rounds: [],
        summary: null,
      };
      const w = await measureRun(name, caseName, null); // warm-up: JIT, pools, page cache
      if (w.errors + w.timeouts + w.non2xx > 0)
        warn(`${caseName}/${name}: failures during warm-up`);
      await delay(plan.settleMs);
    }
    console.log(renderTable(ROUND_HEADER, [], { minWidths: ROUND_WIDTHS }).split('\n')[0]);
    for (let round = 0; round < plan.rounds; round++) {
      // A B C, then C B A: drift in machine speed during a case favours no front.
      const order = round % 2 === 0 ? caseFronts : [...caseFronts].reverse();
      const got = {};
      for (const name of order) {
        got[name] = await measureRun(name, caseName, round);
        await delay(plan.settleMs);
      }
      for (const name of caseFronts) {
        const r = got[name];
        const baseName = caseResult.fronts[name].baseline;
        const base = baseName ? got[baseName] : undefined;
        if (base) {
          r.vsBaseline = base[c.metric] > 0 ? round3(r[c.metric] / base[c.metric]) : null;
          r.p99VsBaseline = base.p99Ms > 0 ? round3(r.p99Ms / base.p99Ms) : null;
        }
        caseResult.fronts[name].rounds.push(r);
        console.log(
          renderTable(ROUND_HEADER, [roundRow(name, r)], { minWidths: ROUND_WIDTHS }).split(
            '\n',
          )[2],
        );
        if (r.errors + r.timeouts + r.non2xx > 0) {
          warn(
            `${caseName}/${name} round ${round + 1}: ${r.errors} errors, ${r.timeouts} timeouts, ${r.non2xx} non-2xx`,
          );
        }
        if (r.cpu.load >= 90)
          warn(
            `${caseName}/${name} round ${round + 1}: load generator at ${Math.round(r.cpu.load)}% CPU (may be the bottleneck)`,
          );
        if (r.requests === 0) warn(`${caseName}/${name} round ${round + 1}: no successful request`);
      }
    }
    for (const front of Object.values(caseResult.fronts))
      front.summary = summarize(front.rounds, c.metric);
    result.cases.push(caseResult);
  }

  if (profileWanted && !skipped.has('fastify-unix')) await profileFront(shared, load);
  await load.stop();
  for (const front of Object.values(fronts)) await front.stop();
  const instances = new Set(Object.values(backendsOf).flatMap((b) => Object.values(b)));
  for (const instance of instances) await instance.proc.stop();
}

/**
 * `node --cpu-prof` on a separate fastify-scgi front (so profiling overhead touches no measured
 * round): start, warm up, one tiny round, clean exit (the profile is written at exit).
 */
async function profileFront(backends, load) {
  console.log('\n== CPU profile: fastify-unix, tiny (node --cpu-prof) ==');
  const profDir = makeTempDir('scgi-bp-');
  const name = 'fastify-tiny.cpuprofile';
  const front = await startFront('fastify-unix', backends, makeTempDir('scgi-bf-'), {
    nodeFlags: ['--cpu-prof', '--cpu-prof-dir', profDir, '--cpu-prof-name', name],
  });
  const c = CASES.tiny;
  const options = {
    url: `${front.url}${c.path}`,
    method: c.method,
    bodySize: 0,
    connections: c.connections,
    timeout: plan.requestTimeout,
  };
  await load.run({ ...options, duration: plan.warmup });
  const r = await load.run({ ...options, duration: plan.duration });
  await front.stop();
  const src = join(profDir, name);
  if (!existsSync(src)) {
    warn(`no CPU profile was written (${front.proc.exitStatus})`);
    return;
  }
  const dest = join(outDir, name);
  copyFileSync(src, dest);
  const summary = summarizeProfile(JSON.parse(readFileSync(dest, 'utf8')), { top: 25, root: ROOT });
  result.profile = {
    front: 'fastify-unix',
    case: 'tiny',
    file: relative(ROOT, dest),
    reqPerSecWhileProfiled: round3(r.reqPerSec),
    summary,
  };
}
