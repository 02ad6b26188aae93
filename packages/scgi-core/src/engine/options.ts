/**
 * Proxy options: validated once, resolved into a new frozen object (the caller's object is
 * never touched). Defaults use `??` so an explicit 0 survives where 0 means "off".
 */
import { tmpdir } from 'node:os';
import {
  type CgiEnvOptions,
  type ResolvedCgiEnvOptions,
  resolveCgiEnvOptions,
} from '../cgi/env.js';
import { isInternalResponseHeader } from '../cgi/response-parser.js';
import { InvalidOptionError } from '../errors.js';
import { fastcgiProtocol } from '../fastcgi/protocol.js';
import { type ResolvedSendfile, resolveSendfile, type SendfileOptions } from '../http/sendfile.js';
import { scgiProtocol } from '../scgi/protocol.js';
import { parseAddress } from '../upstream/address.js';
import { type Connector, lendingConnector } from '../upstream/connect.js';
import {
  type HealthCheckOptions,
  type ResolvedHealthCheck,
  resolveHealthCheck,
} from '../upstream/health.js';
import {
  type KeepAliveOptions,
  type ResolvedKeepAlive,
  resolveKeepAlive,
} from '../upstream/keep-alive.js';
import {
  type ResolvedResolve,
  type ResolveOptions,
  resolveResolveOption,
} from '../upstream/membership.js';
import { Backend } from '../upstream/pool.js';
import {
  type ResolvedSpawnOptions,
  resolveSpawnOptions,
  type ScgiLogger,
  type SpawnOptions,
} from '../upstream/spawn.js';
import { checkKnownKeys, intOption, sizeOption } from './option-checks.js';

/** One backend of a pool. */
export interface UpstreamEntry {
  /**
   * `unix:/path`, `/path`, `host:port` or `[::1]:port` (SCGI), or one of them after `fastcgi://`
   * (FastCGI: `fastcgi://127.0.0.1:9000`, `fastcgi://unix:/run/php/php-fpm.sock`) or `scgi://`.
   * With the `resolve` option a host name becomes one member per address it resolves to, each
   * with this entry's weight and maxConnections.
   */
  address: string;
  /**
   * Share of the requests relative to the other backends (nginx `weight=`).
   * @default 1
   */
  weight?: number;
  /**
   * Most requests this backend serves at once (an SCGI pool has a fixed number of workers: flup's
   * threads, uWSGI's processes); more wait in the queue. 0 means no limit.
   * @default the top-level `maxConnections`
   */
  maxConnections?: number;
}

/** One address, or a pool of them (TCP and Unix may be mixed). */
export type UpstreamOption = string | UpstreamEntry | ReadonlyArray<string | UpstreamEntry>;

/** How a backend is chosen for each request. */
export type BalanceOption<Req = unknown> =
  | 'round-robin'
  | 'least-connections'
  | {
      /**
       * A key taken from the request (a session cookie, a user id...). Requests with the same key
       * go to the same backend; when a backend leaves, only its keys move (consistent hashing).
       * Returning undefined falls back to round-robin for that request.
       */
      hash: (req: Req) => string | undefined;
    };

/**
 * Where requests go: existing backends (`upstream`), or workers the proxy starts itself
 * (`spawn`). Exactly one of the two.
 */
export type UpstreamChoice =
  | {
      /**
       * The SCGI backend: `unix:/run/app.sock`, `/run/app.sock`, `host:port` or `[::1]:port`, an
       * `{ address, weight, maxConnections }` entry, or a list of them. Prefer Unix sockets: SCGI
       * opens one connection per request, and over TCP the closed connections pile up in
       * TIME_WAIT under load.
       */
      upstream: UpstreamOption;
      spawn?: undefined;
    }
  | {
      /**
       * Start and supervise the backends instead of connecting to existing ones: each worker gets
       * its own Unix socket in a private 0700 directory (`{socket}` in `args`, `SCGI_SOCKET` in
       * its environment).
       */
      spawn: SpawnOptions;
      upstream?: undefined;
    };

/** Options of the engine (and of both adapters): `upstream` or `spawn`, plus the settings below. */
export type ScgiProxyOptions = ScgiProxySettings & UpstreamChoice;

export interface ScgiProxySettings extends CgiEnvOptions {
  /** Logger for worker output and lifecycle events (pino-compatible; Fastify passes its own). */
  logger?: ScgiLogger;
  /**
   * Resolve host names of `upstream` (`app.internal:9000`, `fastcgi://php.svc.cluster.local:9000`)
   * into one member per A/AAAA address, at start and again when the answer's TTL runs out (or
   * every `interval`): addresses that appear join the pool, those that disappear drain (their
   * requests in flight finish). A failed lookup keeps the last good addresses, logged and
   * counted in `stats().names` (nginx `server ... resolve` with `resolver`). `false`: a host
   * name is one member, looked up by the OS on each connection.
   * @default false
   */
  resolve?: boolean | ResolveOptions;
  /**
   * Backend selection: smooth weighted round-robin, least connections, or a consistent hash of
   * a request key.
   * @default 'round-robin'
   */
  balance?: BalanceOption;
  /**
   * Default per-backend limit of concurrent requests; 0 means no limit.
   * @default 0
   */
  maxConnections?: number;
  /**
   * Requests that may wait for a free backend slot; past it: 503 `SCGI_ERR_QUEUE_FULL` with
   * Retry-After. The queue is never unbounded.
   * @default 100
   */
  maxQueue?: number;
  /**
   * ms a request may wait in the queue; then 503 `SCGI_ERR_QUEUE_TIMEOUT` with Retry-After.
   * @default 10000
   */
  queueTimeout?: number;
  /**
   * Failures (connect errors, resets and timeouts before the head) within `failTimeout` that take
   * a backend out of rotation for `failTimeout` (nginx `max_fails`); 0 disables.
   * @default 1
   */
  maxFails?: number;
  /**
   * The failure window and how long a failed backend stays out (nginx `fail_timeout`); after it
   * one trial request decides.
   * @default 10000
   */
  failTimeout?: number;
  /**
   * Most attempts one request may make, on other backends and on the same one again (nginx
   * `proxy_next_upstream_tries`); 0: no limit but the others (each backend once per round,
   * `retryTimeout`). A connect failure always moves on; a reset, close or timeout before the head
   * reached the client only for idempotent methods with a replayable body; never once a response
   * byte reached the client.
   * @default 0
   */
  maxTries?: number;
  /**
   * ms after which no further attempt is made (nginx `proxy_next_upstream_timeout`); 0: no limit.
   * It also bounds the waits of `retryDelay`, which are off when it is 0.
   * @default 5000
   */
  retryTimeout?: number;
  /**
   * Once every backend failed in a way a restart looks like (connection refused, socket missing,
   * reset or closed before any response byte), an idempotent request whose body can be sent again
   * waits a random time up to this many ms (full jitter, so a burst does not come back at once)
   * and tries the same backends again, until `retryTimeout`: a backend that restarts (a uWSGI or
   * PHP-FPM reload, a deploy) costs a delay, not a 502. nginx has no such wait. A backend that
   * has failed for longer than `retryTimeout` without a success is down, not restarting: its
   * requests get their 502 at once (each still tries it once). 0: never.
   * @default 250
   */
  retryDelay?: number;
  /**
   * Graceful shutdown: ms that requests in flight may take to finish after `close()` before their
   * backend connections are destroyed.
   * @default 10000
   */
  closeGrace?: number;
  /** Active health checks; off unless given. */
  healthCheck?: HealthCheckOptions | false;
  /**
   * Milliseconds to wait for the connection to the backend; 0 disables.
   * @default 10000
   */
  connectTimeout?: number;
  /**
   * Milliseconds to wait for the response head once the request is fully sent (nginx's
   * `scgi_read_timeout` default is 60 s); answered with 504. 0 disables.
   * @default 60000
   */
  headersTimeout?: number;
  /**
   * Milliseconds without any traffic in either direction on the backend connection, not counting
   * time the client spends not reading. Before the head: 504; after: the client connection is
   * destroyed. 0 disables.
   * @default 60000
   */
  idleTimeout?: number;
  /**
   * Largest request body in bytes; a larger one is answered 413 without reaching the backend
   * (the Content-Length is checked up front; a chunked body while it is read).
   * @default 1073741824 (1 GiB)
   */
  maxBodySize?: number | string;
  /**
   * Bytes of a body of unknown length (chunked) kept in memory before it moves to a private
   * temp file. Bounds the memory one upload can take.
   * @default 1048576 (1 MiB)
   */
  spoolMemory?: number | string;
  /**
   * Folder for spooled request bodies (files are created 0600 and always removed).
   * @default os.tmpdir()
   */
  tmpDir?: string;
  /**
   * Largest CGI response head in bytes; larger is a 502 (a runaway or hostile backend cannot
   * make the proxy buffer without bound).
   * @default 65536
   */
  maxHeadSize?: number | string;
  /**
   * Response headers meant for a front server that are hidden from the client by default, to
   * pass on anyway (nginx `scgi_pass_header`): any of `X-Sendfile`, `X-Lighttpd-Send-File`,
   * `X-Lighttpd-Sendfile` and `X-Accel-*`. Hidden because they expose paths on the backend's disk
   * (`X-Sendfile: /srv/private/report.pdf`) and tune a server that is not there. Names are
   * case-insensitive; a name that is not hidden by default is refused (it would be a no-op).
   * @default []
   */
  passHeaders?: readonly string[];
  /**
   * Response bodies with a Content-Length up to this many bytes are collected whole before the
   * head is handed on, then sent in one write (as nginx's `scgi_buffering`); a backend that fails
   * before the end is then a clean 502 instead of a cut connection. Larger or unknown-length
   * bodies stream. 0 streams every body. The buffer is allocated at its full Content-Length when
   * the head arrives, and the body is read straight into it.
   * @default 65536
   */
  maxBufferedBody?: number | string;
  /** Replaces how sockets to the backend are opened (undici-style connector). */
  connector?: Connector;
  /**
   * FastCGI backends: idle connections kept per backend and reused (FCGI_KEEP_CONN). Each open
   * connection holds a PHP-FPM child or a flup thread and counts against `maxConnections`: set
   * that to the backend's workers. `false` opens a connection per request (SCGI always does).
   * @default { maxIdle: maxConnections (4 without it), idleTimeout: 5000, maxRequests: 1000 }
   */
  keepAlive?: boolean | KeepAliveOptions;
  /**
   * Serve the file a backend names in `X-Sendfile` or `X-Accel-Redirect` (and no body) from
   * `root`, with Range, conditional requests and HEAD (http/sendfile.ts). Paths outside `root`
   * after resolving symlinks get 403, missing files 404. Off: both headers are hidden from the
   * client, as nginx hides `X-Accel-*`.
   * @default false
   */
  sendfile?: SendfileOptions | false;
  /**
   * Send every request to the backend with an id in this header (as `HTTP_X_REQUEST_ID` for
   * `x-request-id`): the adapter's id when it has one (fastify-scgi: `request.id`, replacing what
   * the client sent: Fastify's own `requestIdHeader` decides whether a client's id is trusted),
   * else the client's header, else a random UUID. The same id is on the tracing context.
   * `false` leaves the header as the client sent it.
   * @default false
   */
  requestIdHeader?: string | false;
}

export interface ResolvedProxyOptions {
  readonly backends: readonly Backend[];
  readonly balance: 'round-robin' | 'least-connections' | 'hash';
  readonly hashKey: ((req: never) => string | undefined) | null;
  readonly maxQueue: number;
  readonly queueTimeout: number;
  readonly maxFails: number;
  readonly failTimeout: number;
  readonly maxTries: number;
  readonly retryTimeout: number;
  readonly retryDelay: number;
  readonly healthCheck: ResolvedHealthCheck | null;
  readonly closeGrace: number;
  readonly spawn: ResolvedSpawnOptions | null;
  readonly logger: ScgiLogger | null;
  readonly connectTimeout: number;
  readonly headersTimeout: number;
  readonly idleTimeout: number;
  readonly maxBodySize: number;
  readonly spoolMemory: number;
  readonly tmpDir: string;
  readonly maxHeadSize: number;
  /**
   * Lower-case names of the internal response headers the parser keeps: those passed to the
   * client, and the `sendfile` header, which the engine consumes.
   */
  readonly passHeaders: ReadonlySet<string>;
  readonly maxBufferedBody: number;
  readonly connector: Connector;
  /** null: no connection is kept (`keepAlive: false`). */
  readonly keepAlive: ResolvedKeepAlive | null;
  /** The default per-backend `maxConnections` (entries may set their own). */
  readonly maxConnections: number;
  /** Resolved `resolve`; null: host names stay single members looked up per connection. */
  readonly resolve: ResolvedResolve | null;
  readonly env: ResolvedCgiEnvOptions;
  /** Resolved `sendfile`; null when off. */
  readonly sendfile: ResolvedSendfile | null;
  /** Lower-case `requestIdHeader`; null when off. */
  readonly requestIdHeader: string | null;
}

const nonNegativeInt = (name: string, value: unknown, fallback: number) =>
  intOption(name, value, fallback, 0);
const positiveInt = (name: string, value: unknown, fallback: number) =>
  intOption(name, value, fallback, 1);

/**
 * One option of the engine: its key, its default as the README states it, and for the options
 * resolved on their own, the check that turns the caller's value into the resolved one. The
 * README's option tables are held to this table by test/options-doc.test.ts.
 */
export interface OptionDescriptor {
  readonly name: string;
  /** Its TypeScript type, as the package READMEs show it. */
  readonly type: string;
  /** The default, as the README's option tables give it. */
  readonly default: string;
  /** One line on what it does. */
  readonly doc: string;
  /** Validates and resolves the value on its own (`undefined` when not given); options resolved
   * together with others (upstream and spawn, the CGI environment's) have none. */
  readonly resolve?: (value: unknown) => unknown;
}

const int = (name: string, min: 0 | 1, fallback: number) => (value: unknown) =>
  intOption(name, value, fallback, min);
const size = (name: string, min: 0 | 1, fallback: number) => (value: unknown) =>
  sizeOption(name, value, fallback, min);

/** Every option `ScgiProxy` takes, in the README's order. */
export const PROXY_OPTIONS: readonly OptionDescriptor[] = Object.freeze(
  [
    {
      name: 'upstream',
      type: 'string | UpstreamEntry | Array<string | UpstreamEntry>',
      default: '(required)',
      doc: 'the backend address, entry or list',
    },
    {
      name: 'spawn',
      type: 'SpawnOptions',
      default: 'none',
      doc: 'start and supervise the backends (instead of upstream)',
    },
    {
      name: 'resolve',
      type: 'boolean | { servers?, interval?, timeout? }',
      default: '`false`',
      doc: 'resolve host names in upstream into one member per address, again at each TTL',
      resolve: resolveResolveOption,
    },
    {
      name: 'logger',
      type: '{ info, warn, error }',
      default: "none (fastify-scgi: Fastify's)",
      doc: 'pino-compatible logger for workers and exchanges',
    },
    {
      name: 'connectTimeout',
      type: 'number',
      default: '10000',
      doc: 'ms to connect to a backend',
      resolve: int('connectTimeout', 0, 10_000),
    },
    {
      name: 'headersTimeout',
      type: 'number',
      default: '60000',
      doc: 'ms from the end of the request to the response head',
      resolve: int('headersTimeout', 0, 60_000),
    },
    {
      name: 'idleTimeout',
      type: 'number',
      default: '60000',
      doc: 'ms without traffic on the backend connection',
      resolve: int('idleTimeout', 0, 60_000),
    },
    {
      name: 'maxBodySize',
      type: 'number | string',
      default: '1 GiB',
      doc: 'largest request body',
      resolve: size('maxBodySize', 0, 1024 * 1024 * 1024),
    },
    {
      name: 'spoolMemory',
      type: 'number | string',
      default: '1 MiB',
      doc: 'bytes of a chunked body kept in memory before a temp file',
      resolve: size('spoolMemory', 0, 1024 * 1024),
    },
    {
      name: 'tmpDir',
      type: 'string',
      default: '`os.tmpdir()`',
      doc: 'folder of spooled bodies',
      resolve: (value: unknown) => {
        if (value !== undefined && (typeof value !== 'string' || value === '')) {
          throw new InvalidOptionError('tmpDir', 'must be a non-empty string');
        }
        return value ?? tmpdir();
      },
    },
    {
      name: 'maxHeadSize',
      type: 'number | string',
      default: '65536',
      doc: 'largest CGI response head',
      resolve: size('maxHeadSize', 1, 64 * 1024),
    },
    {
      name: 'passHeaders',
      type: 'string[]',
      default: '`[]`',
      doc: 'internal response headers (X-Sendfile, X-Accel-*) to pass to the client',
      resolve: (value: unknown) => resolvePassHeaders(value),
    },
    {
      name: 'maxBufferedBody',
      type: 'number | string',
      default: '65536',
      doc: 'response bodies up to this Content-Length are collected whole',
      resolve: size('maxBufferedBody', 0, 64 * 1024),
    },
    {
      name: 'trustProxy',
      type: 'boolean | number | string | string[] | (addr, i) => boolean',
      default: '`false`',
      doc: 'peers trusted for X-Forwarded-*',
    },
    {
      name: 'params',
      type: 'object | Array<[name, value]> | (req) => object | Array<[name, value]>',
      default: 'none',
      doc: 'extra or overriding CGI variables',
    },
    {
      name: 'scriptName',
      type: 'string',
      default: '`""`',
      doc: 'SCRIPT_NAME (the adapters set it from the mount)',
    },
    { name: 'serverName', type: 'string', default: 'Host header', doc: 'SERVER_NAME' },
    { name: 'serverPort', type: 'number | string', default: 'local port', doc: 'SERVER_PORT' },
    { name: 'serverSoftware', type: 'string', default: '`scgi-core`', doc: 'SERVER_SOFTWARE' },
    {
      name: 'connector',
      type: 'Connector',
      default: 'TCP/Unix',
      doc: 'opens backend sockets (undici-style)',
      resolve: (value: unknown) => {
        if (value !== undefined && typeof value !== 'function') {
          throw new InvalidOptionError('connector', 'must be a function');
        }
        return value ?? lendingConnector;
      },
    },
    {
      name: 'keepAlive',
      type: 'boolean | { maxIdle?, idleTimeout?, maxRequests? }',
      default: '`{ maxIdle: maxConnections or 4, idleTimeout: 5000, maxRequests: 1000 }`',
      doc: 'FastCGI: idle connections kept per backend and reused; `false`: one per request',
      resolve: (value: unknown) => resolveKeepAlive(value),
    },
    {
      name: 'balance',
      type: "'round-robin' | 'least-connections' | { hash: (req) => string | undefined }",
      default: "`'round-robin'`",
      doc: 'how a backend is chosen',
    },
    {
      name: 'maxConnections',
      type: 'number',
      default: '0 (no limit)',
      doc: 'per-backend concurrent requests',
    },
    {
      name: 'maxQueue',
      type: 'number',
      default: '100',
      doc: 'requests that may wait for a free slot',
      resolve: int('maxQueue', 0, 100),
    },
    {
      name: 'queueTimeout',
      type: 'number',
      default: '10000',
      doc: 'ms a request may wait in the queue',
      resolve: int('queueTimeout', 0, 10_000),
    },
    {
      name: 'maxFails',
      type: 'number',
      default: '1',
      doc: 'failures within failTimeout that take a backend out',
      resolve: int('maxFails', 0, 1),
    },
    {
      name: 'failTimeout',
      type: 'number',
      default: '10000',
      doc: 'the failure window, and how long a backend stays out',
      resolve: int('failTimeout', 1, 10_000),
    },
    {
      name: 'maxTries',
      type: 'number',
      default: '0',
      doc: 'most attempts one request may make (0: each backend once, then as retryDelay allows)',
      resolve: int('maxTries', 0, 0),
    },
    {
      name: 'retryTimeout',
      type: 'number',
      default: '5000',
      doc: 'ms after which no further attempt is made (0: no limit, and no retryDelay waits)',
      resolve: int('retryTimeout', 0, 5000),
    },
    {
      name: 'retryDelay',
      type: 'number',
      default: '250',
      doc: 'most ms to wait (full jitter) before trying a backend that looked restarted again',
      resolve: int('retryDelay', 0, 250),
    },
    {
      name: 'healthCheck',
      type: 'HealthCheckOptions | false',
      default: 'off',
      doc: 'active health checks',
      resolve: (value: unknown) =>
        resolveHealthCheck(value as HealthCheckOptions | undefined | false),
    },
    {
      name: 'sendfile',
      type: "{ root: string, header?: 'X-Sendfile' | 'X-Accel-Redirect' } | false",
      default: '`false`',
      doc: 'serve the file a backend names in X-Sendfile / X-Accel-Redirect from root',
      resolve: resolveSendfile,
    },
    {
      name: 'requestIdHeader',
      type: 'string | false',
      default: '`false`',
      doc: "send a request id in this header (Fastify's request.id, the client's, or a UUID)",
      resolve: (value: unknown) => {
        if (value === undefined || value === false) return null;
        if (typeof value !== 'string' || !/^[A-Za-z0-9-]+$/.test(value)) {
          throw new InvalidOptionError('requestIdHeader', 'must be false or a header name');
        }
        return value.toLowerCase();
      },
    },
    {
      name: 'closeGrace',
      type: 'number',
      default: '10000',
      doc: 'ms requests in flight may take to finish on close',
      resolve: int('closeGrace', 0, 10_000),
    },
  ].map((d) => Object.freeze(d)),
);

/** The keys of `ScgiProxyOptions`. */
export const PROXY_OPTION_NAMES: ReadonlySet<string> = new Set(PROXY_OPTIONS.map((d) => d.name));

/** Options that belong to the CGI environment (`resolveCgiEnvOptions`). */
const ENV_KEYS = new Set([
  'scriptName',
  'params',
  'trustProxy',
  'serverName',
  'serverPort',
  'serverSoftware',
]);

/**
 * Checks an adapter's options: every key is the engine's or one of `adapterKeys`, else
 * `SCGI_ERR_INVALID_OPTION` naming it and the closest known key. Returns the engine's part.
 */
export function splitAdapterOptions(
  options: unknown,
  adapterKeys: ReadonlySet<string> | Readonly<Record<string, AdapterOptionKind>>,
): { core: ScgiProxyOptions; adapter: Record<string, unknown> } {
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionError('options', 'must be an object');
  }
  const kinds: Readonly<Record<string, AdapterOptionKind>> =
    adapterKeys instanceof Set
      ? Object.fromEntries([...adapterKeys].map((k) => [k, 'any']))
      : (adapterKeys as Readonly<Record<string, AdapterOptionKind>>);
  checkKnownKeys(options, new Set([...PROXY_OPTION_NAMES, ...Object.keys(kinds)]));
  const core: Record<string, unknown> = {};
  const adapter: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(options)) {
    const kind = Object.hasOwn(kinds, k) ? kinds[k] : undefined;
    if (kind === undefined) {
      core[k] = v;
      continue;
    }
    if (v !== undefined && kind !== 'any' && typeof v !== kind) {
      throw new InvalidOptionError(k, `must be a ${kind}`);
    }
    adapter[k] = v;
  }
  return { core: core as unknown as ScgiProxyOptions, adapter };
}

/** What an adapter's own option must be (`typeof`), checked by `splitAdapterOptions`; 'any': checked by the adapter. */
export type AdapterOptionKind = 'function' | 'boolean' | 'string' | 'object' | 'any';

/** Validates and resolves proxy options. Throws `SCGI_ERR_INVALID_OPTION` naming the option. */
export function resolveProxyOptions(options: ScgiProxyOptions): ResolvedProxyOptions {
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionError('options', 'must be an object');
  }
  checkKnownKeys(options, PROXY_OPTION_NAMES);
  if (options.upstream === undefined && options.spawn === undefined) {
    throw new InvalidOptionError('upstream', 'is required (or spawn, to start the backends)');
  }
  if (options.upstream !== undefined && options.spawn !== undefined) {
    throw new InvalidOptionError('spawn', 'cannot be used together with upstream');
  }
  if (
    options.logger !== undefined &&
    (options.logger === null || typeof options.logger.warn !== 'function')
  ) {
    throw new InvalidOptionError('logger', 'must have info, warn and error methods');
  }
  const given = options as unknown as Record<string, unknown>;
  const resolved: Record<string, unknown> = {};
  for (const d of PROXY_OPTIONS)
    if (d.resolve !== undefined) resolved[d.name] = d.resolve(given[d.name]);
  const defaultMax = nonNegativeInt('maxConnections', options.maxConnections, 0);
  const spawn = options.spawn === undefined ? null : resolveSpawnOptions(options.spawn);
  const backends = resolveBackends(
    spawn === null ? options.upstream : spawn.sockets.map((p) => `${spawn.protocol}://unix:${p}`),
    defaultMax,
    resolved.keepAlive as ResolvedKeepAlive | null,
  );
  const { balance, hashKey } = resolveBalance(options.balance);
  const envOptions: Record<string, unknown> = {};
  for (const key of ENV_KEYS) if (given[key] !== undefined) envOptions[key] = given[key];
  const passHeaders = withSendfileHeader(
    resolved.passHeaders as ReadonlySet<string>,
    resolved.sendfile as ResolvedSendfile | null,
  );
  return Object.freeze({
    ...(resolved as Omit<
      ResolvedProxyOptions,
      'backends' | 'balance' | 'hashKey' | 'spawn' | 'logger' | 'env' | 'maxConnections'
    >),
    backends,
    balance,
    hashKey,
    maxConnections: defaultMax,
    spawn,
    logger: options.logger ?? null,
    env: resolveCgiEnvOptions(envOptions as CgiEnvOptions),
    passHeaders,
  });
}

/**
 * With `sendfile`, its header must reach the engine, which serves the file and removes the header
 * (http/sendfile.ts); the parser keeps the names in `passHeaders`. Passing it to the client as
 * well cannot be meant: refused.
 */
function withSendfileHeader(
  names: ReadonlySet<string>,
  sendfile: ResolvedSendfile | null,
): ReadonlySet<string> {
  if (sendfile === null) return names;
  if (names.has(sendfile.header)) {
    throw new InvalidOptionError(
      'passHeaders',
      `${sendfile.headerName} is served by sendfile and cannot also be passed to the client`,
    );
  }
  return new Set([...names, sendfile.header]);
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function resolvePassHeaders(value: unknown): ReadonlySet<string> {
  if (value === undefined) return NO_NAMES;
  if (!Array.isArray(value)) {
    throw new InvalidOptionError('passHeaders', 'must be an array of header names');
  }
  const names = new Set<string>();
  for (const [i, name] of value.entries()) {
    if (typeof name !== 'string' || !TOKEN.test(name)) {
      throw new InvalidOptionError(`passHeaders[${i}]`, 'must be a header name');
    }
    const lower = name.toLowerCase();
    if (!isInternalResponseHeader(lower)) {
      throw new InvalidOptionError(
        `passHeaders[${i}]`,
        `${name} is passed anyway; only X-Sendfile, X-Lighttpd-Send-File, X-Lighttpd-Sendfile and X-Accel-* are hidden`,
      );
    }
    names.add(lower);
  }
  return names;
}

const NO_NAMES: ReadonlySet<string> = new Set();

const UPSTREAM_HINT =
  'an address such as unix:/run/app.sock, 127.0.0.1:9000 or fastcgi://127.0.0.1:9000, an { address, weight, maxConnections } entry, or a list of them';

const ENTRY_KEYS = new Set(['address', 'weight', 'maxConnections']);

/**
 * A new `upstream` for `ScgiProxy.setUpstream`, checked as the option is, with the proxy's
 * default `maxConnections` and `keepAlive`.
 */
export function resolveUpstream(upstream: unknown, options: ResolvedProxyOptions): Backend[] {
  return resolveBackends(upstream, options.maxConnections, options.keepAlive);
}

function resolveBackends(
  upstream: unknown,
  defaultMax: number,
  keepAlive: ResolvedKeepAlive | null,
): Backend[] {
  const list = Array.isArray(upstream) ? upstream : [upstream];
  if (list.length === 0) throw new InvalidOptionError('upstream', 'must name at least one backend');
  const seen = new Set<string>();
  return list.map((entry: unknown, i) => {
    const where = Array.isArray(upstream) ? `upstream[${i}]` : 'upstream';
    let address: string;
    let weight = 1;
    let max = defaultMax;
    if (typeof entry === 'string') {
      address = entry;
    } else if (
      entry !== null &&
      typeof entry === 'object' &&
      typeof (entry as UpstreamEntry).address === 'string'
    ) {
      const e = entry as UpstreamEntry;
      checkKnownKeys(e, ENTRY_KEYS, where);
      address = e.address;
      weight = positiveInt(`${where}.weight`, e.weight, 1);
      max = nonNegativeInt(`${where}.maxConnections`, e.maxConnections, defaultMax);
    } else {
      throw new InvalidOptionError(where, `must be ${UPSTREAM_HINT}`);
    }
    const parsed = parseAddress(address);
    if (seen.has(parsed.label))
      throw new InvalidOptionError(where, `${parsed.label} is listed twice`);
    seen.add(parsed.label);
    const protocol = parsed.scheme === 'fastcgi' ? fastcgiProtocol : scgiProtocol;
    return new Backend(parsed, weight, max, protocol, keepAlive);
  });
}

function resolveBalance(balance: unknown): {
  balance: ResolvedProxyOptions['balance'];
  hashKey: ResolvedProxyOptions['hashKey'];
} {
  if (balance === undefined || balance === 'round-robin')
    return { balance: 'round-robin', hashKey: null };
  if (balance === 'least-connections') return { balance, hashKey: null };
  if (
    balance !== null &&
    typeof balance === 'object' &&
    typeof (balance as { hash?: unknown }).hash === 'function'
  ) {
    return {
      balance: 'hash',
      hashKey: (balance as { hash: (req: never) => string | undefined }).hash,
    };
  }
  throw new InvalidOptionError(
    'balance',
    "must be 'round-robin', 'least-connections' or { hash: (req) => key }",
  );
}
