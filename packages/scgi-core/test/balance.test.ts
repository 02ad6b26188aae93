// The balancing algorithms on their own: smooth weighted round-robin (exact shares per window,
// nginx's interleaving), least connections, and the consistent-hash ring (stable keys, small
// moves when a backend leaves).
import { describe, expect, it } from 'vitest';
import {
  type Balanceable,
  HashRing,
  pickLeastConnections,
  pickRoundRobin,
} from '../src/upstream/balance.js';

interface B extends Balanceable {
  name: string;
  active: number;
}
const mk = (name: string, weight = 1, active = 0): B => ({
  name,
  weight,
  active,
  currentWeight: 0,
});
const all = () => true;

describe('pickRoundRobin (smooth weighted round-robin)', () => {
  it('weights 1/2/3: every window of 6 picks holds exactly 1/2/3, over 600 picks', () => {
    const bs = [mk('a', 1), mk('b', 2), mk('c', 3)];
    const counts = { a: 0, b: 0, c: 0 } as Record<string, number>;
    for (let w = 0; w < 100; w++) {
      const window = { a: 0, b: 0, c: 0 } as Record<string, number>;
      for (let i = 0; i < 6; i++) {
        const b = pickRoundRobin(bs, all)!;
        window[b.name]!++;
        counts[b.name]!++;
      }
      expect(window).toEqual({ a: 1, b: 2, c: 3 });
    }
    expect(counts).toEqual({ a: 100, b: 200, c: 300 });
  });

  it('interleaves as nginx does: weights 5/1/1 give a a b a c a a', () => {
    const bs = [mk('a', 5), mk('b', 1), mk('c', 1)];
    const seq = Array.from({ length: 14 }, () => pickRoundRobin(bs, all)!.name).join('');
    expect(seq).toBe('aabacaa'.repeat(2));
  });

  it('skips ineligible backends and shares among the rest by weight', () => {
    const bs = [mk('a', 1), mk('b', 2), mk('c', 3)];
    const counts: Record<string, number> = {};
    for (let i = 0; i < 400; i++) {
      const b = pickRoundRobin(bs, (x) => x.name !== 'c')!;
      counts[b.name] = (counts[b.name] ?? 0) + 1;
    }
    expect(counts).toEqual({ a: 133, b: 267 });
  });

  it('returns null when nothing is eligible, without touching the state', () => {
    const bs = [mk('a'), mk('b')];
    expect(pickRoundRobin(bs, () => false)).toBeNull();
    expect(bs.map((b) => b.currentWeight)).toEqual([0, 0]);
  });
});

describe('pickLeastConnections', () => {
  it('picks the fewest active requests per unit of weight', () => {
    const bs = [mk('a', 1, 3), mk('b', 1, 1), mk('c', 4, 3)];
    // scores: a 3, b 1, c 0.75
    expect(pickLeastConnections(bs, all)!.name).toBe('c');
    expect(pickLeastConnections(bs, (x) => x.name !== 'c')!.name).toBe('b');
  });

  it('breaks ties by weighted round-robin among the tied only', () => {
    const bs = [mk('a', 1, 0), mk('b', 2, 0), mk('c', 1, 5)];
    const counts: Record<string, number> = {};
    for (let i = 0; i < 300; i++) {
      const b = pickLeastConnections(bs, all)!;
      counts[b.name] = (counts[b.name] ?? 0) + 1;
    }
    expect(counts).toEqual({ a: 100, b: 200 });
  });

  it('a backend that holds its requests gets fewer new ones', () => {
    const slow = mk('slow');
    const bs = [slow, mk('f1'), mk('f2')];
    const counts: Record<string, number> = { slow: 0, f1: 0, f2: 0 };
    // Each step: one new request; fast backends finish theirs at once, the slow one keeps 3.
    for (let i = 0; i < 300; i++) {
      const b = pickLeastConnections(bs, all)!;
      counts[b.name]!++;
      if (b === slow) slow.active = Math.min(slow.active + 1, 3);
    }
    expect(counts.slow).toBeLessThanOrEqual(3);
    expect(counts.f1).toBeGreaterThan(140);
    expect(counts.f2).toBeGreaterThan(140);
  });

  it('returns null when nothing is eligible', () => {
    expect(pickLeastConnections([mk('a')], () => false)).toBeNull();
  });
});

describe('HashRing (consistent hashing)', () => {
  const names = ['unix:/run/a.sock', '127.0.0.1:9001', '127.0.0.1:9002', 'unix:/run/d.sock'];
  const keys = Array.from({ length: 1000 }, (_, i) => `user-${i}`);
  const ring = (bs: readonly B[]) =>
    new HashRing(
      bs,
      (b) => b.name,
      (b) => b.weight,
    );

  it('maps the same key to the same backend, also in a new ring over the same backends', () => {
    const bs = names.map((n) => mk(n));
    const r1 = ring(bs);
    const r2 = ring(names.map((n) => mk(n)));
    for (const k of keys) {
      const a = r1.pick(k, all)!;
      expect(r1.pick(k, all)).toBe(a);
      expect(r2.pick(k, all)!.name).toBe(a.name);
    }
  });

  it('spreads 1000 keys over 4 backends (each 15%..35%)', () => {
    const bs = names.map((n) => mk(n));
    const r = ring(bs);
    const counts = new Map<string, number>();
    for (const k of keys) {
      const b = r.pick(k, all)!;
      counts.set(b.name, (counts.get(b.name) ?? 0) + 1);
    }
    expect(counts.size).toBe(4);
    for (const n of counts.values()) {
      expect(n).toBeGreaterThan(150);
      expect(n).toBeLessThan(350);
    }
  });

  it('removing one of 4 backends moves only its keys (>= 70% keep their backend)', () => {
    const before = ring(names.map((n) => mk(n)));
    const removed = names[2]!;
    const after = ring(names.filter((n) => n !== removed).map((n) => mk(n)));
    let kept = 0;
    for (const k of keys) {
      const was = before.pick(k, all)!.name;
      const now = after.pick(k, all)!.name;
      if (was !== removed) expect(now).toBe(was);
      if (now === was) kept++;
    }
    expect(kept / keys.length).toBeGreaterThanOrEqual(0.7);
    expect(kept).toBeLessThan(keys.length); // the removed backend did own some keys
  });

  it('an ineligible owner sends its keys where a ring without it would', () => {
    const bs = names.map((n) => mk(n));
    const full = ring(bs);
    const without = ring(bs.filter((b) => b.name !== names[0]));
    for (const k of keys) {
      expect(full.pick(k, (b) => b.name !== names[0])!.name).toBe(without.pick(k, all)!.name);
    }
  });

  it('weight 2 takes about twice the keys of weight 1', () => {
    const bs = [mk('a', 2), mk('b', 1), mk('c', 1)];
    const r = ring(bs);
    const counts: Record<string, number> = { a: 0, b: 0, c: 0 };
    for (let i = 0; i < 4000; i++) counts[r.pick(`k${i}`, all)!.name]!++;
    expect(counts.a / 4000).toBeGreaterThan(0.4);
    expect(counts.a / 4000).toBeLessThan(0.6);
  });

  it('returns null for an empty ring or when no backend is eligible', () => {
    expect(ring([]).pick('k', all)).toBeNull();
    expect(ring([mk('a')]).pick('k', () => false)).toBeNull();
  });
});
