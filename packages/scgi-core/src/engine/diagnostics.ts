/**
 * `node:diagnostics_channel` events, for tracing and metrics without a logger dependency.
 * Subscribe with `diagnostics_channel.subscribe('scgi-core:request:head', fn)`. Messages carry a
 * per-process request `id` that ties the events of one request together.
 *
 * | channel | when | message |
 * | --- | --- | --- |
 * | `scgi-core:request:start` | a request enters the engine | `{ id, request }` |
 * | `scgi-core:request:upstream` | a backend was chosen (once per try) | `{ id, request, upstream, attempt }` |
 * | `scgi-core:request:head` | the response is handed on (its head arrived; for a small body collected whole, once the body is in) | `{ id, request, upstream, statusCode, timings }` |
 * | `scgi-core:request:end` | the exchange finished after a head | `{ id, request, upstream, error? }` |
 * | `scgi-core:request:error` | the request failed before a head | `{ id, request, upstream?, error, phase }` |
 *
 * The whole lifetime of a request is also a TracingChannel, `scgi-core:request` (channels
 * `tracing:scgi-core:request:start|end|asyncStart|asyncEnd|error`), the shape undici and Node's
 * own http client publish, so an OpenTelemetry instrumentation makes spans without patching:
 * see {@link RequestTraceContext}.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import type { ScgiResponse } from './response.js';

export const channels = Object.freeze({
  start: diagnosticsChannel.channel('scgi-core:request:start'),
  upstream: diagnosticsChannel.channel('scgi-core:request:upstream'),
  head: diagnosticsChannel.channel('scgi-core:request:head'),
  end: diagnosticsChannel.channel('scgi-core:request:end'),
  error: diagnosticsChannel.channel('scgi-core:request:error'),
});

/**
 * The object every event of one traced request carries (the same object throughout, so a
 * subscriber may keep its span on it):
 * - `start`: `proxy.request()` was called; runs with the stores bound to it (`bindStore`), so an
 *   AsyncLocalStorage set there is the active context for the whole request, including the
 *   `scgi-core:request:upstream` events of its tries.
 * - `end`: `proxy.request()` returned its promise (the synchronous part is over).
 * - `asyncStart`: the response head is handed on; `result`, `statusCode` and `upstream` are set.
 * - `asyncEnd`: the response body ended, failed or was dropped: the request is over. For a
 *   failure before the head it follows `error` at once.
 * - `error`: the request failed (before the head: then `statusCode` is the error's; or the body
 *   failed after it); `error` is set.
 */
export interface RequestTraceContext {
  /** The per-process id of the other `scgi-core:request:*` events. */
  readonly id: number;
  readonly request: IncomingMessage | Http2ServerRequest;
  /** The id sent to the backend (`requestIdHeader`), if any. */
  readonly requestId: string | undefined;
  /** The backend that answered (or the last one tried when it failed). */
  upstream?: string;
  statusCode?: number;
  result?: ScgiResponse;
  error?: unknown;
  /** The body was dropped before its end without an error (the client went away). */
  aborted?: boolean;
}

export const requestTracing = diagnosticsChannel.tracingChannel<
  RequestTraceContext,
  RequestTraceContext
>('scgi-core:request');

/** Runs `run` as one traced request: `start`/`end` around it, `asyncEnd` once the body is over. */
export function traceRequest(
  ctx: RequestTraceContext,
  run: () => Promise<ScgiResponse>,
): Promise<ScgiResponse> {
  const t = requestTracing;
  return t.start.runStores(ctx, () => {
    try {
      return run().then(
        (response) => {
          ctx.result = response;
          ctx.statusCode = response.statusCode;
          ctx.upstream = response.upstream;
          t.asyncStart.publish(ctx);
          whenBodyOver(response, (err, aborted) => {
            if (err !== undefined) {
              ctx.error = err;
              t.error.publish(ctx);
            } else if (aborted) ctx.aborted = true;
            t.asyncEnd.publish(ctx);
          });
          return response;
        },
        (err: { statusCode?: unknown; upstream?: unknown }) => {
          ctx.error = err;
          if (typeof err?.statusCode === 'number') ctx.statusCode = err.statusCode;
          if (typeof err?.upstream === 'string') ctx.upstream = err.upstream;
          t.error.publish(ctx);
          t.asyncStart.publish(ctx);
          t.asyncEnd.publish(ctx);
          throw err;
        },
      );
    } finally {
      t.end.publish(ctx);
    }
  });
}

/** Calls `done` once the response body is over: at once for a body collected whole. */
function whenBodyOver(
  response: ScgiResponse,
  done: (err: unknown, aborted: boolean) => void,
): void {
  if (response.bodyBuffer !== null) {
    done(undefined, false);
    return;
  }
  const body = response.body;
  if (body.closed) {
    done(body.errored ?? undefined, !body.readableEnded);
    return;
  }
  let error: unknown;
  body.once('error', (err) => {
    error = err;
  });
  body.once('close', () => done(error, error === undefined && !body.readableEnded));
}
