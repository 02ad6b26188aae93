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
 */
import diagnosticsChannel from 'node:diagnostics_channel';

export const channels = Object.freeze({
  start: diagnosticsChannel.channel('scgi-core:request:start'),
  upstream: diagnosticsChannel.channel('scgi-core:request:upstream'),
  head: diagnosticsChannel.channel('scgi-core:request:head'),
  end: diagnosticsChannel.channel('scgi-core:request:end'),
  error: diagnosticsChannel.channel('scgi-core:request:error'),
});
