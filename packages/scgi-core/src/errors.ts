/**
 * The one registry of scgi-core errors.
 *
 * Every failure has its own class with a stable `code` (`SCGI_ERR_*`), the HTTP
 * `statusCode` a proxy answers with when the failure happens before the response
 * head went out, and the underlying `cause` when there is one. Classes are made
 * with `@fastify/error` (the factory Fastify itself uses), so Fastify's error
 * handler and Express error middleware read `statusCode` and `code` as usual, and
 * `err instanceof ScgiError` holds for all of them.
 *
 * Codes are public API: never rename one. The README documents each code and a
 * test keeps the two in step.
 */
import createError from '@fastify/error';

/** Common base class: `err instanceof ScgiError` is true for every error of this library. */
export class ScgiError extends Error {
  declare code: string;
  declare statusCode: number;
  /** The backend the failure concerns (for logs only: never put it in a client response). */
  declare upstream?: string;
  /** Seconds for a `Retry-After` header (503 errors of the pool). */
  declare retryAfter?: number;
}

/**
 * Headers that go with an error response, whatever the framework: `Retry-After` for the pool's
 * 503s, and `Connection: close` for a 413 or a 408, whose unread body would otherwise hold the
 * connection, for faulty framing (RFC 9112 §6.1: close after the answer), and for a refused
 * upgrade: Node's parser stops at the end of an upgrade request and drops the bytes that came
 * with it (WebSocket frames, a pipelined request), so the connection cannot be trusted for more.
 */
export function errorResponseHeaders(err: ScgiError): Record<string, string> {
  const headers: Record<string, string> = {};
  if (
    err.statusCode === 413 ||
    err.statusCode === 408 ||
    err.code === 'SCGI_ERR_BAD_FRAMING' ||
    err.code === 'SCGI_ERR_UPGRADE'
  ) {
    headers.connection = 'close';
  }
  if (err.retryAfter !== undefined) headers['retry-after'] = String(err.retryAfter);
  return headers;
}
// @fastify/error assigns `this.name = 'FastifyError'`; an inherited accessor whose setter
// ignores that keeps the name ours without wrapping every constructor.
Object.defineProperty(ScgiError.prototype, 'name', {
  get: () => 'ScgiError',
  set: () => {},
  configurable: true,
});

/** Constructor signature of every registered error: format arguments, then an optional `{ cause }`. */
export interface ScgiErrorConstructor {
  new (...args: unknown[]): ScgiError;
  (...args: unknown[]): ScgiError;
  readonly prototype: ScgiError;
}

/**
 * What a failure means for the pool; read by `engine/failure-policy.ts` alone.
 * - `chargesBackend`: it counts against the backend's health (nginx `max_fails` with the default
 *   `proxy_next_upstream error timeout`). Only failures of the backend itself: a local failure
 *   (no file descriptor left, a spool file that cannot be read) or the client's never does.
 * - `retry`: whether the request may go to another backend. `'connect'`: nothing was sent, so
 *   always; `'replayable'`: only when the request can be sent again (an idempotent method, a body
 *   held in memory or a spool file) and nothing reached the client, even if part of a response
 *   head had arrived (nginx's `non_idempotent` rule, and its `error` case "reading the response
 *   header");
 *   `'unprocessed'`: the backend said it did not process the request (FastCGI `OVERLOADED`), so
 *   for any method whose body can be sent again; `'fresh'`: a kept connection that the backend
 *   had closed between requests (PHP-FPM's `pm.max_requests`, a restart): once more on a new
 *   connection, for any method, not counted as a try (nginx does not count a failed cached
 *   connection either: `u->peer.tries++` in ngx_http_upstream_next); `'never'`: the same failure
 *   would follow, or the client is the cause.
 * - `retryLater`: the failure is what a backend that restarts looks like (a refused connection or
 *   a missing socket, a connection reset or closed before any response byte): once every backend
 *   was tried, an idempotent request whose body can be sent again waits `retryDelay` and goes to
 *   the same backends again, within `retryTimeout` (issue 16; nginx has no such wait). Not the
 *   timeouts: a backend that is slow, not gone, would get the request again.
 */
export interface FailurePolicy {
  readonly chargesBackend: boolean;
  readonly retry: 'connect' | 'replayable' | 'unprocessed' | 'fresh' | 'never';
  readonly retryLater?: boolean;
}

/** What the registry knows of each code; the README table is checked against it. */
export interface ScgiErrorInfo extends FailurePolicy {
  readonly code: string;
  readonly statusCode: number;
  readonly message: string;
}

const registry = new Map<string, ScgiErrorInfo>();

const LOCAL: FailurePolicy = { chargesBackend: false, retry: 'never' };
/** The backend failed before answering: charged, and retried where the request allows. */
const BACKEND_FAILED: FailurePolicy = { chargesBackend: true, retry: 'replayable' };
/** The connection went away before any response byte, as when the backend restarts. */
const BACKEND_GONE: FailurePolicy = { ...BACKEND_FAILED, retryLater: true };

function define(
  code: string,
  statusCode: number,
  message: string,
  policy: FailurePolicy = LOCAL,
): ScgiErrorConstructor {
  registry.set(code, Object.freeze({ code, statusCode, message, ...policy }));
  const Class = createError(code, message, statusCode, ScgiError as unknown as ErrorConstructor);
  // Logs and consoles name an error by `name` (stack, toString) and by its constructor's name
  // (pino's `type`): both are the class's own (SCGI_ERR_UPSTREAM_RESET -> UpstreamResetError,
  // as exported), not @fastify/error's `FastifyError`.
  const name = `${code
    .slice('SCGI_ERR_'.length)
    .toLowerCase()
    .replace(/(?:^|_)([a-z])/g, (_, c: string) => c.toUpperCase())}Error`;
  Object.defineProperty(Class, 'name', { value: name });
  Object.defineProperty(Class.prototype, 'name', {
    get: () => name,
    set: () => {},
    configurable: true,
  });
  return Class as unknown as ScgiErrorConstructor;
}

/** Every registered code with its status and message template, in definition order. */
export function listErrorCodes(): ScgiErrorInfo[] {
  return [...registry.values()];
}

/** The registry's entry for a code (undefined for codes of other libraries). */
export function errorInfo(code: string): ScgiErrorInfo | undefined {
  return registry.get(code);
}

// --- netstring (SCGI head framing) ------------------------------------------------------
export const NetstringLeadingZeroError = define(
  'SCGI_ERR_NETSTRING_LEADING_ZERO',
  400,
  'Netstring length has a leading zero',
);
export const NetstringLengthError = define(
  'SCGI_ERR_NETSTRING_LENGTH',
  400,
  'Netstring length is not a decimal number: %s',
);
export const NetstringCommaError = define(
  'SCGI_ERR_NETSTRING_COMMA',
  400,
  'Netstring does not end with a comma',
);
export const NetstringTooLongError = define(
  'SCGI_ERR_NETSTRING_TOO_LONG',
  431,
  'Netstring length %s is over the limit of %s bytes',
);

// --- SCGI head ----------------------------------------------------------------------------
export const HeadEmptyNameError = define(
  'SCGI_ERR_HEAD_EMPTY_NAME',
  500,
  'SCGI header name is empty',
);
export const HeadDuplicateError = define(
  'SCGI_ERR_HEAD_DUPLICATE',
  500,
  'SCGI header %s appears more than once',
);
export const HeadNulError = define('SCGI_ERR_HEAD_NUL', 400, 'SCGI header %s contains a NUL byte');
export const HeadContentLengthError = define(
  'SCGI_ERR_HEAD_CONTENT_LENGTH',
  400,
  'CONTENT_LENGTH must be a non-negative decimal integer, got %s',
);
export const HeadMalformedError = define(
  'SCGI_ERR_HEAD_MALFORMED',
  400,
  'Malformed SCGI header block: %s',
);

// --- incoming HTTP request (CGI environment) --------------------------------------------
export const BadPathError = define(
  'SCGI_ERR_BAD_PATH',
  400,
  'Request path is not valid for this mount: %s',
);
export const PathNulError = define('SCGI_ERR_PATH_NUL', 400, 'Request path decodes to a NUL byte');
export const BadRequestHeaderError = define(
  'SCGI_ERR_BAD_REQUEST_HEADER',
  400,
  'Request header %s has an invalid value',
);
export const BodyTooLargeError = define(
  'SCGI_ERR_BODY_TOO_LARGE',
  413,
  'Request body is larger than the limit of %s bytes',
);
export const TransferCodingError = define(
  'SCGI_ERR_TRANSFER_CODING',
  501,
  'Transfer-Encoding %s is not supported: only chunked is',
);
export const BadFramingError = define(
  'SCGI_ERR_BAD_FRAMING',
  400,
  'The request framing is faulty: %s',
);
export const HttpVersionError = define(
  'SCGI_ERR_HTTP_VERSION',
  505,
  'HTTP version %s is not supported',
);
/**
 * 501, not 400: the request is valid HTTP and a server MAY ignore Upgrade (RFC 9110 §7.8), but
 * answering it as a plain request would leave the client waiting for a 101 (RFC 6455 §4.1) while
 * what it sends next is lost. The limit is ours: §15.6.2, "does not support the functionality".
 */
export const UpgradeError = define(
  'SCGI_ERR_UPGRADE',
  501,
  'Upgrade to %s is not supported: the backend protocol (SCGI) cannot carry an upgraded connection',
);
/** CONNECT asks for a tunnel (RFC 9110 §9.3.6); a gateway to an app has none to give (as nginx). */
export const MethodNotAllowedError = define(
  'SCGI_ERR_METHOD_NOT_ALLOWED',
  405,
  'Method %s is not allowed: %s',
);
export const RequestTimeoutError = define(
  'SCGI_ERR_REQUEST_TIMEOUT',
  408,
  'The client sent no request body bytes for %s ms',
);
export const SendTimeoutError = define(
  'SCGI_ERR_SEND_TIMEOUT',
  408,
  'The client took no response bytes for %s ms',
);
export const RequestAbortedError = define(
  'SCGI_ERR_REQUEST_ABORTED',
  400,
  'The client aborted the request: %s',
);
export const SpoolError = define('SCGI_ERR_SPOOL', 500, 'Could not spool the request body: %s');

// --- upstream connection and timeouts ---------------------------------------------------
export const ConnectError = define(
  'SCGI_ERR_CONNECT',
  502,
  'Could not connect to the SCGI backend',
  { chargesBackend: true, retry: 'connect', retryLater: true },
);
export const NoSocketError = define(
  'SCGI_ERR_NO_SOCKET',
  503,
  'No socket could be opened to reach the backend: %s',
);
export const ConnectTimeoutError = define(
  'SCGI_ERR_CONNECT_TIMEOUT',
  504,
  'Connecting to the SCGI backend timed out after %s ms',
  { chargesBackend: true, retry: 'connect' },
);
export const HeadersTimeoutError = define(
  'SCGI_ERR_HEADERS_TIMEOUT',
  504,
  'The SCGI backend sent no response head within %s ms',
  BACKEND_FAILED,
);
export const IdleTimeoutError = define(
  'SCGI_ERR_IDLE_TIMEOUT',
  504,
  'The SCGI backend connection was idle for %s ms',
  BACKEND_FAILED,
);
export const UpstreamClosedError = define(
  'SCGI_ERR_UPSTREAM_CLOSED',
  502,
  'The SCGI backend closed the connection before a complete response head',
  BACKEND_GONE,
);
export const UpstreamResetError = define(
  'SCGI_ERR_UPSTREAM_RESET',
  502,
  'The SCGI backend connection failed: %s',
  BACKEND_GONE,
);
/**
 * A connection kept from an earlier request failed before any response byte: the backend closed
 * it while it was idle (the close crossed our write). Not the backend's fault, and the request
 * was not processed: tried again on a new connection (engine/failure-policy.ts).
 */
export const KeptConnectionClosedError = define(
  'SCGI_ERR_KEPT_CONNECTION_CLOSED',
  502,
  'The backend had closed the kept connection before the request: %s',
  { chargesBackend: false, retry: 'fresh' },
);
export const UpstreamBodyError = define(
  'SCGI_ERR_UPSTREAM_BODY',
  502,
  'The SCGI backend response body ended early: %s',
);

// --- CGI response head -------------------------------------------------------------------
export const ResponseHeadTooLargeError = define(
  'SCGI_ERR_RESPONSE_HEAD_TOO_LARGE',
  502,
  'The SCGI backend response head is larger than %s bytes',
);
export const ResponseHeaderError = define(
  'SCGI_ERR_RESPONSE_HEADER',
  502,
  'The SCGI backend sent an invalid response header: %s',
);
export const ResponseStatusError = define(
  'SCGI_ERR_RESPONSE_STATUS',
  502,
  'The SCGI backend sent an invalid status: %s',
);

// --- X-Sendfile / X-Accel-Redirect (src/http/sendfile.ts) --------------------------------
// Local failures: the backend answered; the file it named is the problem (never charged). The
// messages name the header, never the path, which is on the backend's disk.
export const SendfilePathError = define(
  'SCGI_ERR_SENDFILE_PATH',
  502,
  'The SCGI backend sent an invalid %s value',
);
export const SendfileForbiddenError = define(
  'SCGI_ERR_SENDFILE_FORBIDDEN',
  403,
  'The file named in %s is outside the sendfile root or is not a regular file',
);
export const SendfileNotFoundError = define(
  'SCGI_ERR_SENDFILE_NOT_FOUND',
  404,
  'The file named in %s does not exist',
);

// --- FastCGI records (src/fastcgi/) -------------------------------------------------------
export const FastcgiVersionError = define(
  'SCGI_ERR_FASTCGI_VERSION',
  502,
  'FastCGI record has version %s; only version 1 exists',
);
export const FastcgiRecordError = define(
  'SCGI_ERR_FASTCGI_RECORD',
  502,
  'Unexpected FastCGI record: %s',
);
export const FastcgiTruncatedError = define(
  'SCGI_ERR_FASTCGI_TRUNCATED',
  502,
  'The FastCGI connection ended %s',
);
/** END_REQUEST with FCGI_OVERLOADED (spec §5.5): the application refused the request unprocessed. */
export const FastcgiOverloadedError = define(
  'SCGI_ERR_FASTCGI_OVERLOADED',
  503,
  'The FastCGI backend is overloaded and did not process the request',
  { chargesBackend: false, retry: 'unprocessed' },
);
/** END_REQUEST with FCGI_CANT_MPX_CONN, FCGI_UNKNOWN_ROLE or an undefined protocolStatus. */
export const FastcgiStatusError = define(
  'SCGI_ERR_FASTCGI_STATUS',
  502,
  'The FastCGI backend ended the request with %s',
);
export const FastcgiPairsError = define(
  'SCGI_ERR_FASTCGI_PAIRS',
  502,
  'Malformed FastCGI name-value pairs: %s',
);
export const FastcgiParamError = define(
  'SCGI_ERR_FASTCGI_PARAM',
  500,
  'FastCGI parameter %s cannot be encoded: %s',
);

// --- configuration -----------------------------------------------------------------------
export const InvalidOptionError = define('SCGI_ERR_INVALID_OPTION', 500, 'Invalid option %s: %s');
export const InvalidAddressError = define(
  'SCGI_ERR_INVALID_ADDRESS',
  500,
  'Invalid upstream address %s: %s',
);
export const BodyConsumedError = define(
  'SCGI_ERR_BODY_CONSUMED',
  500,
  'The request body was already read by a body parser and cannot be forwarded byte for byte: %s',
);

// --- upstream pool -------------------------------------------------------------------------
export const UnknownUpstreamError = define(
  'SCGI_ERR_UNKNOWN_UPSTREAM',
  500,
  'No upstream pool named %s was declared (the pools are %s)',
);
export const NoBackendError = define(
  'SCGI_ERR_NO_BACKEND',
  503,
  'No SCGI backend is available (all are down or were tried)',
);
export const QueueFullError = define(
  'SCGI_ERR_QUEUE_FULL',
  503,
  'All SCGI backends are at their connection limit and the queue of %s is full',
);
export const QueueTimeoutError = define(
  'SCGI_ERR_QUEUE_TIMEOUT',
  503,
  'Waited %s ms for a free SCGI backend connection',
);
export const ClosingError = define('SCGI_ERR_CLOSING', 503, 'The SCGI proxy is shutting down');

// --- spawned workers -----------------------------------------------------------------------
export const SpawnError = define('SCGI_ERR_SPAWN', 500, 'SCGI worker %s failed to start: %s');
