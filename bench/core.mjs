/**
 * Microbenchmark of scgi-core's per-request hot paths, against the BUILT package (run
 * `npx tsc -b` first): encodeScgiHead, CgiResponseParser (whole head and 3 chunks), buildCgiEnv.
 * Each is compared with a first-draft implementation (bench/lib/naive.mjs) in the same run,
 * after checking that both give the same result. Not a test: no figure is asserted.
 *
 *   node bench/core.mjs [--quick] [--out bench/results/core.json]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual, parseArgs } from 'node:util';
import { env, makeRequest, responseHead, splitInThree } from './lib/fixtures.mjs';
import { machineFacts, measure, round3 } from './lib/measure.mjs';
import { NaiveCgiParser, naiveEncodeScgiHead } from './lib/naive.mjs';

let core;
try {
  core = await import('scgi-core');
} catch (err) {
  console.error('Cannot load the built scgi-core: run `npx tsc -b` first.\n', err);
  process.exit(1);
}
const { buildCgiEnv, CgiResponseParser, encodeScgiHead, resolveCgiEnvOptions } = core;

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    out: { type: 'string', default: fileURLToPath(new URL('results/core.json', import.meta.url)) },
  },
});
const plan = args.quick
  ? { warmup: 2_000, rounds: 3, roundMs: 50 }
  : { warmup: 20_000, rounds: 7, roundMs: 300 };

/** Stops the run before any timing: a faster wrong answer is not worth measuring. */
function check(ok, what) {
  if (!ok) {
    console.error(`check failed: ${what}`);
    process.exit(1);
  }
  return ok;
}

const cases = [];

// 1. encodeScgiHead -------------------------------------------------------------------------
{
  const ours = encodeScgiHead(env);
  const naive = naiveEncodeScgiHead(env);
  const identical = check(ours.equals(naive), 'encodeScgiHead and the naive encoder differ');
  cases.push({
    name: 'encodeScgiHead',
    input: `${env.length} variables, ${ours.length} bytes encoded`,
    compared: 'output bytes',
    identical,
    results: measure(
      {
        ours: () => encodeScgiHead(env).length,
        naive: () => naiveEncodeScgiHead(env).length,
      },
      plan,
    ),
  });
}

// 2. CgiResponseParser ----------------------------------------------------------------------
{
  const chunks = splitInThree(responseHead);
  // One function per parser, not one taking the class: a shared call site would see both
  // classes and be slower for both.
  const parseOurs = (parts) => {
    const parser = new CgiResponseParser();
    let head = null;
    for (const part of parts) head = parser.push(part);
    return head;
  };
  const parseNaive = (parts) => {
    const parser = new NaiveCgiParser();
    let head = null;
    for (const part of parts) head = parser.push(part);
    return head;
  };
  // Compared as plain data: ours has a null-prototype headers object and extra fields.
  const view = (h) => ({
    statusCode: h.statusCode,
    statusMessage: h.statusMessage,
    headers: { ...h.headers },
  });
  for (const [label, parts] of [
    ['1 chunk', [responseHead]],
    ['3 chunks', chunks],
  ]) {
    const ours = view(parseOurs(parts));
    const naive = view(parseNaive(parts));
    const identical = check(
      isDeepStrictEqual(ours, naive) && ours.headers['set-cookie'].length === 3,
      `CgiResponseParser and the naive parser disagree (${label})`,
    );
    cases.push({
      name: `CgiResponseParser, ${label}`,
      input: `${Object.keys(ours.headers).length} fields + Status, ${responseHead.length} bytes, chunks of ${parts.map((p) => p.length).join('/')}`,
      compared: 'statusCode, statusMessage, headers',
      identical,
      results: measure(
        {
          ours: () => parseOurs(parts).statusCode,
          naive: () => parseNaive(parts).statusCode,
        },
        plan,
      ),
    });
  }
}

// 3. buildCgiEnv ----------------------------------------------------------------------------
{
  const req = makeRequest();
  const options = resolveCgiEnvOptions({ scriptName: '/app' });
  const built = buildCgiEnv(req, options);
  // Sanity only: the fake request must be read as a real one would be.
  const got = Object.fromEntries(built.map(([name, value]) => [name, String(value)]));
  check(
    got.PATH_INFO === '/products/search' &&
      got.REMOTE_ADDR === '203.0.113.42' &&
      got.HTTP_COOKIE === req.headers.cookie &&
      !('HTTP_CONNECTION' in got),
    'buildCgiEnv did not read the fake request as expected',
  );
  cases.push({
    name: 'buildCgiEnv',
    input: `GET, ${req.rawHeaders.length / 2} raw headers -> ${built.length} variables`,
    results: measure({ ours: () => buildCgiEnv(req, options).length }, plan),
  });
}

// Report ------------------------------------------------------------------------------------
for (const c of cases) {
  const { ours, naive } = c.results;
  if (naive !== undefined) c.ratio = round3(ours.opsPerSec / naive.opsPerSec);
}

const fmt = (n) => Math.round(n).toLocaleString('en-US');
const rows = [['case', 'impl', 'ops/s', 'µs/op', 'spread', 'ours/naive']];
for (const c of cases) {
  for (const [impl, r] of Object.entries(c.results)) {
    rows.push([
      impl === 'ours' ? c.name : '',
      impl,
      fmt(r.opsPerSec),
      r.usPerOp.toFixed(3),
      `${(r.spread * 100).toFixed(1)}%`,
      impl === 'ours' && c.ratio !== undefined ? `${c.ratio.toFixed(2)}x` : '',
    ]);
  }
}
const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
const right = new Set([2, 3, 4, 5]);
const line = (r) =>
  r.map((cell, i) => (right.has(i) ? cell.padStart(widths[i]) : cell.padEnd(widths[i]))).join('  ');
console.log(
  `scgi-core microbenchmark (${args.quick ? 'quick' : 'full'}: ${plan.rounds} rounds of ${plan.roundMs} ms, median)`,
);
console.log(line(rows[0]));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const r of rows.slice(1)) console.log(line(r));

const result = {
  ...machineFacts(),
  loadavg: loadavg().map(round3),
  quick: args.quick,
  plan,
  cases,
};
const out = resolve(args.out);
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
console.log(`\nwritten to ${out}`);
