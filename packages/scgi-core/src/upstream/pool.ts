/**
 * The upstream pool: many backends, per-backend concurrency limits with a bounded queue, and
 * passive health (nginx's `max_fails` / `fail_timeout`: that many failures within the window
 * take a backend out for the window; then one trial request decides).
 *
 * Membership can change at run time (`setMembers`: names re-resolved by upstream/membership.ts,
 * `ScgiProxy.setUpstream`), with nginx's rule for a server removed from a resolved upstream: a
 * member that leaves takes no new request, its requests in flight finish, its kept connections
 * close, and `stats()` shows it as `draining` until its last request ended.
 */

import type { WireProtocol } from '../engine/protocol.js';
import {
  ClosingError,
  NoBackendError,
  QueueFullError,
  QueueTimeoutError,
  type ScgiError,
} from '../errors.js';
import { scgiProtocol } from '../scgi/protocol.js';
import type { UpstreamAddress } from './address.js';
import { HashRing, pickLeastConnections, pickRoundRobin } from './balance.js';
import { DeadlineTimer } from './deadline-timer.js';
import { KeepAliveSet, type ResolvedKeepAlive } from './keep-alive.js';

/** `draining`: left the pool (setMembers) and still finishing requests in flight. */
export type BackendState = 'up' | 'down' | 'probing' | 'draining';

/** A snapshot of one backend, from `stats()`. */
export interface BackendStats {
  readonly address: string;
  readonly state: BackendState;
  /** Marked down by the active health check. */
  readonly healthy: boolean;
  readonly weight: number;
  readonly maxConnections: number;
  readonly active: number;
  /** Open connections kept idle for the next request (FastCGI keep-alive). */
  readonly idle: number;
  readonly served: number;
  readonly failed: number;
  readonly lastError: string | null;
  /** Exponentially weighted moving average of the time to the response head, in ms. */
  readonly latencyEwma: number | null;
  /** The host name entry this member was resolved from (`resolve`), when it was. */
  readonly resolvedFrom?: string;
}

export interface PoolStats {
  readonly queued: number;
  /** Members, then members that left and still finish requests (`state: 'draining'`). */
  readonly backends: BackendStats[];
  /** Host names resolved into members (the `resolve` option), with their lookup counters. */
  readonly names?: readonly NameStats[];
}

/** One host name of `upstream` resolved into members (upstream/membership.ts). */
export interface NameStats {
  /** The entry as given, without its scheme: `app.internal:9000`. */
  readonly name: string;
  /** The members it resolved to, by label, in the answer's order. */
  readonly addresses: readonly string[];
  readonly lookups: number;
  /** Lookups that failed (the last good set was kept). */
  readonly failures: number;
  /** The DNS error code of the last failed lookup (`ETIMEOUT`, `ENOTFOUND`...), or null. */
  readonly lastError: string | null;
}

export class Backend {
  /**
   * Where new connections go. A rolling reload of spawned workers (upstream/spawn.ts) points it
   * at the new worker's socket; exchanges already started keep the address they began with.
   */
  address: UpstreamAddress;
  /** The wire protocol this backend speaks (engine/protocol.ts). */
  readonly protocol: WireProtocol;
  readonly weight: number;
  /**
   * Most requests at once, and (with keep-alive) most open connections, idle ones included:
   * `keepAlive.makeRoom()` closes idle connections before a new one would pass it.
   */
  readonly maxConnections: number;
  /** Idle connections kept for reuse; null when the protocol or the options do not keep any. */
  readonly keepAlive: KeepAliveSet | null;
  /** The `host:port` entry this member was resolved from (upstream/membership.ts), or null. */
  readonly resolvedFrom: string | null;
  active = 0;
  currentWeight = 0;
  served = 0;
  failed = 0;
  lastError: string | null = null;
  latencyEwma: number | null = null;
  /** Failure times inside the current window. */
  fails: number[] = [];
  downUntil = 0;
  /**
   * Times this backend was marked down. A success revives it only if its request started after
   * the latest mark-down (nginx: `accessed < checked`), so a request already in flight then
   * cannot bring it back inside its window.
   */
  downs = 0;
  trialInFlight = false;
  /** The trial slot was handed to an exchange (see UpstreamPool.takeTrial). */
  trialClaimed = false;
  /** `downs` when the trial in flight was taken. */
  trialDowns = 0;
  /**
   * When the current run of failures without a success began (ms; 0 while the last outcome was
   * a success). A request waits for a restarting backend (`retryDelay`) only while this is
   * younger than `retryTimeout` (engine/proxy.ts): a restart is short, a dead backend is not
   * waited on by every request.
   */
  failingSince = 0;
  /** Set by active health checks. */
  healthy = true;
  /** Left the pool (UpstreamPool.setMembers); finishes what is in flight, takes nothing new. */
  draining = false;

  constructor(
    address: UpstreamAddress,
    weight: number,
    maxConnections: number,
    protocol: WireProtocol = scgiProtocol,
    keepAlive: ResolvedKeepAlive | null = null,
    resolvedFrom: string | null = null,
  ) {
    this.address = address;
    this.resolvedFrom = resolvedFrom;
    this.protocol = protocol;
    this.weight = weight;
    this.maxConnections = maxConnections;
    this.keepAlive =
      keepAlive !== null && protocol.keepsConnections ? new KeepAliveSet(keepAlive, this) : null;
  }

  state(now: number): BackendState {
    if (this.draining) return 'draining';
    if (this.downUntil === 0) return 'up';
    return now < this.downUntil ? 'down' : 'probing';
  }

  hasRoom(): boolean {
    return this.maxConnections === 0 || this.active < this.maxConnections;
  }
}

export interface PoolOptions {
  readonly balance: 'round-robin' | 'least-connections' | 'hash';
  readonly maxQueue: number;
  readonly queueTimeout: number;
  readonly maxFails: number;
  readonly failTimeout: number;
}

interface Waiter {
  key: string | undefined;
  tried: ReadonlySet<Backend>;
  /** `tried` was not empty when it queued (counted in `#retryWaiters`). */
  retry: boolean;
  resolve: (b: Backend) => void;
  reject: (err: ScgiError) => void;
  /** When the wait ends with QueueTimeoutError (`performance.now()` ms); Infinity without one. */
  deadline: number;
  /** Stops listening for the request's abort (set while it waits). */
  cancel: (() => void) | null;
}

/**
 * What can end a wait in the queue without an AbortSignal: the engine's per-request watch
 * (engine/proxy.ts `ClientWatch`). Building an AbortController and its EventTarget for every
 * queued request cost about 5% of the CPU of a FastCGI front whose requests all wait for one of
 * PHP-FPM's children (bench, fastify-fcgi-php profile); a plain callback does the same job.
 */
export interface AbortHook {
  /** Calls `cb` once if the request is aborted; returns a function that stops that. */
  onAbort(cb: (reason: ScgiError) => void): () => void;
}

/** The outcome of one exchange, reported back to the pool exactly once. */
export interface Outcome {
  /** The backend answered with a response head. */
  readonly ok: boolean;
  /** Counts against the backend's health (connect failures, resets, timeouts before the head). */
  readonly failure: boolean;
  readonly error?: ScgiError | undefined;
  readonly headMs?: number | undefined;
}

/** Told of every membership change (health checks follow it). */
export type MembersListener = (added: readonly Backend[], removed: readonly Backend[]) => void;

export class UpstreamPool {
  #members: readonly Backend[];
  /** Members that left with requests still in flight. */
  readonly #draining = new Set<Backend>();
  readonly #listeners: MembersListener[] = [];
  readonly #opts: PoolOptions;
  #ring: HashRing<Backend> | null = null;
  #protocols: readonly WireProtocol[] = [];
  #keeps = false;
  /** Oldest first; with one queueTimeout for all, also soonest deadline first. */
  readonly #queue: Waiter[] = [];
  /**
   * One timer for the whole queue instead of one per waiter: when every request waits for one of
   * PHP-FPM's children, nearly every request queues.
   */
  readonly #queueTimer = new DeadlineTimer((now) => this.#expireWaiters(now), false);
  /** Queued waiters that already tried some backend (a retry): nearly always none. */
  #retryWaiters = 0;
  #closing = false;
  #wakeTimer: NodeJS.Timeout | null = null;

  constructor(backends: readonly Backend[], opts: PoolOptions) {
    this.#members = backends;
    this.#opts = opts;
    this.#rebuild();
  }

  /** The members new requests may go to (draining ones are not among them). */
  get backends(): readonly Backend[] {
    return this.#members;
  }

  /** The wire protocols of the members, each once. */
  get protocols(): readonly WireProtocol[] {
    return this.#protocols;
  }

  /** Some member keeps idle connections (FastCGI with keepAlive). */
  get keeps(): boolean {
    return this.#keeps;
  }

  /** Calls `listener` on every later membership change. */
  onMembers(listener: MembersListener): void {
    this.#listeners.push(listener);
  }

  /**
   * Replaces the members. A Backend object present before and after keeps its state (counters,
   * passive health); one that left drains: no new request, requests in flight finish, its idle
   * connections close now. Queued requests are handed to the new members at once.
   */
  setMembers(next: readonly Backend[]): void {
    if (this.#closing) return;
    const before = new Set(this.#members);
    const after = new Set(next);
    const added = next.filter((b) => !before.has(b));
    const removed = this.#members.filter((b) => !after.has(b));
    this.#members = [...next];
    for (const b of removed) {
      b.draining = true;
      b.keepAlive?.close();
      if (b.active > 0) this.#draining.add(b);
    }
    this.#rebuild();
    for (const listener of this.#listeners) listener(added, removed);
    this.#dispatch();
  }

  /** Balancer state follows membership: WRR weights start over, the hash ring is rebuilt. */
  #rebuild(): void {
    const members = this.#members;
    for (const b of members) b.currentWeight = 0;
    this.#ring =
      this.#opts.balance === 'hash'
        ? new HashRing(
            members,
            (b) => b.address.label,
            (b) => b.weight,
          )
        : null;
    this.#protocols = [...new Set(members.map((b) => b.protocol))];
    this.#keeps = members.some((b) => b.keepAlive !== null);
  }

  get queued(): number {
    return this.#queue.length;
  }

  /** Some member has room for one more request (usable or not): a cheap test before `#pick`. */
  #anyRoom(): boolean {
    for (const b of this.#members) if (b.hasRoom()) return true;
    return false;
  }

  /** Usable now (not down, healthy, a trial slot if probing) regardless of room. */
  #usable(b: Backend, now: number): boolean {
    if (!b.healthy) return false;
    const state = b.state(now);
    return state === 'up' || (state === 'probing' && !b.trialInFlight);
  }

  #pick(key: string | undefined, tried: ReadonlySet<Backend>): Backend | null {
    const now = Date.now();
    const eligible = (b: Backend) => !tried.has(b) && b.hasRoom() && this.#usable(b, now);
    let b: Backend | null;
    if (this.#ring !== null && key !== undefined) b = this.#ring.pick(key, eligible);
    else if (this.#opts.balance === 'least-connections')
      b = pickLeastConnections(this.backends, eligible);
    else b = pickRoundRobin(this.backends, eligible);
    if (b !== null) {
      b.active++;
      if (b.state(now) === 'probing') b.trialInFlight = true;
    }
    return b;
  }

  /** Seconds until the first down backend may be tried again (for Retry-After). */
  #retryAfter(): number {
    const now = Date.now();
    let soonest = Number.POSITIVE_INFINITY;
    for (const b of this.backends)
      if (b.downUntil > now) soonest = Math.min(soonest, b.downUntil - now);
    return Number.isFinite(soonest) ? Math.max(1, Math.ceil(soonest / 1000)) : 1;
  }

  /**
   * A backend with room for one more request, skipping `tried`. Waits in the bounded queue when
   * every usable backend is at its limit; rejects at once when none is usable.
   */
  acquire(
    key: string | undefined,
    tried: ReadonlySet<Backend>,
    abortable?: AbortSignal | AbortHook,
  ): Promise<Backend> | Backend {
    if (this.#closing) throw new ClosingError();
    const b = this.#pick(key, tried);
    if (b !== null) return b;
    const now = Date.now();
    const anyUsable = this.backends.some((x) => !tried.has(x) && this.#usable(x, now));
    if (!anyUsable) throw withRetryAfter(new NoBackendError(), this.#retryAfter());
    if (this.#queue.length >= this.#opts.maxQueue) {
      throw withRetryAfter(new QueueFullError(this.#opts.maxQueue), 1);
    }
    return new Promise<Backend>((resolve, reject) => {
      const timeout = this.#opts.queueTimeout;
      const deadline = timeout > 0 ? performance.now() + timeout : Number.POSITIVE_INFINITY;
      const retry = tried.size > 0;
      const waiter: Waiter = { key, tried, retry, resolve, reject, deadline, cancel: null };
      if (timeout > 0) this.#queueTimer.added(deadline);
      if (abortable instanceof AbortSignal) {
        const onAbort = () => {
          this.#dequeue(waiter);
          reject(abortable.reason as ScgiError);
        };
        abortable.addEventListener('abort', onAbort, { once: true });
        waiter.cancel = () => abortable.removeEventListener('abort', onAbort);
      } else if (abortable !== undefined) {
        waiter.cancel = abortable.onAbort((reason) => {
          this.#dequeue(waiter);
          reject(reason);
        });
      }
      this.#queue.push(waiter);
      if (waiter.retry) this.#retryWaiters++;
    });
  }

  /** Fails the waiters whose deadline has come; returns the next one's (DeadlineTimer). */
  #expireWaiters(now: number): number {
    const queue = this.#queue;
    while (queue.length > 0 && queue[0]!.deadline <= now) {
      const w = queue[0]!;
      this.#dequeue(w);
      w.reject(withRetryAfter(new QueueTimeoutError(this.#opts.queueTimeout), 1));
    }
    return queue[0]?.deadline ?? Number.POSITIVE_INFINITY;
  }

  #dequeue(w: Waiter): void {
    const queue = this.#queue;
    const i = queue.indexOf(w);
    if (i !== -1) {
      // Nearly always the head: shift(), which unlike splice() makes no array of what it removed.
      if (i === 0) queue.shift();
      else queue.splice(i, 1);
      if (w.retry) this.#retryWaiters--;
    }
    // No waiter left: nothing may keep the process alive until the timer would have fired.
    if (queue.length === 0) this.#queueTimer.clear();
    if (w.cancel !== null) {
      w.cancel();
      w.cancel = null;
    }
  }

  /**
   * Hands freed capacity to waiters, first come first served. Runs at every release: with 32
   * clients queued for 4 PHP-FPM children it was 3% of the front's time, so it stops at the
   * first waiter that nothing can take, and checks usability once for the waiters with nothing
   * tried yet (nearly all of them).
   */
  #dispatch(): void {
    for (let i = 0; i < this.#queue.length; ) {
      // No backend with room (nearly always so once the head was served): nobody can be.
      if (!this.#anyRoom()) break;
      const w = this.#queue[i]!;
      const b = this.#pick(w.key, w.tried);
      if (b === null) {
        // Nothing tried and still nothing picked: no backend has room, so no later waiter
        // (whose candidates are the same or fewer) can be served either.
        if (w.tried.size === 0) break;
        i++;
        continue;
      }
      this.#dequeue(w);
      w.resolve(b);
    }
    // Waiters that can no longer be served by anything usable fail now instead of timing out.
    if (this.#queue.length === 0) return;
    const now = Date.now();
    let anyUsable = false;
    for (const b of this.backends) {
      if (this.#usable(b, now)) {
        anyUsable = true;
        break;
      }
    }
    // The common case, at every release while requests queue: a waiter that tried nothing can
    // be served by any usable backend, so no waiter is stranded. Skips a walk of the queue.
    if (anyUsable && this.#retryWaiters === 0) return;
    const stranded: Waiter[] = [];
    for (const w of this.#queue) {
      let servable: boolean;
      if (w.tried.size === 0) {
        servable = anyUsable;
      } else {
        servable = this.backends.some((x) => !w.tried.has(x) && this.#usable(x, now));
      }
      if (!servable) stranded.push(w);
    }
    for (const w of stranded) {
      this.#dequeue(w);
      w.reject(withRetryAfter(new NoBackendError(), this.#retryAfter()));
    }
  }

  /**
   * Call right after acquiring `b`: true when this request is the one trial a recovering backend
   * gets. Only the trial's own outcome may end the trial (not a request from before the backend
   * went down that happens to finish meanwhile).
   */
  takeTrial(b: Backend): boolean {
    if (!b.trialInFlight || b.trialClaimed) return false;
    b.trialClaimed = true;
    b.trialDowns = b.downs;
    return true;
  }

  /** Reports how an exchange went; frees its slot. `trial`: what takeTrial said for it. */
  release(b: Backend, outcome: Outcome, trial = false): void {
    b.active--;
    if (b.draining && b.active === 0) this.#draining.delete(b);
    const now = Date.now();
    const wasTrial = trial;
    if (trial) {
      b.trialInFlight = false;
      b.trialClaimed = false;
    }
    // Also an error after the head (a body cut short): it does not count against health, but
    // an operator looking at the backend should see it.
    if (outcome.error !== undefined) b.lastError = outcome.error.code;
    if (outcome.ok) {
      b.served++;
      b.failingSince = 0;
      if (outcome.headMs !== undefined) {
        b.latencyEwma =
          b.latencyEwma === null ? outcome.headMs : b.latencyEwma * 0.8 + outcome.headMs * 0.2;
      }
      // Every request picked after a mark-down is the trial; any other one on a down backend was
      // picked before it went down, and its success says nothing about the backend now.
      if (wasTrial && b.trialDowns === b.downs) {
        b.downUntil = 0;
        b.fails = [];
        b.trialInFlight = false;
        b.trialClaimed = false;
      }
    } else if (outcome.failure) {
      b.failed++;
      if (b.failingSince === 0) b.failingSince = now;
      this.#recordFailure(b, now, wasTrial);
    }
    this.#dispatch();
  }

  #recordFailure(b: Backend, now: number, wasTrial: boolean): void {
    const { maxFails, failTimeout } = this.#opts;
    // nginx: max_fails=0 disables accounting, and a lone server is never considered unavailable
    // (taking out the only backend would turn every request into a 503).
    if (maxFails === 0 || this.backends.length === 1) return;
    b.fails = b.fails.filter((t) => now - t < failTimeout);
    b.fails.push(now);
    if (wasTrial || b.fails.length >= maxFails) {
      b.downUntil = now + failTimeout;
      b.downs++;
      b.fails = [];
      // A trial still running keeps its slot (only its own outcome ends it, and it no longer
      // counts): freeing it would let a second trial start and the first one's release end it.
      if (!b.trialClaimed) {
        b.trialInFlight = false;
        b.trialClaimed = false;
      }
      this.#scheduleWake();
    }
  }

  /**
   * Wakes the queue when the next down backend may take a trial request. One timer for the
   * soonest window end; when it fires it is set again for the next one, so a backend that went
   * down while the timer was running is not forgotten.
   */
  #scheduleWake(): void {
    if (this.#wakeTimer !== null || this.#closing) return;
    const now = Date.now();
    let soonest = Number.POSITIVE_INFINITY;
    for (const b of this.backends) if (b.downUntil > now) soonest = Math.min(soonest, b.downUntil);
    if (soonest === Number.POSITIVE_INFINITY) return;
    this.#wakeTimer = setTimeout(
      () => {
        this.#wakeTimer = null;
        this.#dispatch();
        this.#scheduleWake();
      },
      soonest - now + 1,
    );
    this.#wakeTimer.unref();
  }

  /** Health check verdict for a backend. */
  setHealthy(b: Backend, healthy: boolean): void {
    if (b.healthy === healthy) return;
    b.healthy = healthy;
    if (healthy) {
      b.downUntil = 0;
      b.fails = [];
    }
    this.#dispatch();
  }

  stats(): PoolStats {
    const now = Date.now();
    return {
      queued: this.#queue.length,
      backends: [...this.#members, ...this.#draining].map((b) => ({
        address: b.address.label,
        state: b.state(now),
        healthy: b.healthy,
        weight: b.weight,
        maxConnections: b.maxConnections,
        active: b.active,
        idle: b.keepAlive?.size ?? 0,
        served: b.served,
        failed: b.failed,
        lastError: b.lastError,
        latencyEwma: b.latencyEwma,
        ...(b.resolvedFrom === null ? {} : { resolvedFrom: b.resolvedFrom }),
      })),
    };
  }

  /** Stops taking requests: queued ones fail with SCGI_ERR_CLOSING (503); idle connections close. */
  close(): void {
    this.#closing = true;
    for (const b of this.backends) b.keepAlive?.close();
    if (this.#wakeTimer !== null) clearTimeout(this.#wakeTimer);
    this.#wakeTimer = null;
    // Emptying the queue below clears its timer too.
    for (const w of [...this.#queue]) {
      this.#dequeue(w);
      w.reject(new ClosingError());
    }
  }
}

function withRetryAfter(err: ScgiError, seconds: number): ScgiError {
  err.retryAfter = seconds;
  return err;
}
