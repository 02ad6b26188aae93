// The pool's state machine on its own (no sockets): queue hand-over when a down backend's
// window ends, for each backend that went down, not only the first.
import { setTimeout as delay } from 'node:timers/promises';
import { describe, expect, it, vi } from 'vitest';
import { ConnectError, RequestAbortedError } from '../src/errors.js';
import { parseAddress } from '../src/upstream/address.js';
import { Backend, type Outcome, UpstreamPool } from '../src/upstream/pool.js';

const FAIL: Outcome = { ok: false, failure: true, error: new ConnectError() };
const OK: Outcome = { ok: true, failure: false, headMs: 1 };

function pool(failTimeout: number) {
  const backends = [1, 2, 3].map((n) => new Backend(parseAddress(`127.0.0.1:${9000 + n}`), 1, 1));
  const p = new UpstreamPool(backends, {
    balance: 'round-robin',
    maxQueue: 10,
    queueTimeout: 3000,
    maxFails: 1,
    failTimeout,
  });
  return { p, backends };
}

describe('UpstreamPool: waking the queue when a down backend may be tried again', () => {
  it('a waiter gets the second down backend when its window ends, not at queueTimeout', async () => {
    const { p, backends } = pool(300);
    const [a, b, c] = backends as [Backend, Backend, Backend];
    const none = new Set<Backend>();
    const t0 = Date.now();
    // One slot each, all taken.
    expect([
      p.acquire(undefined, none),
      p.acquire(undefined, none),
      p.acquire(undefined, none),
    ]).toEqual([a, b, c]);
    p.release(a, FAIL); // a: down until t0 + 300
    await delay(100);
    p.release(b, FAIL); // b: down until t0 + 400
    // c is busy: waiters queue.
    const w1 = p.acquire(undefined, none) as Promise<Backend>;
    expect(await w1).toBe(a); // a's trial, at ~300 ms
    expect(p.takeTrial(a)).toBe(true);
    expect(Date.now() - t0).toBeLessThan(450);
    const w2 = p.acquire(undefined, none) as Promise<Backend>;
    expect(w2).toBeInstanceOf(Promise);
    expect(await w2).toBe(b); // b's trial, at ~400 ms
    expect(p.takeTrial(b)).toBe(true);
    expect(Date.now() - t0).toBeLessThan(700);
    p.release(a, OK, true);
    p.release(b, OK, true);
    p.release(c, OK);
    expect(p.stats().backends.map((x) => [x.state, x.active])).toEqual([
      ['up', 0],
      ['up', 0],
      ['up', 0],
    ]);
    p.close();
  });
});

describe('UpstreamPool: one trial at a time', () => {
  it('only the trial request ends the trial, not an older request finishing meanwhile', async () => {
    const backends = [1, 2].map((n) => new Backend(parseAddress(`127.0.0.1:${9100 + n}`), 1, 0));
    const p = new UpstreamPool(backends, {
      balance: 'round-robin',
      maxQueue: 10,
      queueTimeout: 1000,
      maxFails: 1,
      failTimeout: 100,
    });
    const [a, b] = backends as [Backend, Backend];
    const none = new Set<Backend>();
    const onlyA = new Set<Backend>([b]);
    const old1 = p.acquire(undefined, onlyA) as Backend; // two requests in flight on a
    const old2 = p.acquire(undefined, onlyA) as Backend;
    expect([old1, old2]).toEqual([a, a]);
    expect(p.takeTrial(a)).toBe(false);
    p.release(a, FAIL); // a goes down
    expect(p.stats().backends[0]!.state).toBe('down');
    await delay(120);
    expect(p.stats().backends[0]!.state).toBe('probing');
    const trial = p.acquire(undefined, onlyA) as Backend;
    expect(trial).toBe(a);
    expect(p.takeTrial(a)).toBe(true);
    // No second trial while the first runs.
    expect(() => p.acquire(undefined, onlyA)).toThrow(
      expect.objectContaining({ code: 'SCGI_ERR_NO_BACKEND' }),
    );
    // The older request ends meanwhile (its client went away: no verdict on the backend). It is
    // not the trial and must not end it: still no second trial.
    p.release(a, { ok: false, failure: false, error: new RequestAbortedError('gone') });
    expect(() => p.acquire(undefined, onlyA)).toThrow(
      expect.objectContaining({ code: 'SCGI_ERR_NO_BACKEND' }),
    );
    // The trial succeeds: a is up again.
    p.release(a, OK, true);
    expect(p.stats().backends[0]!.state).toBe('up');
    expect(p.acquire(undefined, none)).toBeInstanceOf(Backend);
    p.close();
  });
});

describe('UpstreamPool: only a request picked after the mark-down may bring a backend back', () => {
  const twoBackends = (maxFails: number, failTimeout: number) => {
    const backends = [1, 2].map((n) => new Backend(parseAddress(`127.0.0.1:${9200 + n}`), 1, 0));
    const p = new UpstreamPool(backends, {
      balance: 'round-robin',
      maxQueue: 10,
      queueTimeout: 1000,
      maxFails,
      failTimeout,
    });
    return { p, a: backends[0]!, onlyA: new Set<Backend>([backends[1]!]) };
  };

  it('regression: a request in flight when the backend went down does not revive it by succeeding', async () => {
    const { p, a, onlyA } = twoBackends(2, 150);
    const old = p.acquire(undefined, onlyA);
    expect(old).toBe(a);
    expect(p.takeTrial(a)).toBe(false);
    // Two newer requests fail: a goes down while the old one is still running.
    for (const _ of [1, 2]) expect(p.acquire(undefined, onlyA)).toBe(a);
    p.release(a, FAIL);
    p.release(a, FAIL);
    expect(p.stats().backends[0]!.state).toBe('down');
    p.release(a, OK);
    expect(p.stats().backends[0]!).toMatchObject({ state: 'down', served: 1, active: 0 });
    expect(() => p.acquire(undefined, onlyA)).toThrow(
      expect.objectContaining({ code: 'SCGI_ERR_NO_BACKEND' }),
    );
    // The window ends; the trial's success is what brings a back.
    await delay(170);
    expect(p.acquire(undefined, onlyA)).toBe(a);
    expect(p.takeTrial(a)).toBe(true);
    p.release(a, OK, true);
    expect(p.stats().backends[0]!.state).toBe('up');
    p.close();
  });

  it('regression: a trial that outlives a new mark-down keeps its slot and its success does not count', async () => {
    const { p, a, onlyA } = twoBackends(1, 100);
    expect(p.acquire(undefined, onlyA)).toBe(a); // old: picked while a is up
    expect(p.acquire(undefined, onlyA)).toBe(a);
    p.release(a, FAIL); // a goes down
    await delay(120);
    expect(p.acquire(undefined, onlyA)).toBe(a);
    expect(p.takeTrial(a)).toBe(true);
    // The old request fails meanwhile: a goes down again, after the trial started.
    p.release(a, FAIL);
    expect(p.stats().backends[0]!.state).toBe('down');
    await delay(120);
    // The new window is over but the first trial still runs: no second one.
    expect(p.stats().backends[0]!.state).toBe('probing');
    expect(() => p.acquire(undefined, onlyA)).toThrow(
      expect.objectContaining({ code: 'SCGI_ERR_NO_BACKEND' }),
    );
    // It succeeds, but it was picked before the latest mark-down: a takes a new trial.
    p.release(a, OK, true);
    expect(p.stats().backends[0]!.state).toBe('probing');
    expect(p.acquire(undefined, onlyA)).toBe(a);
    expect(p.takeTrial(a)).toBe(true);
    p.release(a, OK, true);
    expect(p.stats().backends[0]!.state).toBe('up');
    p.close();
  });
});

describe('UpstreamPool: queue timeouts on one timer', () => {
  const onePool = (queueTimeout: number) => {
    const backend = new Backend(parseAddress('127.0.0.1:9001'), 1, 1);
    const p = new UpstreamPool([backend], {
      balance: 'round-robin',
      maxQueue: 10,
      queueTimeout,
      maxFails: 1,
      failTimeout: 1000,
    });
    return { p, backend };
  };
  const none = new Set<Backend>();

  it('fails each waiter at its own deadline, in order', async () => {
    const { p, backend } = onePool(200);
    expect(p.acquire(undefined, none)).toBe(backend); // the one slot
    const t0 = performance.now();
    const failedAt: number[] = [];
    const wait = () =>
      (p.acquire(undefined, none) as Promise<Backend>).then(
        () => expect.unreachable('no slot frees up'),
        (err: { code: string }) => {
          expect(err.code).toBe('SCGI_ERR_QUEUE_TIMEOUT');
          failedAt.push(performance.now() - t0);
        },
      );
    // Three waiters 100 ms apart: each must wait its own 200 ms, not the first one's.
    const waits = [wait()];
    await delay(100);
    waits.push(wait());
    await delay(100);
    waits.push(wait());
    await Promise.all(waits);
    expect(failedAt).toHaveLength(3);
    for (const [i, at] of failedAt.entries()) {
      expect(at).toBeGreaterThanOrEqual(200 + i * 100 - 5);
      expect(at).toBeLessThan(200 + i * 100 + 150);
    }
    expect(p.queued).toBe(0);
    p.release(backend, OK);
    p.close();
  });

  it('sets one timer for a queue served in turn, and clears it when the queue empties', async () => {
    const { p, backend } = onePool(10_000);
    const set = vi.spyOn(globalThis, 'setTimeout');
    const clear = vi.spyOn(globalThis, 'clearTimeout');
    try {
      expect(p.acquire(undefined, none)).toBe(backend);
      const waiters = Array.from({ length: 5 }, () => p.acquire(undefined, none));
      for (const w of waiters) {
        p.release(backend, OK);
        expect(await w).toBe(backend);
      }
      p.release(backend, OK);
      expect(p.queued).toBe(0);
      expect(set).toHaveBeenCalledTimes(1);
      // The one timer is cleared: nothing keeps the process alive for queueTimeout.
      expect(clear).toHaveBeenCalledWith(set.mock.results[0]!.value);
    } finally {
      set.mockRestore();
      clear.mockRestore();
      p.close();
    }
  });
});
