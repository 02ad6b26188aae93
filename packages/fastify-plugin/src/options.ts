/**
 * fastify-scgi's options and the types it adds to Fastify (`reply.scgi()`, `app.scgiProxy`),
 * apart from the plugin as fastify-reply-from keeps them in types/index.d.ts.
 */
import type { FastifyReply, FastifyRequest, RouteShorthandOptions } from 'fastify';
import type {
  EnvPair,
  ScgiError,
  ScgiProxy,
  ScgiProxyOptions,
  ScgiRequestOptions,
  ScgiResponse,
} from 'scgi-core';
import type { AdapterOptionKind, ExchangeLogLevel, NamedUpstreams } from 'scgi-core/adapter';

/** Adapter options, on top of the engine's (`upstream` or `spawn`, timeouts, limits...). */
export type FastifyScgiOptions = (
  | ScgiProxyOptions
  | (Partial<ScgiProxyOptions> & { upstreams: NamedUpstreams })
) &
  FastifyScgiOptionsExtra;
type RouteHooks = Pick<
  RouteShorthandOptions,
  'onRequest' | 'preHandler' | 'constraints' | 'config' | 'logLevel'
>;

export interface FastifyScgiOptionsExtra extends RouteHooks {
  /** Mount prefix: `prefix` and `prefix/*` go to the backend, SCRIPT_NAME = prefix. @default '' */
  prefix?: string;
  /** Register the proxy routes. `false` only adds `reply.scgi()` for routes of your own. @default true */
  routes?: boolean;
  /**
   * Methods the mount forwards: a list, or 'all' (every method Node parses but CONNECT). A method
   * Fastify does not route yet is added with `addHttpMethod`, which Fastify 5 makes app-wide: the
   * app's own routes may then use it too.
   * @default the methods the app routes when the plugin is registered (Fastify's standard ones)
   */
  methods?: 'all' | readonly string[];
  /** Named pools, picked per request by `getUpstream` or `reply.scgi({ upstream })`. */
  upstreams?: NamedUpstreams;
  /** The named pool for a request of the proxy routes; undefined: the default pool. */
  getUpstream?: (request: FastifyRequest) => string | undefined;
  /** The level of the line per exchange ("scgi response"), or `false`. @default 'info' */
  exchangeLog?: boolean | ExchangeLogLevel;
  /** Last look at the CGI environment of each request; return a new list or change it in place. */
  rewriteEnv?: (env: EnvPair[], request: FastifyRequest) => EnvPair[] | undefined;
  /** Sees the response head before it is sent; may change `reply`, or send something else itself (then consume or destroy `response.body`). */
  onResponse?: (
    request: FastifyRequest,
    reply: FastifyReply,
    response: ScgiResponse,
  ) => void | Promise<void>;
  /** Handles a failure before the response head. Default: Fastify's error handler. */
  onError?: (reply: FastifyReply, context: { error: ScgiError }) => void | Promise<void>;
}

/** Per-call options of `reply.scgi()`. */
export interface ReplyScgiOptions {
  /** SCRIPT_NAME for this request. @default the plugin's prefix for proxy routes, "" otherwise */
  scriptName?: string;
  /** A named pool of `upstreams` (declared at registration). @default the default pool */
  upstream?: string;
  /**
   * Overrides the body. Else the raw request stream; on a route whose body Fastify parsed, the
   * exact bytes in `request.rawBody`, or 500 `SCGI_ERR_BODY_CONSUMED`: never re-encoded.
   */
  body?: ScgiRequestOptions['body'];
  rewriteEnv?: FastifyScgiOptions['rewriteEnv'];
  onResponse?: FastifyScgiOptions['onResponse'];
  onError?: FastifyScgiOptions['onError'];
}

declare module 'fastify' {
  interface FastifyReply {
    /** Sends this request to the SCGI backend of the registration that owns the route. */
    scgi(options?: ReplyScgiOptions): FastifyReply;
  }
  interface FastifyInstance {
    /** The default engine of the latest fastify-scgi registration in this scope. */
    scgiProxy: ScgiProxy;
  }
}

/** The plugin's own keys and their `typeof`; `logLevel` and `logSerializers` are also Fastify's register options. */
export const ADAPTER_KEYS: Readonly<Record<string, AdapterOptionKind>> = {
  ...{ prefix: 'any', routes: 'boolean', methods: 'any', upstreams: 'any', exchangeLog: 'any' },
  ...{
    getUpstream: 'function',
    rewriteEnv: 'function',
    onResponse: 'function',
    onError: 'function',
  },
  ...{ onRequest: 'any', preHandler: 'any', constraints: 'object', config: 'object' },
  ...{ logLevel: 'string', logSerializers: 'any' },
};
