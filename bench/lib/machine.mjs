/**
 * What the suite records about the machine and the software it measured, and the scgi-core
 * microbenchmarks (bench/core.mjs), run as a child process and folded into the suite's JSON.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { findBinary } from './backends.mjs';

/** Versions of the binaries and npm packages taking part. */
export function versions(root) {
  const pkg = (name) => {
    try {
      return JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8'))
        .version;
    } catch {
      return null;
    }
  };
  const first = (cmd, argv) => {
    try {
      const run = spawnSync(cmd, argv, { encoding: 'utf8', timeout: 5000 });
      return `${run.stdout}${run.stderr}`.trim().split('\n')[0] || null;
    } catch {
      return null;
    }
  };
  return {
    uwsgi: first(findBinary('uwsgi') ?? 'uwsgi', ['--version']),
    nginx: first(findBinary('nginx') ?? 'nginx', ['-v']),
    python: first('python3', ['--version']),
    fastify: pkg('fastify'),
    express: pkg('express'),
    '@fastify/reply-from': pkg('@fastify/reply-from'),
    undici: pkg('undici'),
    autocannon: pkg('autocannon'),
    // What was measured: the commit, and whether the packages differed from it (uncommitted work).
    commit: first('git', ['-C', root, 'rev-parse', '--short', 'HEAD']),
    packagesDirty:
      first('git', ['-C', root, 'status', '--porcelain', '--', 'packages/*/src']) !== null,
  };
}

/** bench/core.mjs in its own process, before any server starts (nothing else is running). */
export async function runCore({ root, outDir, quick }) {
  console.log('\n== scgi-core microbenchmarks (bench/core.mjs) ==');
  const coreOut = join(outDir, 'core.json');
  mkdirSync(outDir, { recursive: true });
  execFileSync(
    process.execPath,
    [join(root, 'bench/core.mjs'), ...(quick ? ['--quick'] : []), '--out', coreOut],
    { stdio: 'inherit', timeout: 120_000 },
  );
  const core = JSON.parse(readFileSync(coreOut, 'utf8'));
  return {
    file: relative(root, coreOut),
    plan: core.plan,
    cases: core.cases.map((c) => ({
      name: c.name,
      input: c.input,
      opsPerSec: c.results.ours.opsPerSec,
      usPerOp: c.results.ours.usPerOp,
      naiveOpsPerSec: c.results.naive?.opsPerSec ?? null,
      ratio: c.ratio ?? null,
      spread: c.results.ours.spread,
    })),
  };
}
