/**
 * express-scgi: Express 4/5 middleware that forwards requests under its mount path to an SCGI
 * app. The engine is scgi-core; this file only maps it onto Express: SCRIPT_NAME from the mount
 * path, bodies already read by body parsers (their raw bytes or an error), `next(err)` before
 * the head, a destroyed response after it.
 */
import type { Server as HttpServer, IncomingMessage, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { type EnvPair, keepRawBody, ScgiError, ScgiProxy, type ScgiResponse } from 'scgi-core';
import {
  applyResponseHead,
  BODY_PARSER_FIX,
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
  writeHealth,
  writeResponse,
} from 'scgi-core/adapter';
import type {
  ErrorHandler,
  ExpressLikeRequest,
  ExpressScgiOptions,
  NextFunction,
  ScgiMiddleware,
} from './options.js';

export type * from './options.js';

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
    // Not the proxy's (an onResponse hook threw): Express's own rule, a 500 by its handler.
    if (!(err instanceof ScgiError)) return next(err);
    setErrorHeaders(res, err);
    // Error middleware logs what it gets; what none sees is the exchange's one line (its level).
    if (!respondOnError && onError === undefined) return next(err);
    if (logger !== null && level !== null) logFailure(logger, level, err);
    if (onError === undefined) return writeErrorResponse(res, err, req.method);
    // A hook that throws or rejects is an error as middleware's are: to `next` (Express answers
    // 500), or, once the head went out, the end of the socket. Never an unhandled rejection.
    const hookFailed = (thrown: unknown) =>
      res.headersSent || res.destroyed ? res.destroy(thrown as Error) : next(thrown);
    try {
      const done = onError(err, req, res, next) as unknown;
      if (done instanceof Promise) done.catch(hookFailed);
    } catch (thrown) {
      hookFailed(thrown);
    }
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
    // Every failure from here on, also a body that fails before its first byte (an error answer,
    // as before the head).
    const failHere = (err: unknown) => fail(err as ScgiError, req, res, next);
    proxy
      .request(req, {
        scriptName: req.baseUrl ?? '',
        url: req.originalUrl ?? req.url,
        body,
        res,
        rewriteEnv: rewriteEnv === undefined ? undefined : (env) => rewriteEnv(env, req),
        recycleBody: recycle,
      })
      // Both handlers catch what they throw themselves: no `.catch` after them, whose promise
      // would be one more microtask per request.
      .then(
        (response) => {
          try {
            if (logger !== null && level !== null) logExchangeWhenOver(logger, level, response);
            if (onResponse === undefined) {
              writeResponse(res, response, { recycle, onEarlyFailure: failHere });
              return;
            }
            applyResponseHead(nodeHeadTarget(res), response);
            Promise.resolve(onResponse(req, res, response))
              .then((go) => {
                // The head is already on `res` (and maybe changed by the hook): keep it as it is.
                if (go !== false) {
                  writeResponse(res, response, { head: false, onEarlyFailure: failHere });
                }
              })
              .catch(failHere);
          } catch (err) {
            failHere(err);
          }
        },
        (err: ScgiError) => {
          try {
            failHere(err);
          } catch (thrown) {
            failHere(thrown);
          }
        },
      );
  };
  // With `spawn`, start the workers now; a failure is reported through ready() and to requests.
  if (options.spawn !== undefined) proxy.ready().catch(() => {});
  return Object.assign(middleware, {
    proxy,
    close: (grace?: number) => proxy.close(grace),
    stats: () => proxy.stats(),
    health: (req: IncomingMessage, res: ServerResponse) => writeHealth(req, res, proxy.health()),
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
