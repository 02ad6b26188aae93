/**
 * fastify-scgi: a Fastify 5 plugin that puts an SCGI app (flup, uWSGI, Python scgi...) behind
 * a route prefix. The engine is scgi-core; this file only maps it onto Fastify: routes and their
 * hooks, the raw body passthrough, `reply.scgi()`, the error handler, logs and `onClose`.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { EnvPair, ScgiError, ScgiLogger, ScgiProxy, ScgiResponse } from 'scgi-core';
import {
  applyResponseHead,
  BODY_PARSER_FIX,
  checkMountPrefix,
  logExchangeWhenOver,
  parsedBodyGuard,
  refuseConnect,
  resolveExchangeLog,
  resolveMountMethods,
  routableUrl,
  ScgiProxySet,
  setErrorHeaders,
  splitAdapterOptions,
} from 'scgi-core/adapter';
import { passContentType, restoreContentType } from './content-type.js';
import { ADAPTER_KEYS, type FastifyScgiOptions, type ReplyScgiOptions } from './options.js';
import { mayRecycle } from './recycle.js';
import { replyTarget, sendBody } from './reply.js';

export { scgiHealthRoute } from './health.js';
export type * from './options.js';

const kScgi = Symbol('fastify-scgi');
const kOriginalUrl = Symbol('fastify-scgi.originalUrl');
type RawWithUrl = { [kOriginalUrl]?: string; url?: string };
type Registration = { proxies: ScgiProxySet; mount: string; send: Send };
type Send = (reply: FastifyReply, opts?: ReplyScgiOptions, routed?: boolean) => FastifyReply;

async function fastifyScgiPlugin(
  fastify: FastifyInstance,
  options: FastifyScgiOptions,
): Promise<void> {
  const { core } = splitAdapterOptions(options, ADAPTER_KEYS);
  const prefix = checkMountPrefix(options.prefix);
  // Inside a prefixed context (`register(..., { prefix: '/v1' })`) SCRIPT_NAME is the whole mount.
  const mount = fastify.prefix + prefix;
  const methods = resolveMountMethods(options.methods, fastify.supportedMethods);
  const level = resolveExchangeLog(options.exchangeLog);
  const log = fastify.log.child({ plugin: 'fastify-scgi' }) as ScgiLogger;
  // Worker output and lifecycle events go to Fastify's logger.
  if (core.spawn !== undefined && core.logger === undefined) core.logger = log;
  const proxies = new ScgiProxySet(core, options.upstreams);
  const readBody = parsedBodyGuard({
    logger: proxies.default.options.logger ?? log,
    fix: BODY_PARSER_FIX.fastify,
    message:
      'fastify-scgi: reply.scgi() on a route whose body Fastify parsed; keep the raw bytes as request.rawBody, or serve the path from the plugin prefix, whose routes read no body (requests get 500 SCGI_ERR_BODY_CONSUMED meanwhile)',
  });
  // Graceful shutdown: requests in flight may finish within `closeGrace`, then the rest is cut.
  fastify.addHook('preClose', () => proxies.close());
  fastify.addHook('onClose', () => proxies.close(0));
  // CONNECT never reaches a route: answered 405 on the server (scgi-core http/connect-method.ts).
  const stopRefusingConnect = refuseConnect(fastify.server);
  fastify.addHook('onClose', async () => stopRefusingConnect());
  // With `spawn`, registration waits until the workers accept connections (else SCGI_ERR_SPAWN).
  await proxies.ready();

  const send: Send = (reply, opts = {}, routed = false) => {
    const request = reply.request;
    const raw = request.raw as typeof request.raw & RawWithUrl;
    const onError = opts.onError ?? options.onError;
    const onResponse = opts.onResponse ?? options.onResponse;
    const rewriteEnv = opts.rewriteEnv ?? options.rewriteEnv;
    const fail = async (error: ScgiError) => {
      if (reply.sent || reply.raw.destroyed) return;
      setErrorHeaders(reply.raw, error);
      // Fastify's error handler logs what it gets: logged here only when a hook takes it.
      if (onError === undefined) return void reply.send(error);
      request.log.warn({ err: error, upstream: error.upstream }, 'scgi request failed');
      await onError(reply, { error });
    };
    let engine: ScgiProxy;
    let body = opts.body;
    try {
      engine = proxies.get(opts.upstream ?? (routed ? options.getUpstream?.(request) : undefined));
      // The plugin's own routes leave the stream unread (undefined: it is streamed).
      body ??= readBody(raw, request.body, (request as { rawBody?: unknown }).rawBody);
    } catch (err) {
      void fail(err as ScgiError);
      return reply;
    }
    const recycle = onResponse === undefined && mayRecycle(reply);
    engine
      .request(raw, {
        scriptName: opts.scriptName ?? (routed ? mount : ''),
        url: raw[kOriginalUrl] ?? raw.url,
        body,
        res: reply.raw,
        rewriteEnv: rewriteEnv === undefined ? undefined : (env) => rewriteEnv(env, request),
        requestId: request.id,
        recycleBody: recycle,
      })
      .then((response) => {
        applyResponseHead(replyTarget(reply), response);
        // Also when onResponse sends something else itself.
        if (level !== null) logExchangeWhenOver(request.log, level, response);
        if (onResponse === undefined) return sendBody(reply, response, recycle);
        return Promise.resolve(onResponse(request, reply, response)).then(() => {
          if (!reply.sent) sendBody(reply, response, false);
        });
      }, fail)
      // What a handler above or a hook throws or rejects with: the reply ends with it.
      .catch((err: Error) => (reply.sent ? reply.raw.destroy(err) : reply.send(err)));
    return reply;
  };

  // reply.scgi() uses the registration of the route's own scope (`request.server`), the nearest
  // one up its chain; within one scope, the latest, as `fastify.scgiProxy`.
  const reg: Registration = { proxies, mount, send };
  (fastify as unknown as Record<symbol, Registration>)[kScgi] = reg;
  if (!fastify.hasDecorator('scgiProxy')) fastify.decorate('scgiProxy', proxies.default);
  else fastify.scgiProxy = proxies.default;
  if (!fastify.hasReplyDecorator('scgi')) {
    fastify.decorateReply('scgi', function scgi(this: FastifyReply, opts?: ReplyScgiOptions) {
      const own = (this.request.server as unknown as Record<symbol, Registration>)[kScgi] ?? reg;
      return own.send(this, opts);
    });
  }
  if (options.routes === false) return;

  for (const m of methods)
    if (!fastify.supportedMethods.includes(m)) fastify.addHttpMethod(m, { hasBody: true });
  // find-my-way answers 400 to a path that is not UTF-8 after decoding: route an escaped copy.
  const onRawRequest = (req: RawWithUrl) => {
    const url = req.url === undefined ? null : routableUrl(req.url, mount);
    if (url === null) return;
    req[kOriginalUrl] = req.url;
    req.url = url;
  };
  const server = fastify.server.prependListener('request', onRawRequest);
  fastify.addHook('onClose', async () => void server.removeListener('request', onRawRequest));

  const { onRequest, preHandler, constraints, config, logLevel } = options;
  const shared = { onRequest, preHandler, constraints, config, logLevel, exposeHeadRoute: false };
  await fastify.register(async (scope) => {
    // Raw body passthrough under the prefix only: other routes keep their parsers.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_req, _payload, done) => done(null));
    const handler = (request: FastifyRequest, reply: FastifyReply): void => {
      restoreContentType(request.raw);
      send(reply, undefined, true);
    };
    // Fastify checks the Content-Type of methods with a body only: GET, HEAD, TRACE skip the hook.
    const bodyless = methods.filter((m) => BODYLESS.has(m));
    const bodied = methods.filter((m) => !BODYLESS.has(m));
    for (const url of [prefix === '' ? '/' : prefix, `${prefix}/*`]) {
      if (bodyless.length > 0) scope.route({ ...shared, method: bodyless, url, handler });
      if (bodied.length > 0)
        scope.route({ ...shared, method: bodied, url, handler, preParsing: passContentType });
    }
  });
}

const BODYLESS = new Set(['GET', 'HEAD', 'TRACE']);

/** The Fastify plugin. `app.register(fastifyScgi, { upstream, prefix })`. */
export const fastifyScgi = fp(fastifyScgiPlugin, { fastify: '5.x', name: 'fastify-scgi' });
export default fastifyScgi;
export type { EnvPair, ScgiError, ScgiResponse };
