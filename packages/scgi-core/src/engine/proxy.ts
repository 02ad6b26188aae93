/**
 * The engine the adapters share: turns a Node HTTP request into an SCGI exchange and hands
 * back the backend's response head and a body stream. Everything that is not Fastify- or
 * Express-specific lives here, so both adapters behave the same on the same request.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Readable } from 'node:stream';
import { buildCgiEnv } from '../cgi/env.js';
import { connectionOptions } from '../cgi/hop-by-hop.js';
import { chooseRequestId, withRequestId } from '../cgi/request-id.js';
import {
  BadFramingError,
  BodyTooLargeError,
  ClosingError,
  HttpVersionError,
  InvalidOptionError,
  RequestAbortedError,
  type ScgiError,
  TransferCodingError,
  UpgradeError,
} from '../errors.js';
import { requestBodyLength } from '../http/request-length.js';
import { serveSendfile } from '../http/sendfile.js';
import { spoolBody } from '../http/spool.js';
import type { EnvPair } from '../types.js';
import type { UpstreamAddress } from '../upstream/address.js';
import { defaultConnector, lendingConnector } from '../upstream/connect.js';
import { HealthChecker, resolveHealthCheck } from '../upstream/health.js';
import { Membership } from '../upstream/membership.js';
import { type AbortHook, Backend, type PoolStats, UpstreamPool } from '../upstream/pool.js';
import { WorkerSupervisor } from '../upstream/spawn.js';
import { channels, requestTracing, traceRequest } from './diagnostics.js';
import { Exchange, type ExchangeBody, type ScgiResponse } from './exchange.js';
import { mayRetryElsewhere, mayRetryFresh, mayRetryLater } from './failure-policy.js';
import { healthReport, type ProxyHealth } from './health-report.js';
import { InFlightList } from './in-flight.js';
import {
  type ResolvedProxyOptions,
  resolveProxyOptions,
  resolveUpstream,
  type ScgiProxyOptions,
  type UpstreamOption,
} from './options.js';
import type { WireProtocol } from './protocol.js';
import { Response, UpstreamBody } from './response.js';
import { keepTickShape } from './tick-shape.js';

export type ProxiedRequest = IncomingMessage | Http2ServerRequest;
export type ProxiedResponse = ServerResponse | Http2ServerResponse;

/** Per-request inputs from the adapter. */
export interface ScgiRequestOptions {
  /** Mount prefix, sent as SCRIPT_NAME ("" at the root). */
  scriptName?: string;
  /** The original request-target when the framework rewrote `req.url` (Express mounts). */
  url?: string;
  /**
   * A body to send instead of reading `req`: the exact bytes of a body a framework already read
   * (see `parsedBodyBytes`) or a replacement stream with a known `length`.
   */
  body?: Buffer | string | { stream: Readable; length: number } | null;
  /**
   * The response the client is waiting on. When it closes before it finished (the client went
   * away), the backend connection is destroyed at once.
   */
  res?: ProxiedResponse;
  /** Aborts the exchange. */
  signal?: AbortSignal;
  /** Last look at the CGI environment before it is encoded; may return a new list. */
  rewriteEnv?: (env: EnvPair[], req: ProxiedRequest) => EnvPair[] | undefined;
  /**
   * The caller will give a collected body's buffer back with `recycleBodyBuffer(response)`
   * once it is written out and nothing else refers to it (adapters only). @internal
   */
  recycleBody?: boolean;
  /**
   * The framework's id of this request (fastify-scgi: `request.id`), sent in `requestIdHeader`
   * in place of the client's. Ignored when `requestIdHeader` is off.
   */
  requestId?: string;
}

export type { ScgiResponse } from './exchange.js';

// Node's nextTick stays fast only while one tick object is alive: see engine/tick-shape.ts.
keepTickShape();

/** A Transfer-Encoding of chunked alone (Node joins repeated lines with ", "). */
const CHUNKED_ONLY = /^[\t ]*chunked[\t ]*$/i;

/**
 * An HTTP/1.1 request that asks to switch protocols (WebSocket, h2c...): `Upgrade` with the
 * `upgrade` connection option (RFC 9110 §7.8), as Node's parser flags it. Without the option,
 * or in HTTP/1.0 (where §7.8 says to ignore it), Upgrade is only a hop-by-hop header, dropped
 * like the others, and the request is forwarded.
 */
function isUpgradeRequest(req: ProxiedRequest): boolean {
  if (req.httpVersionMajor !== 1 || req.httpVersionMinor === 0) return false;
  const connection = req.headers.connection;
  return connection !== undefined && connectionOptions(connection).includes('upgrade');
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

/**
 * Request bodies with a Content-Length up to this are read whole before they are sent when the
 * pool keeps connections: a kept connection can turn out closed by the backend (PHP-FPM's
 * `pm.max_requests`), and the request must then be sent again, whatever its method, as nginx
 * can with its buffered request bodies. Larger bodies stream (full duplex) on a new connection.
 */
const KEPT_BODY_LIMIT = 64 * 1024;
let nextId = 0;

/**
 * A reusable SCGI client for one backend or a pool of them. Create it once (options are
 * validated and resolved then) and call `request()` per HTTP request.
 */
export class ScgiProxy {
  readonly options: ResolvedProxyOptions;
  readonly pool: UpstreamPool;
  readonly #inFlight = new InFlightList<Exchange>();
  readonly #health: HealthChecker | null;
  /** The configured entries and their resolved names; null with `spawn`. */
  readonly #members: Membership | null;
  /** Requests wait for ready() (spawned workers starting, names not yet resolved). */
  #waitReady: boolean;
  readonly #supervisor: WorkerSupervisor | null;
  #ready: Promise<void> | null = null;
  #closing = false;
  #idleWaiters: Array<() => void> = [];
  /** Checks of reloads waiting for the requests on an old worker to end (#drainAddress). */
  readonly #drains = new Set<() => void>();

  constructor(options: ScgiProxyOptions) {
    this.options = resolveProxyOptions(options);
    const o = this.options;
    this.pool = new UpstreamPool(o.spawn === null ? [] : o.backends, {
      balance: o.balance,
      maxQueue: o.maxQueue,
      queueTimeout: o.queueTimeout,
      maxFails: o.maxFails,
      failTimeout: o.failTimeout,
    });
    this.#members =
      o.spawn === null ? new Membership(this.pool, { resolve: o.resolve, logger: o.logger }) : null;
    this.#waitReady = o.spawn !== null;
    if (this.#members !== null) {
      const first = this.#members.set(o.backends);
      if (this.pool.backends.length < o.backends.length) {
        // Host names to resolve: requests wait for their first lookup.
        this.#waitReady = true;
        this.#ready = first.then(() => {
          this.#waitReady = false;
        });
      }
    }
    this.#supervisor =
      o.spawn === null
        ? null
        : new WorkerSupervisor(o.spawn, this.pool, o.logger, (address) =>
            this.#drainAddress(address),
          );
    // Spawned workers can also stop accepting without exiting: a connect check catches that.
    const check = o.healthCheck ?? (o.spawn === null ? null : SPAWN_HEALTH_CHECK);
    // The engine's own sockets read into lent buffers; a check reads plain 'data' events.
    const checkConnector = o.connector === lendingConnector ? defaultConnector : o.connector;
    // Static params go with the check too: PHP-FPM runs nothing without SCRIPT_FILENAME.
    const params = typeof o.env.params === 'function' ? null : o.env.params;
    this.#health =
      check === null ? null : new HealthChecker(this.pool, check, checkConnector, params);
  }

  /**
   * Resolves when the proxy can serve: at once for `upstream`; with `spawn`, once every initial
   * worker accepts connections (rejects with `SCGI_ERR_SPAWN` naming the command and its stderr).
   */
  ready(): Promise<void> {
    if (this.#ready === null) {
      this.#ready =
        this.#supervisor === null
          ? Promise.resolve()
          : this.#supervisor.start().catch((err: unknown) => {
              // The workers are gone (start() cleaned up): this proxy cannot serve; stop its
              // health checks so no timer outlives it.
              this.#closing = true;
              this.#health?.stop();
              this.pool.close();
              throw err;
            });
    }
    return this.#ready;
  }

  /**
   * Replaces the spawned workers one at a time without dropping a request (uWSGI's chain reload,
   * PHP-FPM's graceful reload): each new worker accepts before the old one stops getting
   * requests; the old one finishes its requests (up to `closeGrace` ms), then gets SIGTERM.
   * Resolves when every worker was replaced; rejects with `SCGI_ERR_SPAWN` when a new worker does
   * not come up (the old ones keep serving). Nothing to do without `spawn`.
   */
  async reload(): Promise<void> {
    if (this.#supervisor === null) return;
    await this.ready();
    if (this.#closing) throw new ClosingError();
    await this.#supervisor.reload();
  }

  /** Resolves when no request in flight uses `address`, or after `closeGrace` ms. */
  #drainAddress(address: UpstreamAddress): Promise<void> {
    return new Promise<void>((resolve) => {
      const check = () => {
        if (!this.#inFlight.some((ex) => ex.address === address)) finish();
      };
      const finish = () => {
        clearTimeout(timer);
        this.#drains.delete(check);
        resolve();
      };
      const timer = setTimeout(finish, this.options.closeGrace);
      this.#drains.add(check);
      check();
    });
  }

  /** Pids of the spawned workers by slot (empty without `spawn`). */
  workerPids(): Array<number | null> {
    return this.#supervisor?.pids() ?? [];
  }

  /** Per-backend state and counters; with `resolve`, each host name's lookups too. */
  stats(): PoolStats {
    const stats = this.pool.stats();
    const names = this.#members?.stats() ?? [];
    return names.length === 0 ? stats : { ...stats, names };
  }

  /**
   * Replaces the pool's backends at run time (for backends discovered another way than DNS),
   * checked as the `upstream` option. Entries listed before and after keep their state; the
   * others drain: no new request, requests in flight finish, kept connections close. With
   * `resolve`, new host names are looked up: the promise resolves once they were.
   * @throws InvalidOptionError with `spawn`, or for an invalid list.
   */
  setUpstream(upstream: UpstreamOption): Promise<void> {
    if (this.#members === null) {
      throw new InvalidOptionError('upstream', 'cannot be set on a proxy that spawns its workers');
    }
    if (this.#closing) throw new ClosingError();
    return this.#members.set(resolveUpstream(upstream, this.options));
  }

  /**
   * Whether a backend can take a request now: `up` while at least one is not marked down (by
   * failures or the health check) and the proxy is not closing. For readiness probes; the
   * adapters' health routes answer 200 or 503 from it.
   */
  health(): ProxyHealth {
    return healthReport(this.pool.stats(), this.#closing);
  }

  /** Exchanges in progress (requests sent and not yet fully answered). */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /**
   * Sends `req` to a backend. Resolves once the response head arrived; rejects with a typed
   * `ScgiError` (its `statusCode` is the answer to give: 400/413/502/503/504) before that.
   */
  request(req: ProxiedRequest, opts: ScgiRequestOptions = {}): Promise<ScgiResponse> {
    const id = ++nextId;
    const requestId = chooseRequestId(this.options.requestIdHeader, req, opts.requestId);
    if (!requestTracing.hasSubscribers) return this.#request(req, opts, id, requestId);
    return traceRequest({ id, request: req, requestId }, () =>
      this.#request(req, opts, id, requestId),
    );
  }

  async #request(
    req: ProxiedRequest,
    opts: ScgiRequestOptions,
    id: number,
    requestId: string | undefined,
  ): Promise<ScgiResponse> {
    // A failed start answers with its own error (SCGI_ERR_SPAWN), not as a shutdown.
    if (this.#waitReady) await this.ready();
    if (this.#closing) throw new ClosingError();
    if (channels.start.hasSubscribers) channels.start.publish({ id, request: req });
    // The client going away aborts the request at once. No AbortController on the hot path:
    // the watch calls the running exchange directly and makes a signal only when one is needed
    // (spooling a body, waiting in the queue).
    const watch = new ClientWatch(opts.signal);
    const res = opts.res as ResWithWatch | undefined;
    if (res !== undefined) {
      // One shared listener per `res`, never removed: it aborts the watch of the request now on
      // `res`, and a disposed watch ignores it. A removeListener per request would cost more (it
      // deletes a key of the emitter's event map). `on`, not `once`: 'close' comes once, and
      // once's wrapper is two more objects per request.
      if (res[kWatch] === undefined) res.on('close', onResClose);
      res[kWatch] = watch;
    }
    let body: ExchangeBody | null = null;
    try {
      // Only a body to read first (spooled) waits: a request without one goes on in this tick.
      const prepared = this.#prepareBody(req, opts, watch);
      body = prepared instanceof Promise ? await prepared : prepared;
      const response = await this.#send(req, opts, body, watch, id, requestId);
      const b = body;
      if (response.bodyBuffer !== null) {
        // Collected whole: the exchange is already over.
        watch.dispose();
        if (b.kind === 'spooled') b.spool.dispose();
      } else {
        // Lets the exchange reuse a read buffer once the response it was piped into wrote it out.
        const stream = response.body;
        if (res !== undefined && stream instanceof UpstreamBody) stream.watchPipeInto(res);
        stream.once('close', () => {
          watch.dispose();
          if (b.kind === 'spooled') b.spool.dispose();
        });
      }
      if (this.options.sendfile === null) return response;
      body = null; // disposed with the response above
      return await this.#sendfile(req, response);
    } catch (err) {
      watch.dispose();
      if (body?.kind === 'spooled') body.spool.dispose();
      const e = err as ScgiError;
      if (channels.error.hasSubscribers) {
        channels.error.publish({ id, request: req, error: e, upstream: e.upstream, phase: 'head' });
      }
      throw e;
    }
  }

  /** The file the response names in the `sendfile` header, in place of the response. */
  async #sendfile(req: ProxiedRequest, response: ScgiResponse): Promise<ScgiResponse> {
    const file = await serveSendfile(req, response, this.options.sendfile!);
    if (file === null) return response;
    const head = { statusCode: file.statusCode, statusMessage: '', headers: file.headers };
    return new Response(
      { ...head, hopByHop: [], nph: false },
      response.upstream,
      response.timings,
      null,
      file.body,
    );
  }

  #prepareBody(
    req: ProxiedRequest,
    opts: ScgiRequestOptions,
    watch: ClientWatch,
  ): ExchangeBody | Promise<ExchangeBody> {
    const o = this.options;
    // Node's HTTP/1 parser also takes `HTTP/2.0` and `HTTP/0.9` request lines; only HTTP/1.x,
    // and HTTP/2 from Node's http2 module (it has a stream), are forwarded (505, as nginx).
    const major = req.httpVersionMajor;
    if (major !== 1 && !(major === 2 && (req as Http2ServerRequest).stream !== undefined)) {
      throw new HttpVersionError(`HTTP/${req.httpVersion}`);
    }
    const upgrade = req.headers.upgrade;
    if (upgrade !== undefined && isUpgradeRequest(req)) {
      throw new UpgradeError(JSON.stringify(upgrade.slice(0, 64)));
    }
    const te = req.headers['transfer-encoding'];
    if (te !== undefined) {
      // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing (400, and
      // the connection closes after the answer). Node decodes chunked and leaves any other
      // coding (`gzip, chunked`) in the bytes, which the app would take for the body: 501.
      if (major === 1 && req.httpVersionMinor === 0) {
        throw new BadFramingError('Transfer-Encoding in an HTTP/1.0 request');
      }
      if (!CHUNKED_ONLY.test(te)) throw new TransferCodingError(JSON.stringify(te));
    }
    const given = opts.body;
    if (given !== undefined && given !== null) {
      if (typeof given === 'string' || Buffer.isBuffer(given)) {
        const data = typeof given === 'string' ? Buffer.from(given) : given;
        if (data.length > o.maxBodySize) throw new BodyTooLargeError(o.maxBodySize);
        return data.length === 0 ? NO_BODY : { kind: 'buffer', data };
      }
      if (given.length > o.maxBodySize) throw new BodyTooLargeError(o.maxBodySize);
      return { kind: 'stream', stream: given.stream, length: given.length };
    }
    const known = requestBodyLength(req);
    if (known === null || (this.pool.keeps && known > 0 && known <= KEPT_BODY_LIMIT)) {
      return spoolBody(
        req as Readable,
        {
          // A small body read for a kept connection stays in memory whatever spoolMemory says.
          memoryLimit: known === null ? o.spoolMemory : known,
          maxBodySize: o.maxBodySize,
          tmpDir: o.tmpDir,
          idleTimeout: o.idleTimeout,
        },
        watch.signal(),
      ).then((spool): ExchangeBody => ({ kind: 'spooled', spool }));
    }
    if (known > o.maxBodySize) throw new BodyTooLargeError(o.maxBodySize);
    return known === 0 ? NO_BODY : { kind: 'stream', stream: req as Readable, length: known };
  }

  /** Picks backends and runs exchanges until one answers or no retry is allowed. */
  async #send(
    req: ProxiedRequest,
    opts: ScgiRequestOptions,
    body: ExchangeBody,
    watch: ClientWatch,
    id: number,
    requestId: string | undefined,
  ): Promise<ScgiResponse> {
    const o = this.options;
    const length = bodyLength(body);
    let env = buildCgiEnv(req, o.env, {
      url: opts.url,
      contentLength: length,
      scriptName: opts.scriptName,
    });
    if (requestId !== undefined) env = withRequestId(env, o.requestIdHeader!, requestId);
    // As buildCgiEnv made it (see WireProtocol.encodeRequestHead): the request id is the one
    // value from elsewhere (an adapter's, such as Fastify's genReqId), so it is checked here.
    const built =
      opts.rewriteEnv === undefined && (requestId === undefined || !requestId.includes('\0'));
    if (opts.rewriteEnv !== undefined) env = opts.rewriteEnv(env, req) ?? env;
    // Encoded once per wire protocol of the pool (one, unless the pool mixes them), before a
    // backend is picked: an environment the protocol cannot carry fails without touching the pool.
    // The first protocol's head sits in locals; a Map only for a pool that mixes protocols.
    const keep = o.keepAlive !== null;
    const protocols = this.pool.protocols;
    const firstProtocol = protocols[0];
    const firstHead =
      firstProtocol === undefined ? null : encodeHead(firstProtocol, env, length, keep, built);
    let otherHeads: Map<WireProtocol, Buffer> | null = null;
    for (let i = 1; i < protocols.length; i++) {
      const p = protocols[i]!;
      if (otherHeads === null) otherHeads = new Map();
      otherHeads.set(p, encodeHead(p, env, length, keep, built));
    }

    const key =
      o.hashKey === null
        ? undefined
        : (o.hashKey as (r: ProxiedRequest) => string | undefined)(req);
    // A body read straight from the client can be sent once; a buffered or spooled one again.
    const replayable = body.kind !== 'stream';
    const resendable = replayable && IDEMPOTENT.has(req.method ?? '');
    const deadline = o.retryTimeout > 0 ? Date.now() + o.retryTimeout : Number.POSITIVE_INFINITY;
    // Made on the first failure: most requests never retry, and a Set is a large allocation.
    let tried: Set<Backend> | null = null;
    let lastError: ScgiError | null = null;
    /** Some response bytes of the last failed attempt had arrived (not a restart then). */
    let lastAnswered = false;
    /** The kept connection of the previous attempt was found closed: this one opens a new one. */
    let fresh = false;
    let freshUsed = false;
    for (let attempt = 1; ; attempt++) {
      let backend: Backend;
      try {
        if (watch.reason !== null) throw watch.reason;
        const picked = this.pool.acquire(key, tried ?? NOTHING_TRIED, watch);
        backend = picked instanceof Backend ? picked : await picked;
      } catch (err) {
        // Nothing left to try after a failure: the failure is the answer (502/504), not a 503.
        if (lastError !== null && (err as ScgiError).code === 'SCGI_ERR_NO_BACKEND') {
          // Every backend failed as a restarting one does: wait, then a new round on the same
          // backends. A round in which nothing was usable ends it (backends marked down stay out
          // for failTimeout, longer than a wait is worth).
          if (
            !this.#mayWait(
              lastError,
              lastAnswered,
              resendable,
              tried ?? NOTHING_TRIED,
              deadline,
              attempt,
            )
          )
            throw lastError;
          await retryPause(this.options.retryDelay, deadline, watch, lastError);
          tried?.clear();
          attempt--; // no exchange was made this time round
          continue;
        }
        throw err;
      }
      let requestHead =
        backend.protocol === firstProtocol ? firstHead : otherHeads?.get(backend.protocol);
      if (requestHead === undefined || requestHead === null) {
        // A member of another protocol joined while this request waited (setUpstream).
        try {
          requestHead = encodeHead(backend.protocol, env, length, keep, built);
          if (otherHeads === null) otherHeads = new Map();
          otherHeads.set(backend.protocol, requestHead);
        } catch (err) {
          this.pool.release(backend, { ok: false, failure: false });
          throw err;
        }
      }
      const trial = this.pool.takeTrial(backend);
      if (channels.upstream.hasSubscribers) {
        channels.upstream.publish({ id, request: req, upstream: backend.address.label, attempt });
      }
      const pool = this.pool;
      const exchange: Exchange = new Exchange({
        options: o,
        address: backend.address,
        protocol: backend.protocol,
        requestHead,
        body,
        noResponseBody: req.method === 'HEAD',
        signal: watch.userSignal,
        onDone: (outcome) => {
          this.#inFlight.delete(exchange);
          pool.release(backend, outcome, trial);
          if (this.#drains.size > 0) for (const check of [...this.#drains]) check();
          if (outcome.ok && channels.end.hasSubscribers) {
            channels.end.publish({
              id,
              request: req,
              upstream: backend.address.label,
              error: outcome.error,
            });
          }
          if (this.#inFlight.size === 0) this.#notifyIdle();
        },
        onHead: (response) => {
          // Published when the head arrives, so always before `end` of the same exchange.
          if (channels.head.hasSubscribers) {
            channels.head.publish({
              id,
              request: req,
              upstream: response.upstream,
              statusCode: response.statusCode,
              timings: response.timings,
            });
          }
        },
        poolBody: opts.recycleBody === true,
        keepAlive: backend.keepAlive,
        // Only a request that can be sent again rides a kept connection (see KEPT_BODY_LIMIT).
        reuse: replayable && !fresh,
      });
      fresh = false;
      this.#inFlight.add(exchange);
      watch.exchange = exchange;
      try {
        if (watch.reason !== null) exchange.destroy(watch.reason);
        return await exchange.start();
      } catch (err) {
        const e = err as ScgiError;
        lastError = e;
        lastAnswered = exchange.responseStarted;
        if (
          !freshUsed &&
          watch.reason === null &&
          !this.#closing &&
          mayRetryFresh(e, exchange.responseStarted)
        ) {
          // Once, on a new connection, to any backend (this one too), and not counted as a try.
          freshUsed = true;
          fresh = true;
          attempt--;
          continue;
        }
        if (tried === null) tried = new Set();
        tried.add(backend);
        const mayRetry = mayRetryElsewhere(e, resendable, exchange.responseStarted, replayable);
        if (
          !mayRetry ||
          watch.reason !== null ||
          (o.maxTries > 0 && attempt >= o.maxTries) ||
          Date.now() >= deadline ||
          this.#closing
        )
          throw e;
      }
    }
  }

  /**
   * A failed request may wait `retryDelay` and go to the same backends again: the failure looks
   * like a restart (failure-policy.ts), the bounds allow another attempt, and some backend of the
   * round may still be restarting: it has not been failing for longer than `retryTimeout` (or it
   * just had a success). Past that it is down, not restarting, and its requests get their 502 at
   * once instead of each waiting `retryTimeout`; each still tries it once, so the first success
   * ends the outage. A round in which nothing was usable (`tried` empty) ends it too.
   */
  #mayWait(
    err: ScgiError,
    answered: boolean,
    resendable: boolean,
    tried: ReadonlySet<Backend>,
    deadline: number,
    attempt: number,
  ): boolean {
    const o = this.options;
    const now = Date.now();
    if (
      o.retryDelay === 0 ||
      o.retryTimeout === 0 ||
      (o.maxTries > 0 && attempt > o.maxTries) ||
      now >= deadline ||
      this.#closing ||
      !mayRetryLater(err, resendable, answered)
    )
      return false;
    for (const b of tried)
      if (b.failingSince === 0 || now - b.failingSince < o.retryTimeout) return true;
    return false;
  }

  #notifyIdle(): void {
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }

  /**
   * Graceful shutdown: new requests get 503 `SCGI_ERR_CLOSING`, queued ones too; requests in
   * flight may finish within `grace` ms, then their backend connections are destroyed. Health
   * checks and timers stop. Resolves when nothing is left.
   */
  async close(grace: number = this.options.closeGrace): Promise<void> {
    this.#closing = true;
    this.#members?.stop();
    this.pool.close();
    this.#health?.stop();
    if (this.#inFlight.size > 0) await this.#drain(grace);
    await this.#supervisor?.stop();
  }

  #drain(grace: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        for (const ex of this.#inFlight.toArray()) ex.destroy(new ClosingError());
        resolve();
      }, grace);
      timer.unref();
      this.#idleWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

const NO_BODY: ExchangeBody = { kind: 'none' };
/** `tried` of a request's first attempt. */
const NOTHING_TRIED: ReadonlySet<Backend> = new Set();
const SPAWN_HEALTH_CHECK = resolveHealthCheck({ interval: 1000, timeout: 1000 })!;

function bodyLength(body: ExchangeBody): number {
  switch (body.kind) {
    case 'none':
      return 0;
    case 'buffer':
      return body.data.length;
    case 'stream':
      return body.length;
    case 'spooled':
      return body.spool.length;
  }
}

/** The request head as `protocol` frames it; a kept connection only where the protocol keeps one. */
function encodeHead(
  protocol: WireProtocol,
  env: readonly EnvPair[],
  length: number,
  keepAlive: boolean,
  built: boolean,
): Buffer {
  return protocol.encodeRequestHead(env, length, keepAlive && protocol.keepsConnections, built);
}

/**
 * The wait before a new round on the same backends: a random time in [0, `max`] ms (full
 * jitter: requests that failed together do not come back together), cut at the deadline, and
 * over at once, with its timer cleared, when the client goes away. Rejects with `lastError`
 * when the deadline leaves no room for another try.
 */
function retryPause(
  max: number,
  deadline: number,
  watch: ClientWatch,
  lastError: ScgiError,
): Promise<void> {
  const left = deadline - Date.now();
  if (left <= 0) return Promise.reject(lastError);
  const signal = watch.signal();
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(
      () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      },
      Math.min(left, Math.floor(Math.random() * (max + 1))),
    );
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

const kWatch = Symbol('scgi-core.watch');
type ResWithWatch = NonNullable<ScgiRequestOptions['res']> & { [kWatch]?: ClientWatch };

/** The `close` listener of a request's `res`: the client went away before the response ended. */
function onResClose(this: ResWithWatch): void {
  if (!this.writableFinished) this[kWatch]?.abort(new RequestAbortedError('the client went away'));
}

/**
 * Watches one request for its client going away (or the caller's signal). Cheap when nothing
 * happens: an AbortSignal is made only for the slow paths that need one.
 */
class ClientWatch implements AbortHook {
  readonly userSignal: AbortSignal | undefined;
  reason: ScgiError | null = null;
  exchange: Exchange | null = null;
  #controller: AbortController | null = null;
  #onUserAbort: (() => void) | null = null;
  /** Disposed: the request is over and an abort no longer concerns it. */
  #over = false;

  constructor(userSignal: AbortSignal | undefined) {
    this.userSignal = userSignal;
    if (userSignal?.aborted) this.reason = new RequestAbortedError('aborted');
  }

  abort(reason: ScgiError): void {
    if (this.reason !== null || this.#over) return;
    this.reason = reason;
    this.exchange?.destroy(reason);
    const hook = this.#hook;
    this.#hook = null;
    hook?.(reason);
    this.#controller?.abort(reason);
  }

  /** The one waiter in the pool's queue to tell (AbortHook): a callback, not an EventTarget. */
  #hook: ((reason: ScgiError) => void) | null = null;

  onAbort(cb: (reason: ScgiError) => void): () => void {
    this.#listenToCaller();
    this.#hook = cb;
    return () => {
      if (this.#hook === cb) this.#hook = null;
    };
  }

  /** The caller's signal aborts this request too (attached when something waits on it). */
  #listenToCaller(): void {
    const user = this.userSignal;
    if (this.#onUserAbort === null && user !== undefined && !user.aborted) {
      this.#onUserAbort = () => this.abort(new RequestAbortedError('aborted'));
      user.addEventListener('abort', this.#onUserAbort, { once: true });
    }
  }

  /** A signal that fires on abort (made on first use). */
  signal(): AbortSignal {
    if (this.#controller === null) {
      this.#controller = new AbortController();
      if (this.reason !== null) this.#controller.abort(this.reason);
      this.#listenToCaller();
    }
    return this.#controller.signal;
  }

  /**
   * The request is over: stop listening to the caller's signal, which may outlive many requests
   * (a running exchange keeps its own listener until it ends).
   */
  dispose(): void {
    this.#over = true;
    if (this.#onUserAbort !== null) {
      this.userSignal?.removeEventListener('abort', this.#onUserAbort);
      this.#onUserAbort = null;
    }
  }
}
