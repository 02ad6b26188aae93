/**
 * fastify-scgi: a Fastify 5 plugin that puts an SCGI app (flup, uWSGI, Python scgi...) behind
 * a route prefix. The engine is scgi-core; this file only maps it onto Fastify: routes, the raw
 * body passthrough, hooks, the error handler, logs and `onClose`.
 */
import { type IncomingMessage, METHODS } from 'node:http';
import type {
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  preParsingHookHandler,
  RouteOptions,
} from 'fastify';
import fp from 'fastify-plugin';
import {
  type EnvPair,
  InvalidOptionError,
  type ScgiError,
  type ScgiLogger,
  ScgiProxy,
  type ScgiProxyOptions,
  type ScgiRequestOptions,
  type ScgiResponse,
} from 'scgi-core';
import {
  BODY_PARSER_FIX,
  errorResponseHeaders,
  parsedBodyGuard,
  publicHealth,
  refuseConnect,
  splitAdapterOptions,
} from 'scgi-core/adapter';

export interface FastifyScgiHookContext {
  request: FastifyRequest;
  reply: FastifyReply;
}

/** Adapter options, on top of the engine's (`upstream` or `spawn`, timeouts, limits...). */
export type FastifyScgiOptions = ScgiProxyOptions & FastifyScgiOptionsExtra;

export interface FastifyScgiOptionsExtra {
  /**
   * Mount prefix: every method on `prefix` and `prefix/*` goes to the backend, with
   * SCRIPT_NAME = prefix. "" or omitted serves from the root.
   * @default ''
   */
  prefix?: string;
  /**
   * Register the proxy routes. `false` only adds `reply.scgi()` for routes of your own.
   * @default true
   */
  routes?: boolean;
  /**
   * Last look at the CGI environment of each request (add, drop or change variables).
   * Return a new list or change it in place.
   */
  rewriteEnv?: (env: EnvPair[], request: FastifyRequest) => EnvPair[] | undefined;
  /**
   * Sees the backend's response head before it is sent; may change `reply` (status, headers),
   * or send something else itself (then it must consume or destroy `response.body`).
   */
  onResponse?: (
    request: FastifyRequest,
    reply: FastifyReply,
    response: ScgiResponse,
  ) => void | Promise<void>;
  /**
   * Handles a failure before the response head (502/503/504/413/400 errors). Default: the
   * error goes to Fastify's error handler, with its `statusCode` and `code`.
   */
  onError?: (reply: FastifyReply, context: { error: ScgiError }) => void | Promise<void>;
}

/** Per-call options of `reply.scgi()`. */
export interface ReplyScgiOptions {
  /** SCRIPT_NAME for this request. @default the plugin's prefix for proxy routes, "" otherwise */
  scriptName?: string;
  /**
   * Overrides the body. Else the raw request stream; on a route whose body Fastify parsed, the
   * exact bytes in `request.rawBody` (Buffer, or a UTF-8 string that provably matches), or 500
   * `SCGI_ERR_BODY_CONSUMED`: a parsed value is never re-encoded.
   */
  body?: ScgiRequestOptions['body'];
  rewriteEnv?: FastifyScgiOptions['rewriteEnv'];
  onResponse?: FastifyScgiOptions['onResponse'];
  onError?: FastifyScgiOptions['onError'];
}

declare module 'fastify' {
  interface FastifyReply {
    /** Sends this request to the SCGI backend and streams its answer back. */
    scgi(options?: ReplyScgiOptions): FastifyReply;
  }
  interface FastifyInstance {
    /** The scgi-core engine of the most recently registered fastify-scgi plugin. */
    scgiProxy: ScgiProxy;
  }
}

/**
 * The plugin's own options; `logLevel` and `logSerializers` are Fastify's register options, which
 * Fastify hands to the plugin with the rest.
 */
const ADAPTER_KEYS = new Set([
  'prefix',
  'routes',
  'rewriteEnv',
  'onResponse',
  'onError',
  'logLevel',
  'logSerializers',
]);
const kOriginalUrl = Symbol('fastify-scgi.originalUrl');
type RawWithUrl = { [kOriginalUrl]?: string; url?: string };

const kContentType = Symbol('fastify-scgi.contentType');
/** Fastify's methods without a body (its `bodyless` set): no Content-Type check for them. */
const BODYLESS = new Set(['GET', 'HEAD', 'TRACE']);
type RawWithContentType = IncomingMessage & { [kContentType]?: string | null };
/** `type/subtype` as Fastify checks it before any route runs (lib/content-type.js). */
const MEDIA_TYPE = /^\s*[\w!#$%&'*+.^`|~-]+\/[\w!#$%&'*+.^`|~-]+\s*(?:;|$)/;

/**
 * Fastify answers 415 to a Content-Type that is not `type/subtype` (`foo`, empty) and 400 to a
 * QUERY without one, before the handler runs; behind a proxy mount that is the backend's call,
 * as with nginx. Until the handler runs, such a request shows Fastify a neutral type (our '*'
 * parser reads nothing); the CGI environment is built from `rawHeaders`, which keep the original.
 */
const passContentType: preParsingHookHandler = (request, _reply, payload, done) => {
  const raw = request.raw as RawWithContentType;
  const type = raw.headers['content-type'];
  if (type === undefined ? raw.method === 'QUERY' : !MEDIA_TYPE.test(type)) {
    raw[kContentType] = type ?? null;
    raw.headers['content-type'] = 'application/octet-stream';
  }
  done(null, payload);
};

function restoreContentType(raw: RawWithContentType): void {
  const type = raw[kContentType];
  if (type === undefined) return;
  if (type === null) delete raw.headers['content-type'];
  else raw.headers['content-type'] = type;
  raw[kContentType] = undefined;
}

function checkPrefix(prefix: unknown): string {
  if (prefix === undefined || prefix === '' || prefix === '/') return '';
  if (typeof prefix !== 'string' || !prefix.startsWith('/') || prefix.endsWith('/')) {
    throw new InvalidOptionError(
      'prefix',
      'must be "" or start with "/" and not end with "/", e.g. "/app"',
    );
  }
  if (/[?#%*:\s]/.test(prefix)) {
    throw new InvalidOptionError('prefix', 'must be a plain path without ?, #, %, *, : or spaces');
  }
  return prefix;
}

function checkHook(name: string, value: unknown): void {
  if (value !== undefined && typeof value !== 'function') {
    throw new InvalidOptionError(name, 'must be a function');
  }
}

/** Where the path of an absolute-form target (`scheme://authority/path`) starts, else -1. */
function pathStart(url: string): number {
  const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/.exec(url);
  return m === null || url.charCodeAt(m[0].length) !== 0x2f ? -1 : m[0].length;
}

/** True when find-my-way would refuse the path (invalid UTF-8 after percent-decoding). */
function badlyEncoded(url: string): boolean {
  if (!url.includes('%')) return false;
  const q = url.indexOf('?');
  try {
    decodeURI(q === -1 ? url : url.slice(0, q));
    return false;
  } catch {
    return true;
  }
}

async function fastifyScgiPlugin(
  fastify: FastifyInstance,
  options: FastifyScgiOptions,
): Promise<void> {
  // Every key is checked first, so a misspelt one is named with the closest option.
  const { core } = splitAdapterOptions(options, ADAPTER_KEYS);
  const prefix = checkPrefix(options.prefix);
  // Registered inside a prefixed context (`register(..., { prefix: '/v1' })`), the routes live at
  // that prefix plus ours, and SCRIPT_NAME must be the whole mount path.
  const mount = fastify.prefix + prefix;
  checkHook('rewriteEnv', options.rewriteEnv);
  checkHook('onResponse', options.onResponse);
  checkHook('onError', options.onError);
  // Worker output and lifecycle events go to Fastify's logger.
  if (core.spawn !== undefined && core.logger === undefined)
    core.logger = fastify.log.child({ plugin: 'fastify-scgi' });
  const proxy = new ScgiProxy(core);
  // reply.scgi() on a route whose body Fastify parsed: forward the raw bytes kept, or refuse.
  const readBody = parsedBodyGuard({
    logger: proxy.options.logger ?? (fastify.log.child({ plugin: 'fastify-scgi' }) as ScgiLogger),
    fix: BODY_PARSER_FIX.fastify,
    message:
      'fastify-scgi: reply.scgi() on a route whose body Fastify parsed; keep the raw bytes as request.rawBody, or serve the path from the plugin prefix, whose routes read no body (requests get 500 SCGI_ERR_BODY_CONSUMED meanwhile)',
  });
  const defaults = {
    rewriteEnv: options.rewriteEnv,
    onResponse: options.onResponse,
    onError: options.onError,
  };

  // Graceful shutdown: before the server stops, let requests in flight finish within
  // `closeGrace`, then cut what is left (Fastify already answers new requests 503 while closing).
  fastify.addHook('preClose', async () => {
    await proxy.close();
  });
  fastify.addHook('onClose', async () => {
    await proxy.close(0);
  });

  // CONNECT never reaches a route (Node emits it apart, and destroys the socket unheard): answer
  // it 405 on the server, as nginx does, unless the app listens for it itself.
  const stopRefusingConnect = refuseConnect(fastify.server);
  fastify.addHook('onClose', async () => {
    stopRefusingConnect();
  });

  // With `spawn`, registration waits until the workers accept connections; a worker command that
  // fails at start fails `register()` / `ready()` with SCGI_ERR_SPAWN.
  await proxy.ready();

  if (!fastify.hasDecorator('scgiProxy')) fastify.decorate('scgiProxy', proxy);
  else fastify.scgiProxy = proxy;
  if (!fastify.hasReplyDecorator('scgi')) {
    fastify.decorateReply('scgi', function scgi(this: FastifyReply, opts?: ReplyScgiOptions) {
      return sendScgi(this, this.request.routeOptions.config as RouteConfig, opts);
    });
  }

  const sendScgi = (
    reply: FastifyReply,
    config: RouteConfig | undefined,
    opts: ReplyScgiOptions = {},
  ) => {
    const request = reply.request;
    const engine = config?.scgiProxy ?? proxy;
    const hooks = config?.scgiHooks ?? defaults;
    const raw = request.raw as typeof request.raw & RawWithUrl;
    let body = opts.body;
    if (body === undefined) {
      try {
        // The plugin's own routes leave the stream unread (undefined: it is streamed).
        body = readBody(raw, request.body, (request as { rawBody?: unknown }).rawBody);
      } catch (err) {
        reply.send(err);
        return reply;
      }
    }
    const onError = opts.onError ?? hooks.onError;
    const onResponse = opts.onResponse ?? hooks.onResponse;
    const rewriteEnv = opts.rewriteEnv ?? hooks.rewriteEnv;
    engine
      .request(raw, {
        scriptName: opts.scriptName ?? config?.scgiPrefix ?? '',
        url: raw[kOriginalUrl] ?? raw.url,
        body,
        res: reply.raw,
        rewriteEnv: rewriteEnv === undefined ? undefined : (env) => rewriteEnv(env, request),
        requestId: request.id,
      })
      .then(
        (response) => {
          reply.code(response.statusCode);
          if (response.statusMessage !== '' && request.raw.httpVersionMajor === 1) {
            (reply.raw as { statusMessage: string }).statusMessage = response.statusMessage;
          }
          setHeaders(reply, response.headers);
          // Also when onResponse sends something else itself.
          logWhenOver(request, response);
          if (onResponse === undefined) {
            sendBody(reply, response);
            return;
          }
          return Promise.resolve(onResponse(request, reply, response)).then(() => {
            if (!reply.sent) sendBody(reply, response);
          });
        },
        async (error: ScgiError) => {
          if (reply.sent || reply.raw.destroyed) return;
          request.log.warn({ err: error, upstream: error.upstream }, 'scgi request failed');
          reply.headers(errorResponseHeaders(error));
          if (onError !== undefined) await onError(reply, { error });
          else reply.send(error);
        },
      )
      .catch((err: Error) => {
        if (!reply.sent) reply.send(err);
        else reply.raw.destroy(err);
      });
    return reply;
  };

  if (options.routes === false) return;

  // Methods Node parses but Fastify does not route by default (WebDAV and friends): a proxy
  // mount forwards them all.
  const supported = new Set<string>(fastify.supportedMethods);
  for (const m of METHODS) {
    if (!supported.has(m) && m !== 'CONNECT') fastify.addHttpMethod(m, { hasBody: true });
  }
  const methods = fastify.supportedMethods.filter((m) => m !== 'CONNECT');

  // find-my-way answers 400 to a path that is not valid UTF-8 after percent-decoding before any
  // route runs; the backend must still see it (PATH_INFO is bytes). Keep the original and give
  // the router an escaped copy that routes to the same mount.
  const server = fastify.server;
  const onRawRequest = (req: RawWithUrl) => {
    const url = req.url;
    if (url === undefined || !badlyEncoded(url)) return;
    // An absolute-form target (`http://host/app/%E9`) routes by its path too.
    const start = url.charCodeAt(0) === 0x2f ? 0 : pathStart(url);
    if (start === -1 || !(mount === '' || url.startsWith(`${mount}/`, start))) return;
    req[kOriginalUrl] = url;
    const q = url.indexOf('?', start);
    const path = q === -1 ? url.slice(start) : url.slice(start, q);
    req.url = path.replaceAll('%', '%25') + (q === -1 ? '' : url.slice(q));
  };
  server.prependListener('request', onRawRequest);
  fastify.addHook('onClose', async () => {
    server.removeListener('request', onRawRequest);
  });

  const config: RouteConfig = { scgiProxy: proxy, scgiPrefix: mount, scgiHooks: defaults };
  await fastify.register(async (scope) => {
    // Raw body passthrough under the prefix only: other routes keep their parsers.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_req, _payload, done) => done(null));
    const handler = (request: FastifyRequest, reply: FastifyReply): void => {
      restoreContentType(request.raw as RawWithContentType);
      sendScgi(reply, request.routeOptions.config as RouteConfig);
    };
    // Fastify checks the Content-Type of methods that take a body only: GET, HEAD and TRACE
    // skip the hook (and its cost on every request).
    const bodyless = methods.filter((m) => BODYLESS.has(m));
    const bodied = methods.filter((m) => !BODYLESS.has(m));
    for (const url of [prefix === '' ? '/' : prefix, `${prefix}/*`]) {
      scope.route({ method: bodyless, url, config, handler, exposeHeadRoute: false });
      scope.route({
        method: bodied,
        url,
        config,
        handler,
        preParsing: passContentType,
        exposeHeadRoute: false,
      });
    }
  });
}

/**
 * The backend's headers onto the reply. Fastify keeps a reply's headers in a plain object, where
 * assigning a field named `__proto__` sets nothing (the field was dropped): that one goes
 * straight to Node's response, whose header store has no prototype.
 */
function setHeaders(reply: FastifyReply, headers: ScgiResponse['headers']): void {
  reply.headers(headers);
  if (Object.hasOwn(headers, '__proto__')) reply.raw.setHeader('__proto__', headers.__proto__!);
}

/** One log line per exchange, once it is over: only then are the timings complete. */
function logWhenOver(request: FastifyRequest, response: ScgiResponse): void {
  const { upstream, statusCode, timings } = response;
  const log = () => request.log.info({ upstream, statusCode, timings }, 'scgi response');
  // A body collected whole: the exchange is over already.
  if (response.bodyBuffer !== null) log();
  else response.body.once('close', log);
}

/**
 * Sends the backend's body: a small body collected whole goes out as one Buffer (one write, no
 * stream machinery); anything else streams.
 */
function sendBody(reply: FastifyReply, response: ScgiResponse): void {
  const buf = response.bodyBuffer;
  // Fastify labels a Buffer without a type application/octet-stream; a CGI response without a
  // Content-Type must reach the client without one, so such a body takes the stream path.
  if (buf !== null && (buf.length === 0 || response.headers['content-type'] !== undefined)) {
    reply.send(buf.length === 0 ? undefined : buf);
    return;
  }
  // A body that fails before its first byte goes out reaches Fastify's error handler, which
  // answers with the headers the reply holds: the backend's must not ride on that error
  // (a Set-Cookie, a Cache-Control that lets a cache keep the 502, a Content-Encoding the
  // JSON does not have). Registered before Fastify's own listener, so it runs first.
  response.body.once('error', () => {
    if (reply.raw.headersSent) return;
    for (const name in response.headers) reply.removeHeader(name);
    reply.raw.removeHeader('__proto__'); // set there by setHeaders, if the backend sent it
  });
  reply.send(response.body);
}

interface RouteConfig {
  scgiProxy?: ScgiProxy;
  scgiPrefix?: string;
  scgiHooks?: Pick<FastifyScgiOptions, 'rewriteEnv' | 'onResponse' | 'onError'>;
}

/**
 * A ready-made health route: `app.route(scgiHealthRoute('/healthz'))` answers 200 while a backend
 * can take a request and 503 when none can or the proxy is closing, with
 * `{ status, up, total }` (no backend addresses). `proxy` defaults to the instance's
 * `scgiProxy`.
 */
export function scgiHealthRoute(url: string, proxy?: ScgiProxy): RouteOptions {
  return {
    method: 'GET',
    url,
    handler(this: FastifyInstance, _request, reply) {
      const health = (proxy ?? this.scgiProxy).health();
      reply.code(health.status === 'up' ? 200 : 503).header('cache-control', 'no-store');
      return reply.send(publicHealth(health));
    },
  };
}

/** The Fastify plugin. `app.register(fastifyScgi, { upstream, prefix })`. */
export const fastifyScgi = fp(fastifyScgiPlugin, { fastify: '5.x', name: 'fastify-scgi' });
export default fastifyScgi;
export type { EnvPair, ScgiError, ScgiResponse };
