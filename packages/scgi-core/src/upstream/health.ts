/**
 * Optional active health checks: every `interval` ms each backend gets a connect probe, or a
 * small GET of `path` in the backend's own protocol (SCGI, or FastCGI on a connection it does
 * not keep) whose status must match. `fails` failed checks in a row mark it down
 * (no requests go there), `passes` good ones in a row mark it up again. Timers are unref'd and
 * stop with the proxy.
 */

import { resolveCgiEnvOptions } from '../cgi/env.js';
import { CgiResponseParser } from '../cgi/response-parser.js';
import { checkKnownKeys, intOption } from '../engine/option-checks.js';
import { InvalidOptionError } from '../errors.js';
import type { EnvInput, EnvPair } from '../types.js';
import type { ConnectCallback, Connector } from './connect.js';
import type { Backend, UpstreamPool } from './pool.js';

export interface HealthCheckOptions {
  /** ms between checks of one backend. @default 5000 */
  interval?: number;
  /** ms a check may take. @default 2000 */
  timeout?: number;
  /** Request this path (as PATH_INFO and REQUEST_URI) in the backend's protocol; without it a check only connects. */
  path?: string;
  /**
   * Variables added to the check's request (replacing ones of the same name), like `params`.
   * PHP-FPM answers 404 "Primary script unknown" without SCRIPT_FILENAME.
   * @default the proxy's `params` when they are static (an object or pairs), else none
   */
  params?: EnvInput;
  /** Statuses that count as healthy. @default 200-399 */
  expectStatus?: number | readonly number[] | ((status: number) => boolean);
  /** Failed checks in a row that mark a backend down. @default 1 */
  fails?: number;
  /** Good checks in a row that mark it up again. @default 1 */
  passes?: number;
}

export interface ResolvedHealthCheck {
  readonly interval: number;
  readonly timeout: number;
  readonly path: string | null;
  /** `params` checked and frozen; null: the proxy's static params, if any. */
  readonly params: readonly EnvPair[] | null;
  readonly expect: (status: number) => boolean;
  readonly fails: number;
  readonly passes: number;
}

const positive = (name: string, v: unknown, d: number) => intOption(`healthCheck.${name}`, v, d, 1);

const HEALTH_KEYS = new Set([
  'interval',
  'timeout',
  'path',
  'params',
  'expectStatus',
  'fails',
  'passes',
]);

/** healthCheck.params, checked by the same rules as the proxy's `params`. */
function resolveCheckParams(input: EnvInput | undefined): readonly EnvPair[] | null {
  if (input === undefined) return null;
  if (typeof input === 'function') {
    // A params function needs a client request; a check has none.
    throw new InvalidOptionError('healthCheck.params', 'must be an object or [name, value] pairs');
  }
  try {
    return resolveCgiEnvOptions({ params: input }).params as readonly EnvPair[];
  } catch (cause) {
    throw new InvalidOptionError('healthCheck.params', (cause as Error).message, { cause });
  }
}

export function resolveHealthCheck(
  o: HealthCheckOptions | undefined | false,
): ResolvedHealthCheck | null {
  if (o === undefined || o === false) return null;
  if (o === null || typeof o !== 'object')
    throw new InvalidOptionError('healthCheck', 'must be an object');
  checkKnownKeys(o, HEALTH_KEYS, 'healthCheck');
  if (
    o.path !== undefined &&
    (typeof o.path !== 'string' || !o.path.startsWith('/') || /[\0\r\n]/.test(o.path))
  ) {
    throw new InvalidOptionError('healthCheck.path', 'must be a path starting with "/"');
  }
  const e = o.expectStatus;
  let expect: (s: number) => boolean;
  if (e === undefined) expect = (s) => s >= 200 && s < 400;
  else if (typeof e === 'number') expect = (s) => s === e;
  else if (Array.isArray(e)) expect = (s) => e.includes(s);
  else if (typeof e === 'function') expect = e as (s: number) => boolean;
  else
    throw new InvalidOptionError(
      'healthCheck.expectStatus',
      'must be a number, a list or a function',
    );
  return Object.freeze({
    interval: positive('interval', o.interval, 5000),
    timeout: positive('timeout', o.timeout, 2000),
    path: o.path ?? null,
    params: resolveCheckParams(o.params),
    expect,
    fails: positive('fails', o.fails, 1),
    passes: positive('passes', o.passes, 1),
  });
}

/**
 * One check: resolves true when the backend looks healthy. Never rejects. `signal` ends it at
 * once (socket and timer freed), so stopping the checks leaves nothing open behind.
 */
export function checkBackend(
  backend: Backend,
  check: ResolvedHealthCheck,
  connector: Connector,
  signal?: AbortSignal,
  params: readonly EnvPair[] | null = check.params,
): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    let done = false;
    let socketRef: import('node:net').Socket | null = null;
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socketRef?.destroy();
      resolve(ok);
    };
    const onAbort = () => finish(false);
    const timer = setTimeout(() => finish(false), check.timeout);
    signal?.addEventListener('abort', onAbort, { once: true });
    const onConnect: ConnectCallback = (err, socket) => {
      if (err !== null || socket === null) return finish(false);
      if (done) {
        socket.destroy();
        return;
      }
      socketRef = socket;
      if (check.path === null) return finish(true);
      const parser = new CgiResponseParser();
      const protocol = backend.protocol;
      const onResponse = (chunk: Buffer) => {
        try {
          const head = parser.push(chunk);
          if (head !== null) finish(check.expect(head.statusCode));
        } catch {
          finish(false);
        }
      };
      // A framed protocol's records are de-framed first (FastCGI STDOUT); its end without a
      // head, or a protocol error, is a failed check.
      const decoder = protocol.raw
        ? null
        : protocol.createDecoder({
            data: (chunk) => onResponse(chunk),
            stderr: () => {},
            complete: () => finish(false),
            error: () => finish(false),
          });
      socket.on('error', () => finish(false));
      socket.on('close', () => finish(false));
      socket.on('data', (chunk: Buffer) => {
        if (decoder === null) onResponse(chunk);
        else decoder.push(chunk, false);
      });
      socket.write(
        protocol.encodeRequestHead(
          withParams(
            [
              ['CONTENT_LENGTH', '0'],
              ...(protocol.name === 'scgi' ? [['SCGI', '1'] as EnvPair] : []),
              ['REQUEST_METHOD', 'GET'],
              ['REQUEST_URI', check.path],
              ['QUERY_STRING', ''],
              ['SCRIPT_NAME', ''],
              ['PATH_INFO', check.path],
              ['SERVER_PROTOCOL', 'HTTP/1.1'],
              ['REQUEST_SCHEME', 'http'],
              ['SERVER_NAME', 'localhost'],
              ['SERVER_PORT', '80'],
              ['REMOTE_ADDR', '127.0.0.1'],
              ['SERVER_SOFTWARE', 'scgi-core'],
              ['GATEWAY_INTERFACE', 'CGI/1.1'],
              ['HTTP_HOST', 'localhost'],
              ['HTTP_USER_AGENT', 'scgi-core-health-check'],
            ],
            params,
          ),
          0,
          false,
        ),
      );
    };
    try {
      connector(backend.address, { timeout: check.timeout }, onConnect);
    } catch {
      // A connector that throws: the check failed, and its timer and listener go at once.
      finish(false);
    }
  });
}

/** `env` with `params` applied: a name already there is replaced in place, a new one appended. */
function withParams(env: EnvPair[], params: readonly EnvPair[] | null): EnvPair[] {
  if (params === null) return env;
  for (const pair of params) {
    const at = env.findIndex(([name]) => name === pair[0]);
    if (at === -1) env.push(pair);
    else env[at] = pair;
  }
  return env;
}

/**
 * Runs checks for every member of a pool until stopped; follows membership (a member that
 * joins is checked from then on, one that leaves is no longer checked). `params`: the proxy's
 * static params, sent when the check has none of its own (PHP-FPM needs SCRIPT_FILENAME to run
 * anything).
 */
export class HealthChecker {
  /** The pending timer of each checked member (null while its check runs). */
  readonly #watched = new Map<Backend, NodeJS.Timeout | null>();
  readonly #abort = new AbortController();
  readonly #pool: UpstreamPool;
  readonly #check: ResolvedHealthCheck;
  readonly #connector: Connector;
  /** The variables each check carries on top of its own (`healthCheck.params` or the proxy's). */
  readonly #sent: readonly EnvPair[] | null;
  #stopped = false;

  constructor(
    pool: UpstreamPool,
    check: ResolvedHealthCheck,
    connector: Connector,
    params: readonly EnvPair[] | null = null,
  ) {
    this.#pool = pool;
    this.#check = check;
    this.#connector = connector;
    this.#sent = check.params ?? params;
    for (const backend of pool.backends) this.#watch(backend);
    pool.onMembers((added, removed) => {
      if (this.#stopped) return;
      for (const b of removed) {
        const t = this.#watched.get(b);
        if (t != null) clearTimeout(t);
        this.#watched.delete(b);
      }
      for (const b of added) this.#watch(b);
    });
  }

  #watch(backend: Backend): void {
    const check = this.#check;
    let goodRun = 0;
    let badRun = 0;
    const run = () => {
      if (this.#stopped || !this.#watched.has(backend)) return;
      this.#watched.set(backend, null);
      checkBackend(backend, check, this.#connector, this.#abort.signal, this.#sent).then((ok) => {
        if (this.#stopped || !this.#watched.has(backend)) return;
        if (ok) {
          goodRun++;
          badRun = 0;
          if (!backend.healthy && goodRun >= check.passes) this.#pool.setHealthy(backend, true);
        } else {
          badRun++;
          goodRun = 0;
          if (backend.healthy && badRun >= check.fails) this.#pool.setHealthy(backend, false);
        }
        const t = setTimeout(run, check.interval);
        t.unref();
        this.#watched.set(backend, t);
      });
    };
    this.#watched.set(backend, null);
    run();
  }

  stop(): void {
    this.#stopped = true;
    // Checks in progress end now: their sockets and timeout timers must not outlive close().
    this.#abort.abort();
    for (const t of this.#watched.values()) if (t !== null) clearTimeout(t);
    this.#watched.clear();
  }
}
