/**
 * express-scgi: Express 4/5 middleware that forwards requests under its mount path to an SCGI
 * app. The engine is scgi-core; this file only maps it onto Express: SCRIPT_NAME from the mount
 * path, bodies already read by body parsers (their raw bytes or an error), `next(err)` before
 * the head, a destroyed response after it.
 */
import type { Server as HttpServer, IncomingMessage, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import {
  type EnvPair,
  keepRawBody,
  type PoolStats,
  type ScgiError,
  ScgiProxy,
  type ScgiProxyOptions,
  type ScgiResponse,
} from 'scgi-core';
import {
  applyResponseHead,
  BODY_PARSER_FIX,
  type ExchangeLogLevel,
  logExchangeWhenOver,
  logFailure,
  nodeHeadTarget,
  parsedBodyGuard,
  plainEnd,
  resolveExchangeLog,
  serverOf,
  setErrorHeaders,
  splitAdapterOptions,
  tieToServer,
  writeErrorResponse,
  writeResponse,
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
/** `onError`: a failure before the head, in Express's error-middleware shape. */
export type ErrorHandler = (
  err: ScgiError,
  req: ExpressLikeRequest,
  res: ServerResponse,
  next: NextFunction,
) => void;

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
  /**
   * Handles a failure before the response head (502/503/504/413/400...) instead of `next(err)`
   * or `respondOnError`; the error's headers (Retry-After, Connection: close) are on `res`.
   */
  onError?: ErrorHandler;
  /** The level of the line per exchange on `logger` ("scgi response"), or `false`. @default 'info' */
  exchangeLog?: boolean | ExchangeLogLevel;
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
   * Ties the middleware to its server before the first request (it does so itself at the first):
   * CONNECT gets 405 `SCGI_ERR_METHOD_NOT_ALLOWED`, the proxy closes with the server.
   */
  attach<S extends HttpServer | HttpsServer>(server: S): S;
};

const ADAPTER_KEYS = {
  respondOnError: 'boolean',
  rewriteEnv: 'function',
  onResponse: 'function',
  onError: 'function',
  exchangeLog: 'any',
} as const;

/**
 * Creates the middleware: `app.use('/app', scgiProxy({ upstream: 'unix:/run/app.sock' }))`.
 * SCRIPT_NAME is the path the middleware is mounted at (`req.baseUrl`).
 */
export function scgiProxy(options: ExpressScgiOptions): ScgiMiddleware {
  // Every key is checked first, so a misspelt one is named with the closest option.
  const { core } = splitAdapterOptions(options, ADAPTER_KEYS);
  const level = resolveExchangeLog(options.exchangeLog);
  const proxy = new ScgiProxy(core);
  const { respondOnError = false, rewriteEnv, onResponse, onError } = options;
  const logger = proxy.options.logger;
  // A body parser mounted before the proxy: forward the raw bytes it kept, or refuse.
  const readBody = parsedBodyGuard({
    logger,
    fix: BODY_PARSER_FIX.express,
    message:
      'express-scgi: a body parser read the request body before the proxy; mount scgiProxy() before express.json() / urlencoded() / text(), or pass `verify: keepRawBody` to the parser (requests get 500 SCGI_ERR_BODY_CONSUMED meanwhile)',
  });

  const fail: ErrorHandler = (err, req, res, next) => {
    if (res.headersSent || res.destroyed) return void res.destroy();
    setErrorHeaders(res, err);
    // Error middleware logs what it gets; what none sees is the exchange's one line (its level).
    if (!respondOnError && onError === undefined) return next(err);
    if (logger !== null && level !== null) logFailure(logger, level, err);
    if (onError !== undefined) onError(err, req, res, next);
    else writeErrorResponse(res, err, req.method);
  };

  const middleware = (req: ExpressLikeRequest, res: ServerResponse, next: NextFunction): void => {
    // CONNECT never reaches Express (scgi-core http/connect-method.ts): answered on the server.
    const server = serverOf(req);
    if (server !== undefined) tieToServer(proxy, server);
    let body: Buffer | undefined;
    try {
      body = readBody(req, req.body, req.rawBody);
    } catch (err) {
      fail(err as ScgiError, req, res, next);
      return;
    }
    // No hook sees the response and Node's own res.end sends it: its buffer can serve again.
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
          if (logger !== null && level !== null) logExchangeWhenOver(logger, level, response);
          // A body that fails before its first byte is an error answer, as before the head.
          const onEarlyFailure = (err: ScgiError) => fail(err, req, res, next);
          if (onResponse === undefined) {
            writeResponse(res, response, { recycle, onEarlyFailure });
            return;
          }
          applyResponseHead(nodeHeadTarget(res), response);
          return Promise.resolve(onResponse(req, res, response)).then((go) => {
            // The head is already on `res` (and maybe changed by the hook): keep it as it is.
            if (go !== false) writeResponse(res, response, { head: false, onEarlyFailure });
          });
        },
        (err: ScgiError) => fail(err, req, res, next),
      )
      .catch((err: Error) => fail(err as ScgiError, req, res, next));
  };
  // With `spawn`, start the workers now; a failure is reported through ready() and to requests.
  if (options.spawn !== undefined) proxy.ready().catch(() => {});
  return Object.assign(middleware, {
    proxy,
    close: (grace?: number) => proxy.close(grace),
    stats: () => proxy.stats(),
    ready: () => proxy.ready(),
    attach: <S extends HttpServer | HttpsServer>(server: S): S => {
      tieToServer(proxy, server);
      return server;
    },
  });
}

export default scgiProxy;
export { keepRawBody };
export type { EnvPair, ScgiError, ScgiResponse };
