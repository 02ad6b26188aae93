/**
 * Idle connections kept per backend for the next request (FastCGI with FCGI_KEEP_CONN), in the
 * shape of nginx's upstream `keepalive` cache and undici's pool-base idle clients:
 *
 * - the most recently used connection is reused first (a stack), so under a light load the
 *   others reach `idleTimeout` and close instead of all staying warm;
 * - an idle connection the backend closes (PHP-FPM's `pm.max_requests`, a restart, uWSGI's
 *   FastCGI socket after every request) leaves the set at once: its 'end', 'close' or 'error'
 *   while idle removes it, and so does any byte it sends (an idle backend has nothing to say);
 * - every open connection holds a PHP-FPM child or a flup thread, so idle connections count
 *   against the backend's `maxConnections` with the requests in progress (`makeRoom`): with
 *   maxConnections equal to the backend's workers, a new connection is never parked behind a
 *   worker that one of our idle connections holds (nginx with `keepalive 32` in front of 4
 *   PHP-FPM children did that: p99 3.2 s, DESIGN.md "Known traps").
 */
import type { Socket } from 'node:net';
import { checkKnownKeys, intOption } from '../engine/option-checks.js';
import { InvalidOptionError } from '../errors.js';
import { bindSocket, releaseSocket, type SocketUser } from './connect.js';
import { DeadlineTimer } from './deadline-timer.js';

export interface KeepAliveOptions {
  /**
   * Idle connections kept per backend. By default the backend's `maxConnections` when it has one:
   * open connections, idle ones included, never pass that limit (idle ones make room first), so
   * every connection the load needs may stay open, as nginx's `keepalive 32` keeps up to 32.
   * Without `maxConnections`, 4: below PHP-FPM's default `pm.max_children` (5), so one worker
   * stays free for a connection opened while the others are kept.
   * @default maxConnections, or 4 without it
   */
  maxIdle?: number;
  /** ms an idle connection is kept before it is closed. @default 5000 */
  idleTimeout?: number;
  /** Requests one connection carries before it is closed (nginx `keepalive_requests`). @default 1000 */
  maxRequests?: number;
}

export interface ResolvedKeepAlive {
  /** -1: the default (the backend's `maxConnections`, or 4 without one). */
  readonly maxIdle: number;
  readonly idleTimeout: number;
  readonly maxRequests: number;
}

/** Idle connections kept by default for a backend without `maxConnections`. */
const UNLIMITED_MAX_IDLE = 4;

const KEEP_ALIVE_KEYS = new Set(['maxIdle', 'idleTimeout', 'maxRequests']);

export const DEFAULT_KEEP_ALIVE: ResolvedKeepAlive = Object.freeze({
  maxIdle: -1,
  idleTimeout: 5000,
  maxRequests: 1000,
});

/** The `keepAlive` option: `false` turns reuse off (null), `true` or absent gives the defaults. */
export function resolveKeepAlive(value: unknown): ResolvedKeepAlive | null {
  if (value === false) return null;
  if (value === undefined || value === true) return DEFAULT_KEEP_ALIVE;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidOptionError(
      'keepAlive',
      'must be false, true or { maxIdle, idleTimeout, maxRequests }',
    );
  }
  checkKnownKeys(value, KEEP_ALIVE_KEYS, 'keepAlive');
  const o = value as KeepAliveOptions;
  return Object.freeze({
    maxIdle: o.maxIdle === undefined ? -1 : intOption('keepAlive.maxIdle', o.maxIdle, 0, 0),
    idleTimeout: intOption(
      'keepAlive.idleTimeout',
      o.idleTimeout,
      DEFAULT_KEEP_ALIVE.idleTimeout,
      1,
    ),
    maxRequests: intOption(
      'keepAlive.maxRequests',
      o.maxRequests,
      DEFAULT_KEEP_ALIVE.maxRequests,
      1,
    ),
  });
}

/** A connection taken from the set, and the requests it carried so far. */
export interface KeptConnection {
  readonly socket: Socket;
  readonly requests: number;
}

/** What the set needs of its backend: the requests in progress and their limit. */
export interface ConnectionLimit {
  readonly active: number;
  readonly maxConnections: number;
}

/** One idle connection: the socket's user while it waits (connect.ts `SocketUser`). */
class IdleConnection implements SocketUser {
  readonly socket: Socket;
  readonly requests: number;
  /** When it was put in the set (performance.now()). */
  readonly since: number;
  readonly #set: KeepAliveSet;

  constructor(set: KeepAliveSet, socket: Socket, requests: number, since: number) {
    this.#set = set;
    this.socket = socket;
    this.requests = requests;
    this.since = since;
  }

  // Whatever happens to an idle connection ends it: the backend closed it, failed it, or sent a
  // byte nobody asked for. Its idleTimeout is the set's sweep (KeepAliveSet.#sweep).
  onData(): void {
    this.#set.drop(this, false);
  }
  onRead(): void {
    this.#set.drop(this, false);
  }
  readTarget(): Buffer | null {
    return null;
  }
  onEnd(): void {
    this.#set.drop(this, false);
  }
  onError(): void {
    this.#set.drop(this, false);
  }
  onClose(): void {
    this.#set.drop(this, false);
  }
  /**
   * The socket's own timer is the exchanges' `idleTimeout` (exchange.ts `#connected`): it stays
   * armed while the connection waits here, so the next exchange need not set it again (Node's
   * `socket.setTimeout` makes a new timer and a bound function at each call). Firing here means
   * nothing: the next request's first write arms it again.
   */
  onTimeout(): void {}
}

/** The idle connections of one backend. */
export class KeepAliveSet {
  readonly options: ResolvedKeepAlive;
  readonly #limit: ConnectionLimit;
  /** Oldest first; taken from the end. */
  readonly #idle: IdleConnection[] = [];
  #closed = false;
  /** One timer for the whole set: it closes the connections idle for idleTimeout, oldest first. */
  readonly #sweeper = new DeadlineTimer((now) => this.#sweep(now), true);

  /** `options.maxIdle`, or its default for this backend. */
  readonly #maxIdle: number;

  constructor(options: ResolvedKeepAlive, limit: ConnectionLimit) {
    this.options = options;
    this.#limit = limit;
    this.#maxIdle =
      options.maxIdle >= 0
        ? options.maxIdle
        : limit.maxConnections > 0
          ? limit.maxConnections
          : UNLIMITED_MAX_IDLE;
  }

  get size(): number {
    return this.#idle.length;
  }

  /** The most recently kept connection, or null. The caller binds it to itself at once. */
  take(): KeptConnection | null {
    return this.#idle.pop() ?? null;
  }

  /**
   * Keeps a connection whose exchange ended clean (END_REQUEST with nothing behind it), unless
   * it carried `maxRequests` or the set is closed; the oldest idle one makes way past `maxIdle`.
   * `requests`: how many requests it carried, this one included.
   */
  put(socket: Socket, requests: number): void {
    const o = this.options;
    if (this.#closed || requests >= o.maxRequests || this.#maxIdle === 0) {
      releaseSocket(socket, true);
      return;
    }
    if (this.#idle.length >= this.#maxIdle) this.#close(this.#idle.shift()!, true);
    const conn = new IdleConnection(this, socket, requests, performance.now());
    bindSocket(socket, conn);
    this.#idle.push(conn);
    this.#sweeper.added(conn.since + o.idleTimeout);
  }

  /**
   * The connections kept for idleTimeout close; returns when the next one is due (DeadlineTimer).
   * They were put oldest first, so they are the first ones. A connection taken since is not in
   * the set any more (a taken one is always the newest: the set is a stack).
   */
  #sweep(now: number): number {
    const ttl = this.options.idleTimeout;
    const idle = this.#idle;
    // The timer's clock is the event loop's, in whole ms: up to 1 ms behind performance.now().
    let expired = 0;
    while (expired < idle.length && idle[expired]!.since + ttl <= now + 1) expired++;
    for (const conn of idle.splice(0, expired)) this.#close(conn, true);
    return idle.length > 0 ? idle[0]!.since + ttl : Number.POSITIVE_INFINITY;
  }

  /**
   * A request about to open a new connection (it is already counted in `active`): idle
   * connections close, oldest first, until the open ones fit in `maxConnections` again.
   */
  makeRoom(): void {
    const { active, maxConnections } = this.#limit;
    if (maxConnections === 0) return;
    while (this.#idle.length > 0 && active + this.#idle.length > maxConnections) {
      this.#close(this.#idle.shift()!, true);
    }
  }

  /** An idle connection ended or expired: out of the set, and closed. @internal */
  drop(conn: IdleConnection, clean: boolean): void {
    const i = this.#idle.indexOf(conn);
    if (i === -1) return;
    this.#idle.splice(i, 1);
    this.#close(conn, clean);
  }

  #close(conn: IdleConnection, clean: boolean): void {
    // A clean close lets connect.ts connect the Socket object again later.
    releaseSocket(conn.socket, clean && !conn.socket.destroyed);
  }

  /** Closes every idle connection; later `put`s close theirs (graceful shutdown). */
  close(): void {
    this.#closed = true;
    this.#sweeper.clear();
    for (const conn of this.#idle.splice(0)) this.#close(conn, true);
  }
}
