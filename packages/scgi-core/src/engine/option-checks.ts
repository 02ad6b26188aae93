/** Validation shared by every option resolver (proxy, health checks, spawned workers). */
import bytes from 'bytes';
import { closest, distance } from 'fastest-levenshtein';
import { InvalidOptionError } from '../errors.js';

/**
 * An integer option: `fallback` when undefined (so an explicit 0 survives where `min` allows
 * it), else a safe integer >= `min`. Throws `SCGI_ERR_INVALID_OPTION` naming the option.
 */
export function intOption(name: string, value: unknown, fallback: number, min = 0): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new InvalidOptionError(name, `must be an integer >= ${min}, got ${String(value)}`);
  }
  return value;
}

const SIZE = /^\s*\d+(?:\.\d+)?\s*(?:b|kb|mb|gb|tb|pb)?\s*$/i;

/**
 * A size in bytes: an integer as `intOption`, or a string as body-parser reads its `limit`
 * (`'10mb'`, `'512kb'`, `'1gb'`, units of 1024, with the `bytes` package body-parser uses), so a
 * size means the same here and in the body parser next to the proxy.
 */
export function sizeOption(name: string, value: unknown, fallback: number, min = 0): number {
  if (typeof value !== 'string') return intOption(name, value, fallback, min);
  // `bytes` reads whatever parseInt takes ('10 parsecs' is 10 bytes): only its own forms pass.
  const n = SIZE.test(value) ? bytes.parse(value) : null;
  if (n === null || !Number.isSafeInteger(n) || n < min) {
    throw new InvalidOptionError(
      name,
      `must be a size >= ${min} bytes (a number, or a string such as "10mb"), got ${JSON.stringify(value)}`,
    );
  }
  return n;
}

/**
 * Refuses keys that are not options. A misspelt key would otherwise be ignored and its default
 * used in silence (`uptream`, `idleTimout`), which is the kind of bug found only in production.
 * The error names the key and the closest known one. `where` prefixes nested keys
 * (`healthCheck.intervall`).
 */
export function checkKnownKeys(options: object, known: ReadonlySet<string>, where?: string): void {
  for (const key of Object.keys(options)) {
    if (known.has(key)) continue;
    const name = where === undefined ? key : `${where}.${key}`;
    throw new InvalidOptionError(name, `is not a known option${suggestion(key, known)}`);
  }
}

/** `; did you mean "upstream"?` when a known key is a few edits away, else the list of keys. */
function suggestion(key: string, known: ReadonlySet<string>): string {
  const names = [...known];
  const guess = closest(
    key.toLowerCase(),
    names.map((n) => n.toLowerCase()),
  );
  const index = names.findIndex((n) => n.toLowerCase() === guess);
  // A third of the key's length in edits, at least two: `uptream` -> `upstream`,
  // `idleTimout` -> `idleTimeout`, `timeout` -> nothing useful.
  if (index !== -1 && distance(key.toLowerCase(), guess) <= Math.max(2, Math.floor(key.length / 3)))
    return `; did you mean "${names[index]}"?`;
  return ` (the options are ${names.join(', ')})`;
}
