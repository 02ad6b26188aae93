/**
 * Backend selection, with nginx's upstream vocabulary: smooth weighted round-robin (the default,
 * `ngx_http_upstream_round_robin.c`), least connections (`least_conn`: fewest active requests
 * per unit of weight, round-robin among ties), and a consistent hash of a request key
 * (`hash $key consistent`: a ketama-style ring, so when a backend leaves only its keys move).
 */
import { createHash } from 'node:crypto';

/** What a balancer needs to know of a backend. */
export interface Balanceable {
  readonly weight: number;
  readonly active: number;
  /** Smooth WRR state, owned by the balancer. */
  currentWeight: number;
}

export type Eligible<B> = (backend: B) => boolean;

/** Smooth weighted round-robin: over any window of `sum(weights)` picks, each backend gets its weight. */
export function pickRoundRobin<B extends Balanceable>(
  backends: readonly B[],
  eligible: Eligible<B>,
): B | null {
  let best: B | null = null;
  let total = 0;
  for (const b of backends) {
    if (!eligible(b)) continue;
    b.currentWeight += b.weight;
    total += b.weight;
    if (best === null || b.currentWeight > best.currentWeight) best = b;
  }
  if (best !== null) best.currentWeight -= total;
  return best;
}

/** Least connections per unit of weight; ties broken by smooth WRR among the tied. */
export function pickLeastConnections<B extends Balanceable>(
  backends: readonly B[],
  eligible: Eligible<B>,
): B | null {
  let bestScore = Number.POSITIVE_INFINITY;
  for (const b of backends) {
    if (!eligible(b)) continue;
    const score = b.active / b.weight;
    if (score < bestScore) bestScore = score;
  }
  if (bestScore === Number.POSITIVE_INFINITY) return null;
  return pickRoundRobin(backends, (b) => eligible(b) && b.active / b.weight === bestScore);
}

const POINTS_PER_WEIGHT = 160; // as ketama / nginx's consistent hash

function hash32(text: string): number {
  return createHash('md5').update(text).digest().readUInt32BE(0);
}

/** A consistent-hash ring over backends (built once per backend list). */
export class HashRing<B> {
  readonly #points: Uint32Array;
  readonly #owners: B[];

  constructor(backends: readonly B[], key: (b: B) => string, weight: (b: B) => number) {
    const entries: Array<[number, B]> = [];
    for (const b of backends) {
      const n = POINTS_PER_WEIGHT * weight(b);
      const k = key(b);
      for (let i = 0; i < n; i++) entries.push([hash32(`${k}-${i}`), b]);
    }
    entries.sort((x, y) => x[0] - y[0]);
    this.#points = Uint32Array.from(entries, (e) => e[0]);
    this.#owners = entries.map((e) => e[1]);
  }

  /** The first eligible backend clockwise from the key's point on the ring. */
  pick(requestKey: string, eligible: Eligible<B>): B | null {
    const points = this.#points;
    if (points.length === 0) return null;
    const h = hash32(requestKey);
    let lo = 0;
    let hi = points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    const seen = new Set<B>();
    for (let i = 0; i < points.length; i++) {
      const owner = this.#owners[(lo + i) % points.length]!;
      if (seen.has(owner)) continue;
      seen.add(owner);
      if (eligible(owner)) return owner;
    }
    return null;
  }
}
