/**
 * The one place that reads the failure policy of the error registry (errors.ts, `FailurePolicy`):
 * whether a failure counts against a backend's health, and whether a request may be tried on
 * another backend. The exchange and the proxy ask here instead of keeping lists of codes.
 */
import { errorInfo, type ScgiError } from '../errors.js';

/** The failure counts against the backend's health (it was the backend's, before its answer). */
export function chargesBackend(err: ScgiError): boolean {
  return errorInfo(err.code)?.chargesBackend === true;
}

/**
 * The request may go to another backend after `err`: always after a failed connect (nothing was
 * sent); after a reset or timeout only when the request can be sent again (`replayable`: an
 * idempotent method and a body held in memory or a spool file) and no response byte arrived.
 */
export function mayRetryElsewhere(
  err: ScgiError,
  replayable: boolean,
  responseStarted: boolean,
): boolean {
  const retry = errorInfo(err.code)?.retry;
  if (retry === 'connect') return true;
  return retry === 'replayable' && replayable && !responseStarted;
}
