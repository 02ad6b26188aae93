/** express-scgi's option and middleware types (index.ts holds the middleware). */
import type { Server as HttpServer, IncomingMessage, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type {
  EnvPair,
  PoolStats,
  ScgiError,
  ScgiProxy,
  ScgiProxyOptions,
  ScgiResponse,
} from 'scgi-core';
import type { ExchangeLogLevel } from 'scgi-core/adapter';

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
   * A ready-made health route: `app.get('/healthz', mw.health)` answers 200 while a backend can
   * take a request and 503 when none can or the proxy is closing, with `{ status, up, total }`
   * (no backend addresses).
   */
  health(req: IncomingMessage, res: ServerResponse): void;
  /**
   * Ties the middleware to its server before the first request (it does so itself at the first):
   * CONNECT gets 405 `SCGI_ERR_METHOD_NOT_ALLOWED`, the proxy closes with the server.
   */
  attach<S extends HttpServer | HttpsServer>(server: S): S;
};
