/**
 * Whether a reply's collected body may go back to scgi-core's buffer pool once Node has written it
 * out (`recycleBody`, scgi-core engine/response.ts). A new 64 KiB ArrayBuffer per response is
 * what still brought V8's mark-compacts on the 64k case (bench/README.md); express-scgi recycles
 * since it writes with Node's own `res.end`.
 *
 * Only when nothing but Node sees the Buffer after `reply.send`: the route has no onSend hook (a
 * hook may keep the payload: a cache, a compressor that works later), the `onResponse` option is
 * not set (it gets the response), and `res.end` is Node's own (no wrapper; an HTTP/2 response
 * is not a `ServerResponse` either). Fastify has no public API that says whether a route has
 * onSend hooks: its route context, an own property of the request under
 * `Symbol('fastify.context')` (fastify 5 lib/symbols.js), holds them as `onSend`, null when
 * there are none (lib/route.js). Where that is not found as expected, nothing is recycled;
 * test/fastify-recycle.test.ts fails when that internal changes.
 */
import type { FastifyReply } from 'fastify';
import { plainEnd } from 'scgi-core/adapter';

/** Fastify's route context symbol; null once a request was seen without it. */
let kContext: symbol | null | undefined;

type Context = { onSend?: unknown } | undefined;

/** The route of `reply` has no onSend hook and `res.end` is Node's own. */
export function mayRecycle(reply: FastifyReply): boolean {
  const request = reply.request as unknown as Record<symbol, Context>;
  if (kContext === undefined) {
    kContext =
      Object.getOwnPropertySymbols(request).find((s) => s.description === 'fastify.context') ??
      null;
  }
  return kContext !== null && request[kContext]?.onSend === null && plainEnd(reply.raw);
}
