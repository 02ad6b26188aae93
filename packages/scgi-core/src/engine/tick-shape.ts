/**
 * Keeps `process.nextTick` on its fast path for the life of the process.
 *
 * Node builds each queued tick as `{ [async_id_symbol]: id, [trigger_async_id_symbol]: id,
 * callback, args }` (lib/internal/process/task_queues.js, Node 20). V8 records the hidden
 * class (map) each computed key is added to, holding those maps weakly. When a full GC runs while
 * no tick is queued, nothing holds the intermediate maps any more, and V8 frees them. The next
 * tick builds fresh maps, the recorded ones no longer match, and the feedback goes megamorphic
 * for good. From then on every `nextTick` adds its keys in the runtime (about 0.2 µs each),
 * and Node's streams queue about ten ticks per proxied request.
 *
 * Whether such a GC falls at such a moment is luck. In the benchmarks on Node 20.20 (2026-12-03)
 * it hit every start we measured of a Fastify process that loaded this package or
 * @fastify/reply-from: 2.4 to 2.9 µs per request for fastify-scgi and 5.9 to 7.3 µs for
 * reply-from, under `nextTick` in perf call graphs. The bare Node floor was never hit.
 * test/node-internals.test.ts forces the GC, and shows both the effect and this fix.
 *
 * The fix is to keep one real tick object alive. Its map keeps the chain of maps before it
 * (each map points to its parent), so the recorded maps stay valid. An `init` hook catches the
 * object as one tick is queued. The hook is enabled only for that one synchronous
 * `process.nextTick` call, and `async_hooks` keeps nothing enabled after it. This is unlike
 * `executionAsyncResource()`, which sets a flag for good and costs every native callback. The
 * kept tick holds a no-op callback and no arguments.
 * If Node changes how ticks are built, the kept object is harmless and the hook still sees
 * nothing but this one tick.
 */
import { createHook } from 'node:async_hooks';

/** The kept tick object; `true` once tried, caught or not (a Node that queues ticks otherwise). */
let kept: object | true | null = null;

/** Catches and keeps one tick object; later calls do nothing. */
export function keepTickShape(): void {
  if (kept !== null) return;
  const hook = createHook({
    init(_asyncId, type, _triggerAsyncId, resource) {
      if (type === 'TickObject') kept = resource;
    },
  });
  hook.enable();
  try {
    process.nextTick(noop);
  } finally {
    hook.disable();
  }
  kept ??= true;
}

function noop(): void {}
