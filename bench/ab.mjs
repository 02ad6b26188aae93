/**
 * A/B of the engine: the same front (bench/fronts/fastify.mjs or express.mjs) built from another
 * git revision and from the work tree, side by side in one run against the same uWSGI, their
 * timed runs alternated (A B, then B A) so drift in machine speed favours neither. For checking
 * that a change to the hot path really helps: on a noisy machine only such paired figures do.
 *
 *   npx tsc -b && node bench/ab.mjs --base 07bec9b [--front fastify|express] [--path /tiny]
 *                                   [--rounds 8] [--duration 2] [--connections 32]
 *                                   [--backend scgi|fcgi-php|fcgi-py]
 *
 * `--path /upload` POSTs the suite's 16 MiB upload body (use `--connections 8`, as the suite).
 * `--backend`: uWSGI over SCGI (default), or over `fastcgi://` PHP-FPM (4 children) or the
 * Python FastCGI server, with maxConnections = the backend's workers as the suite's FastCGI
 * fronts; then each side gets a backend of its own (a kept connection holds a worker, so one
 * side's idle connections would hold the other's workers). Both trees must accept `fastcgi://`.
 *
 * The base revision is checked out with `git worktree` into a temp dir and built there with the
 * work tree's TypeScript; its node_modules links to the work tree's, except the three workspace
 * packages, which link to its own. Both fronts run the work tree's copy of the front script, so
 * only the packages differ. Prints, per side, the median req/s, front CPU µs per request and
 * p99, then B/A ratios; everything (worktree, processes) is removed at the end.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startUwsgi } from './lib/backends.mjs';
import { CASES } from './lib/cases.mjs';
import { startPhpFpm, startPythonFastcgi } from './lib/fastcgi.mjs';
import { fastcgiArgs, startNodeFront } from './lib/fronts.mjs';
import { startLoadGenerator } from './lib/loadgen.mjs';
import { cleanupAll, clockTicks, cpuTicks, makeTempDir } from './lib/procs.mjs';
import { median } from './lib/report.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const WORKSPACES = {
  'scgi-core': 'scgi-core',
  'fastify-scgi': 'fastify-plugin',
  'express-scgi': 'express-mw',
};

const { values: args } = parseArgs({
  options: {
    base: { type: 'string' },
    front: { type: 'string', default: 'fastify' },
    path: { type: 'string', default: '/tiny' },
    rounds: { type: 'string', default: '8' },
    duration: { type: 'string', default: '2' },
    connections: { type: 'string', default: '32' },
    backend: { type: 'string', default: 'scgi' },
  },
});
/** Per `--backend`: a function starting one, and the front arguments for a running one. */
const BACKENDS = {
  scgi: {
    start: (dir) => startUwsgi(dir, 'scgi'),
    args: (b) => ['--upstream', `unix:${b.sockets.unix}`],
  },
  'fcgi-php': { start: (dir) => startPhpFpm(dir), args: (b) => fastcgiArgs(b) },
  'fcgi-py': { start: (dir) => startPythonFastcgi(dir), args: (b) => fastcgiArgs(b) },
};
if (!args.base || !['fastify', 'express'].includes(args.front) || !BACKENDS[args.backend]) {
  console.error(
    'usage: node bench/ab.mjs --base REV [--front fastify|express] [--path /tiny] [--backend scgi|fcgi-php|fcgi-py]',
  );
  process.exit(2);
}
const rounds = Number(args.rounds);
const upload = args.path === CASES.upload.path ? CASES.upload : null;
const duration = Number(args.duration);

/** The base revision as a built tree of its own, sharing the work tree's dependencies. */
function buildBase(rev) {
  const dir = join(makeTempDir('scgi-ab-'), 'tree');
  const git = (...a) => execFileSync('git', a, { cwd: ROOT, stdio: 'pipe' }).toString().trim();
  const sha = git('rev-parse', '--verify', `${rev}^{commit}`);
  git('worktree', 'add', '--detach', dir, sha);
  process.once('exit', () => {
    try {
      git('worktree', 'remove', '--force', dir);
    } catch {
      // already gone with the temp dir: prune drops the record
      git('worktree', 'prune');
    }
  });
  const modules = join(dir, 'node_modules');
  mkdirSync(modules);
  for (const entry of readdirSync(join(ROOT, 'node_modules'))) {
    const own = WORKSPACES[entry];
    symlinkSync(
      own ? join(dir, 'packages', own) : join(ROOT, 'node_modules', entry),
      join(modules, entry),
    );
  }
  execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-b'], {
    cwd: dir,
    stdio: 'inherit',
  });
  return { dir, sha };
}

/** Starts the front script copied into `tree` (so it resolves that tree's packages). */
async function startSide(name, tree, frontArgs) {
  const fronts = join(tree, 'bench/fronts');
  if (tree !== ROOT) {
    mkdirSync(fronts, { recursive: true });
    for (const f of [`${args.front}.mjs`, 'lib.mjs'])
      copyFileSync(join(ROOT, 'bench/fronts', f), join(fronts, f));
  }
  const { proc, port } = await startNodeFront(
    name,
    [join(fronts, `${args.front}.mjs`), ...frontArgs],
    tree,
  );
  return { name, proc, url: `http://127.0.0.1:${port}${args.path}` };
}

try {
  const base = buildBase(args.base);
  const kind = BACKENDS[args.backend];
  // uWSGI over SCGI is shared (no connection outlives a request); a FastCGI backend is per side.
  const shared = args.backend === 'scgi' ? await kind.start(makeTempDir('scgi-abu-')) : null;
  const backendFor = async () => shared ?? (await kind.start(makeTempDir('scgi-abu-')));
  const sides = [
    await startSide(`A ${base.sha.slice(0, 7)}`, base.dir, kind.args(await backendFor())),
    await startSide('B work tree', ROOT, kind.args(await backendFor())),
  ];
  const load = await startLoadGenerator();
  const ticks = clockTicks();
  const run = async (side, seconds) => {
    const before = cpuTicks(side.proc.pid);
    const r = await load.run({
      url: side.url,
      // The upload case POSTs the suite's 16 MiB body; every other path is a GET.
      method: upload === null ? 'GET' : upload.method,
      bodySize: upload === null ? 0 : upload.bodySize,
      connections: Number(args.connections),
      duration: seconds,
      timeout: 10,
    });
    const cpuUs = ((cpuTicks(side.proc.pid) - before) / ticks) * 1e6;
    if (r.errors + r.timeouts + r.non2xx > 0) throw new Error(`${side.name}: failed requests`);
    return {
      reqPerSec: r.reqPerSec,
      usPerReq: r.requests > 0 ? cpuUs / r.requests : null,
      p99: r.latencyMs.p99,
    };
  };
  for (const side of sides) await run(side, 3); // warm-up: the JIT settles (bench/README.md, Method)
  const got = sides.map(() => []);
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? [0, 1] : [1, 0];
    for (const i of order) got[i].push(await run(sides[i], duration));
  }
  console.log(
    `${args.front} front over ${args.backend}, ${upload === null ? 'GET' : upload.method} ${args.path}, ${args.connections} connections, ${rounds} x ${duration} s alternated`,
  );
  const med = (i, key) => median(got[i].map((r) => r[key]));
  for (const [i, side] of sides.entries()) {
    console.log(
      `${side.name.padEnd(14)} ${Math.round(med(i, 'reqPerSec')).toLocaleString('en-US').padStart(7)} req/s  ` +
        `${med(i, 'usPerReq').toFixed(0).padStart(5)} µs CPU/req  p99 ${med(i, 'p99').toFixed(2)} ms  ` +
        `[µs/req per round: ${got[i].map((r) => r.usPerReq.toFixed(0)).join(' ')}]`,
    );
  }
  const ratio = (key) => median(got[1].map((r, k) => r[key] / got[0][k][key]));
  console.log(
    `B/A: req/s ${ratio('reqPerSec').toFixed(2)}x, CPU per request ${ratio('usPerReq').toFixed(2)}x (median of per-round ratios)`,
  );
  await load.stop();
} finally {
  cleanupAll();
}
process.exit(0);
