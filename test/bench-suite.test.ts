// Smoke tests of the benchmark suite: `bench/run.mjs --quick` starts uWSGI, a fastify-scgi front
// and nginx, each also on 2 workers (nginx's master + 2 workers, fastify-scgi under node:cluster),
// and the SCGI floors under Node's http and under a Fastify route (bench/lib/floor.mjs),
// loads each for a second and writes its JSON. It checks that the suite runs, that every front
// answered and that the 2-worker fastify-scgi is compared with nginx on 2 workers; never a timing
// (a loaded CI machine may be arbitrarily slow). The FastCGI smoke does the same with PHP-FPM and
// the Python FastCGI server behind nginx fastcgi_pass (with and without keep-alive) and
// fastify-scgi, and reply-from in front of the same Python app over HTTP.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ScgiProxy } from 'scgi-core';
import { afterAll, describe, expect, it } from 'vitest';
import { has } from './helpers/binaries.js';
import { makeTempDir, removeTempDir } from './helpers/tmp.js';

const root = fileURLToPath(new URL('..', import.meta.url));

interface Round {
  reqPerSec: number;
  vsBaseline: number | null;
  requests: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  cpu: { front: number; backend: number | null; load: number };
}
interface SuiteResult {
  quick: boolean;
  skipped: Record<string, { reason: string; failed: boolean }>;
  targets: Array<{ target: string; value: number | null }>;
  cases: Array<{
    name: string;
    fronts: Record<
      string,
      {
        baseline: string | null;
        rounds: Round[];
        summary: { reqPerSec: number; p99Ms: number };
      }
    >;
  }>;
}

describe.skipIf(!has('uwsgi') || !has('nginx'))('bench/run.mjs', () => {
  const dir = makeTempDir('scgi-bs-');
  afterAll(() => removeTempDir(dir));

  it('runs --quick for fastify-unix and nginx, on 1 and 2 workers, and the two SCGI floors, exits 0 and records positive req/s for each', async () => {
    // Written to a temp dir, so a smoke run never replaces the figures of a real run.
    const out = join(dir, 'latest.json');
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        'bench/run.mjs',
        '--quick',
        '--cases',
        'tiny',
        '--fronts',
        'fastify-unix,nginx,nginx-2w,fastify-2w,node-floor,fastify-floor',
        '--out',
        out,
      ],
      { cwd: root, encoding: 'utf8', timeout: 150_000, maxBuffer: 4 * 1024 * 1024 },
    );
    expect(stdout).toContain('fastify-unix');

    const result = JSON.parse(readFileSync(out, 'utf8')) as SuiteResult;
    expect(result.quick).toBe(true);
    expect(result.cases.map((c) => c.name)).toEqual(['tiny']);
    const fronts = result.cases[0]!.fronts;
    expect(Object.keys(fronts)).toEqual([
      'fastify-unix',
      'nginx',
      'node-floor',
      'fastify-floor',
      'nginx-2w',
      'fastify-2w',
    ]);
    for (const front of Object.values(fronts)) {
      expect(front.rounds).toHaveLength(1);
      const round = front.rounds[0]!;
      expect(round.reqPerSec).toBeGreaterThan(0);
      expect(round.requests).toBeGreaterThan(0);
      // Every answer was a 200: a front that fails fast must not pass for a fast one.
      expect(round.non2xx).toBe(0);
      expect(front.summary.reqPerSec).toBeGreaterThan(0);
    }
    // "x nginx" of the 2-worker fronts is taken against nginx on 2 workers, of the same round.
    expect(fronts['fastify-unix']!.baseline).toBe('nginx');
    expect(fronts['nginx-2w']!.baseline).toBe('nginx-2w');
    expect(fronts['fastify-2w']!.baseline).toBe('nginx-2w');
    expect(fronts['nginx-2w']!.rounds[0]!.vsBaseline).toBe(1);
    const [w2, n2] = [fronts['fastify-2w']!.rounds[0]!, fronts['nginx-2w']!.rounds[0]!];
    expect(w2.vsBaseline).toBeCloseTo(w2.reqPerSec / n2.reqPerSec, 2);
    expect(existsSync(join(dir, 'chart.svg'))).toBe(true);
  }, 180_000);
});

/** Whether scgi-core accepts a fastcgi:// upstream yet (the suite asks its build the same way). */
function acceptsFastcgi(): boolean {
  try {
    void new ScgiProxy({ upstream: 'fastcgi://unix:/nonexistent/fpm.sock' }).close(0);
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(!has('nginx') || !has('php-fpm') || !has('python3'))(
  'bench/run.mjs, FastCGI fronts',
  () => {
    const dir = makeTempDir('scgi-bsf-');
    afterAll(() => removeTempDir(dir));

    it('runs --quick for nginx fastcgi_pass with and without keep-alive, fastify-scgi over FastCGI and reply-from on the same Python app', async () => {
      const out = join(dir, 'latest.json');
      const names = [
        'nginx-fcgi-php',
        'nginx-fcgi-ka-php',
        'fastify-fcgi-php',
        'node-floor-fcgi-php',
        'nginx-fcgi-ka-py',
        'fastify-fcgi-py',
        'reply-from-py',
      ];
      await promisify(execFile)(
        process.execPath,
        [
          'bench/run.mjs',
          '--quick',
          '--no-core',
          '--cases',
          'tiny',
          '--fronts',
          names.join(','),
          '--out',
          out,
        ],
        { cwd: root, encoding: 'utf8', timeout: 150_000, maxBuffer: 4 * 1024 * 1024 },
      );

      const result = JSON.parse(readFileSync(out, 'utf8')) as SuiteResult;
      const fronts = result.cases[0]!.fronts;
      // fastify-scgi's FastCGI fronts run once scgi-core takes fastcgi:// upstreams; until then
      // the suite leaves them out, saying why, and still measures the others.
      const fastify = ['fastify-fcgi-php', 'fastify-fcgi-py'];
      if (acceptsFastcgi()) {
        expect(result.skipped).toEqual({});
        expect(Object.keys(fronts)).toEqual(names);
      } else {
        for (const name of fastify) {
          expect(result.skipped[name]!.failed).toBe(false);
          expect(result.skipped[name]!.reason).toMatch(/does not accept a fastcgi:\/\/ upstream/);
        }
        expect(Object.keys(fronts)).toEqual(names.filter((n) => !fastify.includes(n)));
      }
      for (const front of Object.values(fronts)) {
        const round = front.rounds[0]!;
        expect(round.requests).toBeGreaterThan(0);
        expect(round.non2xx + round.errors).toBe(0);
        expect(front.summary.p99Ms).toBeGreaterThan(0);
      }
      // "x nginx" of every FastCGI front is against nginx with keep-alive on the same backend.
      for (const [name, front] of Object.entries(fronts)) {
        expect(front.baseline).toBe(
          name.endsWith('-php') ? 'nginx-fcgi-ka-php' : 'nginx-fcgi-ka-py',
        );
      }
      const [noKa, ka] = [
        fronts['nginx-fcgi-php']!.rounds[0]!,
        fronts['nginx-fcgi-ka-php']!.rounds[0]!,
      ];
      expect(noKa.vsBaseline).toBeCloseTo(noKa.reqPerSec / ka.reqPerSec, 2);
      const vsReplyFrom = result.targets.find((t) =>
        t.target.startsWith(
          'fastify-scgi FastCGI >= 1.5x reply-from req/s (same Python app, tiny)',
        ),
      );
      expect(vsReplyFrom?.value === null).toBe(!acceptsFastcgi());
    }, 180_000);
  },
);
