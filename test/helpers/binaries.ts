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
const verdicts = new Map<string, boolean>();

/** Absolute path of an executable named `name` in PATH or the sbin directories, if any. */
export function findBinary(name: string): string | undefined {
  if (found.has(name)) return found.get(name);
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

/**
 * True when `name` is usable. When it is not: throws if `process.env.CI` is set, else prints one
 * skip line and returns false. Use as `describe.skipIf(!requireBinary('nginx', 'nginx-light'))`.
 * `check` adds a test beyond presence (e.g. that a plugin loads).
 */
export function requireBinary(
  name: string,
  installHint: string,
  check?: (path: string) => boolean,
): boolean {
  const cached = verdicts.get(name);
  if (cached !== undefined) return cached;
  const path = findBinary(name);
  const ok = path !== undefined && (check === undefined || check(path));
  if (!ok) {
    const what = path === undefined ? `${name} not found in PATH or /usr/sbin` : `${name} unusable`;
    const message = `${what}: install the Debian package(s) ${installHint} (apt-get install ${installHint})`;
    if (process.env.CI) throw new Error(`${message}; CI must run every integration suite`);
    console.warn(`skipping ${name} tests: ${message}`);
  }
  verdicts.set(name, ok);
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
