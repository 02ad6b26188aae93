// Smoke test of the microbenchmark: `bench/core.mjs --quick` runs against the built package,
// checks its implementations agree and writes its JSON. No timing is asserted: a loaded CI
// machine may be arbitrarily slow, and the figures are for people, not for pass/fail.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { makeTempDir, removeTempDir } from './helpers/tmp.js';

const root = fileURLToPath(new URL('..', import.meta.url));

interface Figures {
  opsPerSec: number;
  usPerOp: number;
  samples: number[];
}
interface BenchCase {
  name: string;
  compared?: string;
  identical?: boolean;
  ratio?: number;
  results: { ours: Figures; naive?: Figures };
}

describe('bench/core.mjs', () => {
  const dir = makeTempDir('scgi-bench-');
  afterAll(() => removeTempDir(dir));

  it('runs --quick, exits 0 and writes positive figures for every case', async () => {
    // Written to a temp file so a smoke run never replaces the figures of a real run.
    const out = join(dir, 'core.json');
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['bench/core.mjs', '--quick', '--out', out],
      { cwd: root, encoding: 'utf8' },
    );
    expect(stdout).toContain('encodeScgiHead');

    const result = JSON.parse(readFileSync(out, 'utf8')) as { quick: boolean; cases: BenchCase[] };
    expect(result.quick).toBe(true);
    expect(result.cases.map((c) => c.name)).toEqual([
      'encodeScgiHead',
      'CgiResponseParser, 1 chunk',
      'CgiResponseParser, 3 chunks',
      'buildCgiEnv',
    ]);
    for (const c of result.cases) {
      for (const figures of Object.values(c.results)) {
        expect(figures.opsPerSec).toBeGreaterThan(0);
        expect(figures.usPerOp).toBeGreaterThan(0);
        expect(figures.samples.every((s) => s > 0)).toBe(true);
      }
      if (c.results.naive !== undefined) expect(c.ratio).toBeGreaterThan(0);
    }
    // The script compares outputs before timing and records it; ours and naive must agree.
    const encode = result.cases[0]!;
    expect(encode.compared).toBe('output bytes');
    expect(encode.identical).toBe(true);
    for (const c of result.cases.slice(1, 3)) expect(c.identical).toBe(true);
  });
});
