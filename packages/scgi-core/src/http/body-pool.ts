/**
 * Buffers for small response bodies (collected whole, see `maxBufferedBody`) that a caller
 * gives back once the body is written out, so the next body of 4 to 64 KiB takes a buffer
 * already made. V8 counts every new ArrayBuffer as external memory against the old
 * generation's limit; one per response made it run full GCs every few hundred requests.
 *
 * Only a caller that knows nothing else holds the body may give it back: express-scgi does,
 * for a response it sent itself through an unpatched `res.end`, once `res` emitted 'finish'.
 */

/** Size of a pooled buffer: the default `maxBufferedBody`. */
export const POOLED_SIZE = 64 * 1024;
/** Below this, Node's own allocation pool serves `Buffer.allocUnsafe` already. */
const MIN_POOLED = 4 * 1024;
const MAX_FREE = 64;

const free: Buffer[] = [];
/** The whole buffer of every ArrayBuffer made here; whatever else is given back is ignored. */
const ours = new WeakMap<ArrayBufferLike, Buffer>();
/** Buffers in `free` now: a buffer given back twice must not be handed out twice. */
const inPool = new WeakSet<ArrayBufferLike>();

/** `takeBodyBuffer` serves this size from the pool. */
export function isPoolSize(size: number): boolean {
  return size >= MIN_POOLED && size <= POOLED_SIZE;
}

/** A buffer of `size` bytes: pooled when the size suits, else a plain new one. */
export function takeBodyBuffer(size: number): Buffer {
  if (!isPoolSize(size)) return Buffer.allocUnsafe(size);
  let whole = free.pop();
  if (whole === undefined) {
    whole = Buffer.allocUnsafeSlow(POOLED_SIZE);
    ours.set(whole.buffer, whole);
  } else {
    inPool.delete(whole.buffer);
  }
  return size === POOLED_SIZE ? whole : whole.subarray(0, size);
}

/** Takes back a buffer from `takeBodyBuffer` that nothing refers to any more. */
export function giveBackBodyBuffer(buf: Buffer): void {
  const whole = ours.get(buf.buffer);
  if (whole === undefined || inPool.has(buf.buffer) || free.length >= MAX_FREE) return;
  inPool.add(buf.buffer);
  free.push(whole);
}

/** Buffers waiting in the pool (for tests). @internal */
export function pooledBodyBuffers(): number {
  return free.length;
}
