// Test bodies whose every byte matters: a chunk in the wrong place changes the hash.
import { createHash } from 'node:crypto';

/** `n` deterministic pseudo-random bytes (xorshift32) of `seed`. */
export function pseudoRandomBytes(seed: number, n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * How many 64 KiB buffers `Buffer.allocUnsafeSlow` made while `run` went on: scgi-core makes
 * its read buffers for streamed bodies and its pooled body buffers that way and that size.
 */
export async function count64KiBAllocations(run: () => Promise<void>): Promise<number> {
  const original = Buffer.allocUnsafeSlow;
  let made = 0;
  Buffer.allocUnsafeSlow = (size: number) => {
    if (size === 64 * 1024) made++;
    return original(size);
  };
  try {
    await run();
  } finally {
    Buffer.allocUnsafeSlow = original;
  }
  return made;
}
