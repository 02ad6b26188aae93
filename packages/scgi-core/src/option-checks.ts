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
