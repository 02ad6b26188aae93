/**
 * express-scgi: Express 4/5 middleware that forwards requests under its mount path to an SCGI
 * app. The engine is scgi-core; this file only maps it onto Express: SCRIPT_NAME from the mount
 * path, bodies already read by body parsers (their raw bytes or an error), `next(err)` before
 * the head, a destroyed response after it.
 */
import type { EventEmitter } from 'node:events';
import type { Server as HttpServer, IncomingMessage } from 'node:http';
import { ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { pipeline } from 'node:stream';
import {
  type EnvPair,
  InvalidOptionError,
  keepRawBody,
  type PoolStats,
  type ScgiError,
  ScgiProxy,
  type ScgiProxyOptions,
  type ScgiResponse,
} from 'scgi-core';
import {
  BODY_PARSER_FIX,
  errorResponseHeaders,
  parsedBodyGuard,
  publicHealth,
  recycleBodyBuffer,
  refuseConnect,
  splitAdapterOptions,
} from 'scgi-core/adapter';

/** The parts of an Express request this middleware reads (Express 4 and 5 both have them). */
export interface ExpressLikeRequest extends IncomingMessage {
  originalUrl?: string;
  baseUrl?: string;
  /** What a body parser left (`express.json()`...); never forwarded unless it is raw bytes. */
  body?: unknown;
  /** The exact bytes a parser read, kept by `verify: keepRawBody` or another middleware. */
  rawBody?: unknown;
}

export type NextFunction = (err?: unknown) => void;

/** Adapter options, on top of the engine's (`upstream` or `spawn`, timeouts, limits...). */
export type ExpressScgiOptions = ScgiProxyOptions & ExpressScgiOptionsExtra;

export interface ExpressScgiOptionsExtra {
  /**
   * Answer failures before the response head directly (status from the error, a small JSON
   * body with `code` and `message`, no upstream address) instead of calling `next(err)`.
   * @default false
   */
  respondOnError?: boolean;
  /** Last look at the CGI environment of each request; return a new list or change it in place. */
  rewriteEnv?: (env: EnvPair[], req: ExpressLikeRequest) => EnvPair[] | undefined;
  /**
   * Sees the backend's response head before it is sent; may change `res` (headers, status).
   * Return `false` to send something else yourself (then consume or destroy `response.body`).
   */
  onResponse?: (
    req: ExpressLikeRequest,
    res: ServerResponse,
    response: ScgiResponse,
  ) => undefined | boolean | Promise<undefined | boolean>;
}

export type ScgiMiddleware = ((
  req: ExpressLikeRequest,
  res: ServerResponse,
  next: NextFunction,
) => void) & {
  /** The scgi-core engine behind this middleware. */
  readonly proxy: ScgiProxy;
  /** Resolves when it can serve; with `spawn`, once every worker accepts connections. */
  ready(): Promise<void>;
  /** Graceful shutdown (`ScgiProxy.close`); with `spawn`, also stops the workers. */
  close(grace?: number): Promise<void>;
  /** Per-backend state and counters. */
  stats(): PoolStats;
  /**
   * A ready-made health route: `app.get('/healthz', mw.health)` answers 200 while a backend can
   * take a request and 503 when none can or the proxy is closing, with `{ status, up, total }`
   * (no backend addresses).
   */
  health(req: IncomingMessage, res: ServerResponse): void;
  /**
   * Ties the middleware to the HTTP server it runs on, before the first request: CONNECT gets
   * 405 `SCGI_ERR_METHOD_NOT_ALLOWED` (Node would close the connection unanswered) and the
   * proxy closes with the server. The middleware does both by itself when it sees its first
   * request; `attach` covers what comes earlier. Returns `server`.
   */
  attach<S extends HttpServer | HttpsServer>(server: S): S;
};

/** What the middleware needs of the server a request came in on. */
type AttachedServer = EventEmitter;

const ADAPTER_KEYS = new Set(['respondOnError', 'rewriteEnv', 'onResponse']);

/**
 * Creates the middleware: `app.use('/app', scgiProxy({ upstream: 'unix:/run/app.sock' }))`.
 * SCRIPT_NAME is the path the middleware is mounted at (`req.baseUrl`).
 */
export function scgiProxy(options: ExpressScgiOptions): ScgiMiddleware {
  // Every key is checked first, so a misspelt one is named with the closest option.
  const { core } = splitAdapterOptions(options, ADAPTER_KEYS);
  for (const k of ['rewriteEnv', 'onResponse'] as const) {
    if (options[k] !== undefined && typeof options[k] !== 'function')
      throw new InvalidOptionError(k, 'must be a function');
  }
  if (options.respondOnError !== undefined && typeof options.respondOnError !== 'boolean') {
    throw new InvalidOptionError('respondOnError', 'must be a boolean');
  }
  const proxy = new ScgiProxy(core);
  const { respondOnError = false, rewriteEnv, onResponse } = options;
  // A body parser mounted before the proxy: forward the raw bytes it kept, or refuse.
  const readBody = parsedBodyGuard({
    logger: proxy.options.logger,
    fix: BODY_PARSER_FIX.express,
    message:
      'express-scgi: a body parser read the request body before the proxy; mount scgiProxy() before express.json() / urlencoded() / text(), or pass `verify: keepRawBody` to the parser (requests get 500 SCGI_ERR_BODY_CONSUMED meanwhile)',
  });

  const fail = (
    err: ScgiError,
    req: ExpressLikeRequest,
    res: ServerResponse,
    next: NextFunction,
  ) => {
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    const headers = errorResponseHeaders(err);
    for (const name in headers) res.setHeader(name, headers[name]!);
    if (!respondOnError) {
      next(err);
      return;
    }
    const status = typeof err.statusCode === 'number' ? err.statusCode : 502;
    const payload = JSON.stringify({ statusCode: status, code: err.code, message: err.message });
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(payload),
    });
    res.end(req.method === 'HEAD' ? undefined : payload);
  };

  const servers = new WeakSet<object>();
  const close = (grace?: number) => proxy.close(grace);
  const attachTo = (server: AttachedServer) => {
    if (servers.has(server)) return;
    servers.add(server);
    server.once('close', () => void proxy.close(0));
    // CONNECT is emitted apart from requests and never reaches Express (see scgi-core
    // http/connect-method.ts): the server is the only place to answer it.
    refuseConnect(server);
  };
  const middleware = (req: ExpressLikeRequest, res: ServerResponse, next: NextFunction): void => {
    const server = (req.socket as { server?: AttachedServer }).server;
    if (server !== undefined && !servers.has(server)) attachTo(server);
    let body: Buffer | undefined;
    try {
      body = readBody(req, req.body, req.rawBody);
    } catch (err) {
      fail(err as ScgiError, req, res, next);
      return;
    }
    // No hook sees the response and Node's own res.end sends it: a small body's buffer can serve
    // a later one once sent.
    const recycle = onResponse === undefined && plainEnd(res);
    proxy
      .request(req, {
        scriptName: req.baseUrl ?? '',
        url: req.originalUrl ?? req.url,
        body,
        res,
        rewriteEnv: rewriteEnv === undefined ? undefined : (env) => rewriteEnv(env, req),
        recycleBody: recycle,
      })
      .then(
        (response) => {
          if (onResponse === undefined) {
            send(res, response, true, recycle);
            return;
          }
          res.statusCode = response.statusCode;
          if (response.statusMessage !== '') res.statusMessage = response.statusMessage;
          for (const name in response.headers) res.setHeader(name, response.headers[name]!);
          return Promise.resolve(onResponse(req, res, response)).then((go) => {
            // The head is already on `res` (and maybe changed by the hook): keep it as it is.
            if (go !== false) send(res, response, false, false);
          });
        },
        (err: ScgiError) => fail(err, req, res, next),
      )
      .catch((err: Error) => fail(err as ScgiError, req, res, next));
  };
  if (options.spawn !== undefined) {
    // Start the workers now; a failure is reported through ready() and to each request.
    proxy.ready().catch(() => {});
  }
  return Object.assign(middleware, {
    proxy,
    close,
    stats: () => proxy.stats(),
    health: (req: IncomingMessage, res: ServerResponse) => {
      const health = proxy.health();
      const payload = JSON.stringify(publicHealth(health));
      res.writeHead(health.status === 'up' ? 200 : 503, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(payload),
        'cache-control': 'no-store',
      });
      res.end(req.method === 'HEAD' ? undefined : payload);
    },
    ready: () => proxy.ready(),
    attach: <S extends HttpServer | HttpsServer>(server: S): S => {
      attachTo(server as unknown as AttachedServer);
      return server;
    },
  });
}

/**
 * Sends the backend's answer; with `applyHead`, its status and headers first (added to the headers
 * earlier middleware set). A small body collected whole goes out in one write; a streamed one through
 * `pipeline`, which destroys `res` when the backend body fails: the client sees a cut
 * connection, never a clean end of a truncated body.
 */
function send(
  res: ServerResponse,
  response: ScgiResponse,
  applyHead: boolean,
  recycle: boolean,
): void {
  if (applyHead && !res.headersSent) {
    // setHeader, not writeHead: Node then adds the Content-Length of a body sent whole.
    res.statusCode = response.statusCode;
    if (response.statusMessage !== '') res.statusMessage = response.statusMessage;
    const headers = response.headers;
    for (const name in headers) res.setHeader(name, headers[name]!);
  }
  const buf = response.bodyBuffer;
  if (buf !== null) {
    res.end(buf);
    // 'finish': every byte went to the kernel, so Node holds the buffer no more; with Node's own
    // `res.end`, nothing else got it (compression or session middleware wrap `res.end` and may
    // keep it). Without 'finish' (client gone) it is left to the GC.
    // Checked again: nothing may have wrapped `res.end` since the request started.
    if (recycle && plainEnd(res)) res.once('finish', () => recycleBodyBuffer(response));
    return;
  }
  pipeline(response.body, res, () => {});
}

const NODE_END = ServerResponse.prototype.end;
const NODE_WRITE = ServerResponse.prototype.write;

/** `res.end` and `res.write` are Node's own: no middleware wrapped them. */
function plainEnd(res: ServerResponse): boolean {
  return res.end === NODE_END && res.write === NODE_WRITE;
}

export default scgiProxy;
export { keepRawBody };
export type { EnvPair, ScgiError, ScgiResponse };
