/**
 * The one writer of a backend's answer to the client, shared by express-scgi, `node:http` servers
 * and the examples; fastify-scgi sends through `reply.send()` (so onSend hooks and compression
 * still apply) and uses the head mapping and the early-failure rule from here. The shape is
 * connect-es's `universalResponseToNodeResponse` (connect-node): the core owns status, reason,
 * headers, body, failures before and after the head, and buffer recycling; an adapter only maps
 * its framework onto it.
 */
import { type OutgoingMessage, ServerResponse } from 'node:http';
import { finished } from 'node:stream';
import type { ProxiedResponse } from '../engine/proxy.js';
import {
  bodyIsPooled,
  recycleBodyBuffer,
  releaseBodyBuffer,
  type ScgiResponse,
} from '../engine/response.js';
import { errorResponseHeaders, type ScgiError } from '../errors.js';

/**
 * Where a response head goes: Node's response (`nodeHeadTarget`), or a framework's reply mapped
 * onto these three calls (fastify-scgi keeps the backend's headers in `reply`, where onSend hooks
 * and compression can still change them).
 */
export interface HeadTarget {
  /** The status, and the reason phrase to send (undefined: the standard one). */
  status(code: number, reason: string | undefined): void;
  header(name: string, value: string | string[]): void;
  removeHeader(name: string): void;
  /** Node's response underneath. */
  readonly raw: ProxiedResponse;
}

/**
 * A backend header named `__proto__` is a valid field name (RFC 9110 §5.1 token). A framework
 * that keeps headers in a plain object drops it (assigning `__proto__` sets the prototype);
 * Node's own header store has no prototype, so that one goes to the response underneath.
 */
const PROTO = '__proto__';

/** Status, reason phrase and headers of the backend's answer onto `target`. */
export function applyResponseHead(target: HeadTarget, response: ScgiResponse): void {
  target.status(response.statusCode, reasonPhrase(target.raw, response));
  const headers = response.headers;
  for (const name in headers) target.header(name, headers[name]!);
  if (Object.hasOwn(headers, PROTO)) target.raw.setHeader(PROTO, headers[PROTO]!);
}

/**
 * Takes the backend's headers off again: its body failed before a byte went out, and the error
 * answer that follows must not carry them (a Set-Cookie given to the wrong answer, a
 * Cache-Control that lets a shared cache keep the 502, a Content-Encoding the error page does
 * not have).
 */
export function removeResponseHead(target: HeadTarget, response: ScgiResponse): void {
  for (const name in response.headers) target.removeHeader(name);
  target.raw.removeHeader(PROTO);
}

/**
 * Calls `onEarlyFailure` when the body fails before the head went out (the answer can still be an
 * error with its own status), after taking the backend's headers off `target`. Listens before
 * whoever reads the body, so it runs first.
 */
export function onEarlyBodyFailure(
  target: HeadTarget,
  response: ScgiResponse,
  onEarlyFailure?: (err: ScgiError) => void,
): void {
  response.body.once('error', (err) => {
    if (target.raw.headersSent) return;
    removeResponseHead(target, response);
    onEarlyFailure?.(err as ScgiError);
  });
}

/**
 * The backend's reason phrase when it sent one and the client speaks HTTP/1 (HTTP/2 has no
 * reason phrase, RFC 9113 §8.3.2, and Node warns when one is set); else undefined.
 */
function reasonPhrase(res: ProxiedResponse, response: ScgiResponse): string | undefined {
  if (response.statusMessage === '') return undefined;
  return (res as { stream?: unknown }).stream === undefined ? response.statusMessage : undefined;
}

/** Node's response as a head target. */
export function nodeHeadTarget(res: ProxiedResponse): HeadTarget {
  return {
    raw: res,
    status(code, reason) {
      res.statusCode = code;
      if (reason !== undefined) res.statusMessage = reason;
    },
    // setHeader, not writeHead: Node then adds the Content-Length of a body sent whole, and
    // headers set by earlier middleware stay.
    header: (name, value) => res.setHeader(name, value),
    removeHeader: (name) => res.removeHeader(name),
  };
}

export interface WriteResponseOptions {
  /**
   * Apply the backend's status and headers first. `false` when a hook already applied (and maybe
   * changed) them.
   * @default true
   */
  head?: boolean;
  /**
   * Give a small body's buffer back once written, for a later response (the request was made
   * with `recycleBody`, and no user code saw the response). Done only when `res.end` is Node's.
   * @default false
   */
  recycle?: boolean;
  /**
   * The body failed before the head went out: the backend's headers are off `res`, and the
   * caller answers with the error (express-scgi: `next(err)`). Without it, `res` is destroyed.
   * After the head, `res` is always destroyed: never a clean end of a truncated body.
   */
  onEarlyFailure?: (err: ScgiError) => void;
}

/**
 * Sends the backend's answer on Node's response: a body collected whole in one write, a streamed
 * one through a pipe with backpressure. A client that goes away destroys the body (and so the
 * backend connection).
 */
export function writeResponse(
  res: ProxiedResponse,
  response: ScgiResponse,
  options: WriteResponseOptions = {},
): void {
  const target = nodeHeadTarget(res);
  if (options.head !== false && !res.headersSent) applyResponseHead(target, response);
  const buf = response.bodyBuffer;
  if (buf !== null) {
    // The engine already made HEAD, 204 and 304 answers empty.
    (res as ServerResponse).end(buf.length === 0 ? undefined : buf);
    afterBodySent(res, response, options.recycle === true);
    return;
  }
  const body = response.body;
  const early = options.onEarlyFailure;
  body.once('error', (err) => {
    if (!res.headersSent && early !== undefined) {
      removeResponseHead(target, response);
      early(err as ScgiError);
    } else {
      res.destroy(err);
    }
  });
  // Also listens for errors of `res` itself, which would otherwise throw without a listener.
  finished(res, () => {
    if (!body.readableEnded) body.destroy();
  });
  (body as unknown as { pipe(dest: ProxiedResponse): void }).pipe(res);
}

/**
 * The collected body went to `res.end` (by the caller, or a framework's send): back to the pool
 * once Node wrote it all out, when `recycle` (the request asked for `recycleBody` and no user code
 * got the response) and `res.end` is Node's own; else the response lets go of it
 * (`releaseBodyBuffer`). 'finish': every byte went to the kernel, so Node holds the buffer no more;
 * with Node's own `res.end` nothing else got it (compression or session middleware wrap `res.end`
 * and may keep it). Without 'finish' (client gone) the buffer is left to the GC.
 */
export function afterBodySent(
  res: ProxiedResponse | OutgoingMessage,
  response: ScgiResponse,
  recycle: boolean,
): void {
  if (recycle && bodyIsPooled(response) && plainEnd(res)) {
    res.once('finish', () => recycleBodyBuffer(response));
  } else {
    releaseBodyBuffer(response);
  }
}

const NODE_END = ServerResponse.prototype.end;
const NODE_WRITE = ServerResponse.prototype.write;

/** `res.end` and `res.write` are Node's own: no middleware wrapped them. */
export function plainEnd(res: ProxiedResponse | OutgoingMessage): boolean {
  return res.end === NODE_END && res.write === NODE_WRITE;
}

/** The headers that go with an error answer (`errorResponseHeaders`) onto Node's response. */
export function setErrorHeaders(res: ProxiedResponse, err: ScgiError): void {
  const headers = errorResponseHeaders(err);
  for (const name in headers) res.setHeader(name, headers[name]!);
}

/**
 * Answers a failure before the head directly: the error's status, its headers, and a small JSON
 * body with `statusCode`, `code` and `message` (never the upstream address); no body for HEAD.
 */
export function writeErrorResponse(res: ProxiedResponse, err: ScgiError, method?: string): void {
  setErrorHeaders(res, err);
  const status = typeof err.statusCode === 'number' ? err.statusCode : 502;
  const payload = JSON.stringify({ statusCode: status, code: err.code, message: err.message });
  res.statusCode = status;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(payload));
  (res as ServerResponse).end(method === 'HEAD' ? undefined : payload);
}
