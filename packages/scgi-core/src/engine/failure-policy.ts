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
 * sent); after a reset, close or timeout when the request can be sent again (`replayable`: an
 * idempotent method and a body held in memory or a spool file), even if part of a response head
 * had arrived: nothing reached the client while the exchange is rejected, and an idempotent
 * request may be repeated (RFC 9110 section 9.2.2; nginx's `proxy_next_upstream error` covers
 * "reading the response header" too). After a refusal of the backend (FastCGI OVERLOADED) for
 * any method whose body can be sent again (`bodyResendable`), but only when no response byte
 * arrived (`answered`): a request the backend may have run is not repeated unless idempotent.
 */
export function mayRetryElsewhere(
  err: ScgiError,
  replayable: boolean,
  answered: boolean,
  bodyResendable = replayable,
): boolean {
  const retry = errorInfo(err.code)?.retry;
  if (retry === 'connect') return true;
  if (retry === 'replayable') return replayable;
  return retry === 'unprocessed' && bodyResendable && !answered;
}

/**
 * The request may go once more on a new connection (to any backend, the same one included),
 * without counting as a try: the failure was a kept connection found closed (`'fresh'`). Only
 * requests whose body can be sent again ever ride a kept connection (engine/proxy.ts).
 */
export function mayRetryFresh(err: ScgiError, responseStarted: boolean): boolean {
  return !responseStarted && errorInfo(err.code)?.retry === 'fresh';
}

/**
 * The request may wait and go to the same backend again once every backend was tried: the
 * failure looks like a restart (`retryLater`: refused, socket missing, reset or closed before the
 * head), no response byte arrived (`answered`: a backend that sends half a head and closes is
 * broken, not restarting), and the request is idempotent with a body that can be sent
 * again (`resendable`). A POST is never resent this way, even after a refused connect: its client
 * gets the 502 at once rather than a request held for `retryTimeout`.
 */
export function mayRetryLater(err: ScgiError, resendable: boolean, answered: boolean): boolean {
  return resendable && !answered && errorInfo(err.code)?.retryLater === true;
}
