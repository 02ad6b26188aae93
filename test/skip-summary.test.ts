/**
 * The end of a test run on a machine without the Debian packages (issue 15): vitest's own
 * summary, then one line saying how many tests skipped and which packages would run them
 * (test/helpers/skip-summary.ts); and under CI=true a missing binary still fails the run.
 *
 * Runs vitest itself on a few real test files, with SCGI_TEST_HIDE making
 * test/helpers/binaries.ts answer "absent" for binaries that are installed here.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DEBIAN_PACKAGES } from './helpers/binaries.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const VITEST = fileURLToPath(new URL('../node_modules/vitest/vitest.mjs', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `vitest run files` in a child, without this run's vitest and CI variables. */
function vitest(files: string[], env: Record<string, string>): Promise<Run> {
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('VITEST') && k !== 'CI'),
  );
  const child = spawn(process.execPath, [VITEST, 'run', ...files], {
    cwd: root,
    env: { ...base, NO_COLOR: '1', FORCE_COLOR: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const lines = (text: string) =>
  text
    .split('\n')
    .map((l) => l.trimEnd())
    .filter(Boolean);

/** vitest's own "Tests  95 passed | 23 skipped (118)" line and its skipped count. */
function vitestSummary(stdout: string): { index: number; skipped: number } {
  const all = lines(stdout);
  const index = all.findIndex((l) => /^\s*Tests\s+.*\(\d+\)$/.test(l));
  expect(index, stdout).toBeGreaterThanOrEqual(0);
  const skipped = Number(/(\d+) skipped/.exec(all[index]!)?.[1] ?? 0);
  return { index, skipped };
}

const FILES = [
  'test/uwsgi-backend.test.ts',
  'test/nginx-peer.test.ts',
  'test/fastcgi-php.test.ts',
  'test/error-docs.test.ts',
];

describe('the end-of-run skip line', () => {
  it('follows vitest summary: the skipped count and the packages of the missing binaries', async () => {
    // fastcgi-php.test.ts prints two skip lines (php-fpm, php-cgi): both packages count.
    const run = await vitest(FILES, { SCGI_TEST_HIDE: 'uwsgi,nginx,php-fpm,php-cgi' });
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const { index, skipped } = vitestSummary(run.stdout);
    expect(skipped).toBeGreaterThan(0);
    const out = lines(run.stdout);
    const packages = ['uwsgi', 'nginx', 'php-fpm', 'php-cgi'].map((b) => DEBIAN_PACKAGES[b]);
    // The last line, after vitest's summary (which CI reads, left as it is).
    expect(out.at(-1)).toBe(`skipped ${skipped} tests: install ${packages.join(' ')} to run them`);
    expect(out.length - 1).toBeGreaterThan(index);
    // Once: not per file.
    expect(out.filter((l) => l.startsWith('skipped ')).length).toBe(1);
  });

  it('names only the packages of the files that skipped', async () => {
    const run = await vitest(['test/uwsgi-backend.test.ts', 'test/error-docs.test.ts'], {
      SCGI_TEST_HIDE: 'uwsgi,nginx,php-fpm',
    });
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const { skipped } = vitestSummary(run.stdout);
    expect(lines(run.stdout).at(-1)).toBe(
      `skipped ${skipped} tests: install ${DEBIAN_PACKAGES.uwsgi} to run them`,
    );
  });

  it('is absent when nothing skipped', async () => {
    const run = await vitest(['test/error-docs.test.ts'], { SCGI_TEST_HIDE: 'uwsgi' });
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(vitestSummary(run.stdout).skipped).toBe(0);
    expect(run.stdout).not.toMatch(/^skipped /m);
  });

  it('under CI=true a missing binary fails the run instead of skipping', async () => {
    const run = await vitest(['test/uwsgi-backend.test.ts'], {
      SCGI_TEST_HIDE: 'uwsgi',
      CI: 'true',
    });
    expect(run.code).not.toBe(0);
    expect(run.stdout + run.stderr).toContain('CI must run every integration suite');
    expect(run.stdout).not.toMatch(/^skipped /m);
  });
});
