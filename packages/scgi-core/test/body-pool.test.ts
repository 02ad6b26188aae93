// The pool of small-body buffers: only buffers it made come back, each at most once, and a
// buffer is handed out again only after it was given back.
import { describe, expect, it } from 'vitest';
import {
  giveBackBodyBuffer,
  POOLED_SIZE,
  pooledBodyBuffers,
  takeBodyBuffer,
} from '../src/http/body-pool.js';

describe('body buffer pool', () => {
  it('hands a given-back buffer out again, and never one still in use', () => {
    const a = takeBodyBuffer(10_000);
    const b = takeBodyBuffer(20_000);
    expect(a.length).toBe(10_000);
    expect(b.length).toBe(20_000);
    expect(a.buffer).not.toBe(b.buffer);
    const before = pooledBodyBuffers();
    giveBackBodyBuffer(a);
    expect(pooledBodyBuffers()).toBe(before + 1);
    const c = takeBodyBuffer(POOLED_SIZE);
    expect(c.buffer).toBe(a.buffer);
    expect(c.length).toBe(POOLED_SIZE);
    expect(c.buffer).not.toBe(b.buffer);
  });

  it('takes back a buffer once, and none it did not make', () => {
    const a = takeBodyBuffer(8_000);
    const before = pooledBodyBuffers();
    giveBackBodyBuffer(a);
    giveBackBodyBuffer(a);
    giveBackBodyBuffer(a.subarray(10, 20));
    expect(pooledBodyBuffers()).toBe(before + 1);
    giveBackBodyBuffer(Buffer.allocUnsafeSlow(POOLED_SIZE));
    giveBackBodyBuffer(Buffer.alloc(5_000));
    expect(pooledBodyBuffers()).toBe(before + 1);
    // Two takes now: the first gets the pooled one, the second a new one.
    const x = takeBodyBuffer(8_000);
    const y = takeBodyBuffer(8_000);
    expect(x.buffer).toBe(a.buffer);
    expect(y.buffer).not.toBe(a.buffer);
  });

  it('leaves sizes outside 4 to 64 KiB to plain allocations', () => {
    const small = takeBodyBuffer(100);
    const large = takeBodyBuffer(POOLED_SIZE + 1);
    expect(small.length).toBe(100);
    expect(large.length).toBe(POOLED_SIZE + 1);
    const before = pooledBodyBuffers();
    giveBackBodyBuffer(small);
    giveBackBodyBuffer(large);
    expect(pooledBodyBuffers()).toBe(before);
  });
});
