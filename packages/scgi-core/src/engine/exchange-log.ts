/**
 * The one log line per exchange that both adapters write (`exchangeLog`): upstream, status and
 * timings, once the exchange is over, since only then are the timings complete.
 */

import type { ScgiError } from '../errors.js';
import { InvalidOptionError } from '../errors.js';
import type { ScgiResponse } from './response.js';

/** pino's levels; the line is written at one of them. */
export type ExchangeLogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
const LEVELS = new Set<string>(['fatal', 'error', 'warn', 'info', 'debug', 'trace']);

/** `exchangeLog` as given: `true` / undefined -> 'info', `false` -> null (no line), or a level. */
export function resolveExchangeLog(value: unknown): ExchangeLogLevel | null {
  if (value === undefined || value === true) return 'info';
  if (value === false) return null;
  if (typeof value === 'string' && LEVELS.has(value)) return value as ExchangeLogLevel;
  throw new InvalidOptionError(
    'exchangeLog',
    `must be a boolean or one of ${[...LEVELS].join(', ')}, got ${String(value)}`,
  );
}

type LevelLogger = Partial<Record<ExchangeLogLevel, (obj: object, msg?: string) => void>>;

/**
 * Writes `{ upstream, statusCode, timings }` "scgi response" at `level` once the exchange is
 * over: at once for a body collected whole, else when the body stream closes (also when a hook
 * sent something else and destroyed it). A logger without that level's method writes at info.
 */
export function logExchangeWhenOver(
  logger: object,
  level: ExchangeLogLevel,
  response: ScgiResponse,
): void {
  const log = () => {
    const l = logger as LevelLogger;
    const { upstream, statusCode, timings } = response;
    (l[level] ?? l.info)?.call(logger, { upstream, statusCode, timings }, 'scgi response');
  };
  if (response.bodyBuffer !== null) log();
  else response.body.once('close', log);
}

/** The exchange's line when it failed before the head and no error handler will log it. */
export function logFailure(logger: object, level: ExchangeLogLevel, err: ScgiError): void {
  const l = logger as LevelLogger;
  const line = { err, upstream: err.upstream, statusCode: err.statusCode, code: err.code };
  (l[level] ?? l.info)?.call(logger, line, 'scgi request failed');
}
