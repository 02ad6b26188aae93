/**
 * Finds the real backends and peers the integration tests run (uWSGI, nginx, python3).
 *
 * Locally a missing binary skips its suite with a one-line note naming the Debian package; in CI
 * (`CI` set, as `.ci/run` does) it throws, so a broken install fails the build instead of
 * silently skipping the tests that matter most.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, readdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** nginx lives in /usr/sbin, which is often missing from a non-root PATH. */
const EXTRA_DIRS = ['/usr/sbin', '/sbin', '/usr/local/sbin'];

/** The Debian packages `.ci/run` installs, by binary name. */
export const DEBIAN_PACKAGES: Readonly<Record<string, string>> = Object.freeze({
  uwsgi: 'uwsgi-core uwsgi-plugin-python3',
  nginx: 'nginx-light',
  python3: 'python3',
  'php-fpm': 'php-fpm',
  'php-cgi': 'php-cgi',
});

const found = new Map<string, string | undefined>();

/**
 * Binaries to treat as absent: `SCGI_TEST_HIDE=uwsgi,nginx,php-fpm,php-cgi` simulates a machine
 * without the Debian packages (to count what skips there, and for test/skip-summary.test.ts)
 * without uninstalling anything.
 */
function hidden(name: string): boolean {
  return (process.env.SCGI_TEST_HIDE ?? '')
    .split(',')
    .map((n) => n.trim())
    .includes(name);
}
const verdicts = new Map<string, boolean>();
/** Binaries whose skip line this test file has printed. */
const warned = new Set<string>();

/** Absolute path of an executable named `name` in PATH or the sbin directories, if any. */
export function findBinary(name: string): string | undefined {
  if (found.has(name)) return found.get(name);
  if (hidden(name)) {
    found.set(name, undefined);
    return undefined;
  }
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...EXTRA_DIRS];
  let hit: string | undefined;
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      hit = candidate;
      break;
    } catch {
      // not here
    }
  }
  // Debian names PHP-FPM after its version only (/usr/sbin/php-fpm8.2): take the highest.
  if (hit === undefined && name === 'php-fpm') {
    for (const dir of dirs) {
      let names: string[] = [];
      try {
        names = readdirSync(dir).filter((n) => /^php-fpm\d+(\.\d+)?$/.test(n));
      } catch {
        continue;
      }
      const best = names.sort((a, b) => a.localeCompare(b, 'en', { numeric: true })).at(-1);
      if (best !== undefined) {
        hit = join(dir, best);
        break;
      }
    }
  }
  found.set(name, hit);
  return hit;
}

/** The line a skipped suite prints; test/helpers/skip-summary.ts reads the packages back. */
export function skipLine(name: string, reason: string, packages: string): string {
  return `skipping ${name} tests: ${reason}: install the Debian package(s) ${packages} (apt-get install ${packages})`;
}

/**
 * The packages named by the `skipLine` lines in `text`, if it holds any (vitest may hand a
 * reporter several console lines of a file as one log).
 */
export function packagesOfSkipLine(text: string): string[] | undefined {
  const matches = [...text.matchAll(/^skipping \S+ tests: .*\(apt-get install ([^)]+)\)\s*$/gm)];
  if (matches.length === 0) return undefined;
  return matches.flatMap((m) => m[1]!.split(/\s+/).filter(Boolean));
}

/**
 * Whether `name` is usable; throws when it is not and `process.env.CI` is set. Without CI the
 * reason is returned for the caller to print, or not.
 */
function verdict(
  name: string,
  installHint: string,
  check?: (path: string) => boolean,
): { ok: boolean; line: string } {
  const path = findBinary(name);
  const ok = path !== undefined && (check === undefined || check(path));
  const what = path === undefined ? `${name} not found in PATH or /usr/sbin` : `${name} unusable`;
  const line = skipLine(name, what, installHint);
  if (!ok && process.env.CI) {
    throw new Error(
      `${line.replace(/^skipping \S+ tests: /, '')}; CI must run every integration suite`,
    );
  }
  return { ok, line };
}

/**
 * True when `name` is usable. When it is not: throws if `process.env.CI` is set, else prints one
 * skip line (once per test file) and returns false. Use as
 * `describe.skipIf(!requireBinary('nginx', 'nginx-light'))`. `check` adds a test beyond presence
 * (e.g. that a plugin loads).
 */
export function requireBinary(
  name: string,
  installHint: string,
  check?: (path: string) => boolean,
): boolean {
  const cached = verdicts.get(name);
  if (cached !== undefined && warned.has(name)) return cached;
  const { ok, line } = verdict(name, installHint, check);
  if (!ok) console.warn(line);
  verdicts.set(name, ok);
  warned.add(name);
  return ok;
}

/** uWSGI is only useful with its python3 plugin, a separate Debian package. */
function uwsgiHasPython3(path: string): boolean {
  const run = spawnSync(path, ['--need-plugin', 'python3', '--version'], {
    stdio: 'ignore',
    timeout: 10_000,
  });
  return run.status === 0;
}

/** `requireBinary` with the package names of `.ci/run`; `uwsgi` also needs its python3 plugin. */
export function has(name: 'uwsgi' | 'nginx' | 'python3' | 'php-fpm' | 'php-cgi'): boolean {
  return requireBinary(
    name,
    DEBIAN_PACKAGES[name] ?? name,
    name === 'uwsgi' ? uwsgiHasPython3 : undefined,
  );
}

/**
 * `has` for a suite that runs with a stand-in backend instead of skipping (the corpus and pool
 * tests without uWSGI): the same verdict, failing under CI=true, but no skip line, since
 * nothing is skipped.
 */
export function installed(name: 'uwsgi' | 'nginx' | 'python3' | 'php-fpm' | 'php-cgi'): boolean {
  const cached = verdicts.get(name);
  if (cached !== undefined) return cached;
  const { ok } = verdict(
    name,
    DEBIAN_PACKAGES[name] ?? name,
    name === 'uwsgi' ? uwsgiHasPython3 : undefined,
  );
  verdicts.set(name, ok);
  return ok;
}
