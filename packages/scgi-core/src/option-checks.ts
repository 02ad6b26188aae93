/** Validation shared by every option resolver (proxy, health checks, spawned workers). */
import { InvalidOptionError } from './errors.js';

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

/**
 * Refuses keys of `options` that are not in `known`, naming the closest known key (a typo such
 * as `maxParamSize` must not be silently ignored). Throws `SCGI_ERR_INVALID_OPTION`.
 */
export function knownKeys(where: string, options: object, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue;
    let best = '';
    let bestDistance = Number.POSITIVE_INFINITY;
    for (const candidate of known) {
      const d = editDistance(key.toLowerCase(), candidate.toLowerCase());
      if (d < bestDistance) {
        best = candidate;
        bestDistance = d;
      }
    }
    // Past half the name's length the "closest" name is a guess, not a hint.
    const hint = bestDistance <= Math.max(2, key.length / 2) ? `; did you mean ${best}?` : '';
    throw new InvalidOptionError(
      where === '' ? key : `${where}.${key}`,
      `is not a known option${hint}`,
    );
  }
}

/** Levenshtein distance, two rows (names are short). */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row.push(Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost));
    }
    prev = row;
  }
  return prev[b.length]!;
}
