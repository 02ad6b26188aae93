/**
 * The engine the adapters share: turns a Node HTTP request into an SCGI exchange and hands
 * back the backend's response head and a body stream. Everything that is not Fastify- or
 * Express-specific lives here, so both adapters behave the same on the same request.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Readable } from 'node:stream';
import { buildCgiEnv } from './cgi-env.js';
import { BodyTooLargeError, type ScgiError } from './errors.js';
import { Exchange, type ExchangeBody, type ScgiResponse } from './exchange.js';
import {
  type ResolvedProxyOptions,
  resolveProxyOptions,
  type ScgiProxyOptions,
} from './options.js';
import { encodeScgiHead } from './scgi-head.js';
import { spoolBody } from './spool.js';
import type { EnvPair } from './types.js';

export type ProxiedRequest = IncomingMessage | Http2ServerRequest;
export type ProxiedResponse = ServerResponse | Http2ServerResponse;

/** Per-request inputs from the adapter. */
export interface ScgiRequestOptions {
  /** Mount prefix, sent as SCRIPT_NAME ("" at the root). */
  scriptName?: string;
  /** The original request-target when the framework rewrote `req.url` (Express mounts). */
  url?: string;
  /**
   * A body to send instead of reading `req`: for bodies a framework already parsed
   * (re-encoded bytes) or a replacement stream with a known `length`.
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
}

export type { ScgiResponse } from './exchange.js';

const DIGITS = /^[0-9]+$/;

/** The request body, as far as the headers tell: a known length, none, or unknown (spool it). */
function requestBodyLength(req: ProxiedRequest): number | null {
  const cl = req.headers['content-length'];
  if (cl !== undefined) {
    // Node's HTTP/1 parser has already rejected malformed or conflicting values.
    if (typeof cl === 'string' && DIGITS.test(cl)) return Number(cl);
    return null;
  }
  if (req.httpVersionMajor >= 2) {
    // HTTP/2: END_STREAM on the HEADERS frame means no body at all.
    const stream = (req as Http2ServerRequest).stream;
    if (stream?.endAfterHeaders) return 0;
    return null;
  }
  // HTTP/1.1 (RFC 9112 §6.3): no Content-Length and no Transfer-Encoding means no body.
  return req.headers['transfer-encoding'] === undefined ? 0 : null;
}

/** A reusable SCGI client bound to one backend. */
export class ScgiProxy {
  readonly options: ResolvedProxyOptions;

  constructor(options: ScgiProxyOptions) {
    this.options = resolveProxyOptions(options);
  }

  /**
   * Sends `req` to the backend. Resolves once the response head arrived; rejects with a typed
   * `ScgiError` (its `statusCode` is the answer to give: 400/413/502/503/504) before that.
   */
  async request(req: ProxiedRequest, opts: ScgiRequestOptions = {}): Promise<ScgiResponse> {
    const o = this.options;
    let signal = opts.signal;
    let detachRes: (() => void) | null = null;
    if (opts.res !== undefined) {
      const res = opts.res;
      const controller = new AbortController();
      const onClose = () => {
        if (!res.writableFinished) controller.abort();
      };
      res.once('close', onClose);
      detachRes = () => res.removeListener('close', onClose);
      signal =
        signal === undefined ? controller.signal : AbortSignal.any([signal, controller.signal]);
    }

    let body: ExchangeBody;
    let length: number;
    const given = opts.body;
    if (given !== undefined && given !== null) {
      if (typeof given === 'string' || Buffer.isBuffer(given)) {
        const data = typeof given === 'string' ? Buffer.from(given) : given;
        length = data.length;
        body = length === 0 ? { kind: 'none' } : { kind: 'buffer', data };
      } else {
        length = given.length;
        body = { kind: 'stream', stream: given.stream, length };
      }
      if (length > o.maxBodySize) throw tag(new BodyTooLargeError(o.maxBodySize), o);
    } else {
      const known = requestBodyLength(req);
      if (known === null) {
        const spool = await spoolBody(
          req as Readable,
          { memoryLimit: o.spoolMemory, maxBodySize: o.maxBodySize, tmpDir: o.tmpDir },
          signal,
        );
        length = spool.length;
        body = { kind: 'spooled', spool };
      } else {
        if (known > o.maxBodySize) throw tag(new BodyTooLargeError(o.maxBodySize), o);
        length = known;
        body = known === 0 ? { kind: 'none' } : { kind: 'stream', stream: req as Readable, length };
      }
    }

    let head: Buffer;
    try {
      let env = buildCgiEnv(req, o.env, {
        url: opts.url,
        contentLength: length,
        scriptName: opts.scriptName,
      });
      if (opts.rewriteEnv !== undefined) env = opts.rewriteEnv(env, req) ?? env;
      head = encodeScgiHead(env);
    } catch (err) {
      if (body.kind === 'spooled') body.spool.dispose();
      detachRes?.();
      throw tag(err as ScgiError, o);
    }

    const exchange = new Exchange(o, head, body, req.method === 'HEAD', signal);
    try {
      const response = await exchange.start();
      if (detachRes !== null) {
        const detach = detachRes;
        response.body.once('close', detach);
      }
      return response;
    } catch (err) {
      detachRes?.();
      throw err;
    }
  }
}

function tag(err: ScgiError, o: ResolvedProxyOptions): ScgiError {
  if (err !== null && typeof err === 'object') {
    (err as ScgiError & { upstream?: string }).upstream = o.upstream.label;
  }
  return err;
}
