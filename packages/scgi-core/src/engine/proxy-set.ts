/**
 * Named pools for an adapter (`upstreams: { php: ..., py: ... }`, picked per request with
 * `getUpstream(request)` or `reply.scgi({ upstream: 'php' })`). Pools are declared up front and
 * made once: a name from request data can only pick one of them, never make a new pool (and
 * its sockets, timers and workers) per distinct value.
 */
import { InvalidOptionError, UnknownUpstreamError } from '../errors.js';
import type { ScgiProxyOptions, UpstreamOption } from './options.js';
import { ScgiProxy } from './proxy.js';

/**
 * One named pool: its upstream (a string, an entry, a list), or engine options of its own
 * (`{ upstream | spawn, ...settings }`), which override the shared ones. A named pool never takes
 * the shared `upstream` or `spawn`.
 */
export type NamedUpstream = UpstreamOption | ScgiProxyOptions;
export type NamedUpstreams = Readonly<Record<string, NamedUpstream>>;

/** The default engine and the named ones, made, readied and closed together. */
export class ScgiProxySet {
  /** The engine for requests that name no pool (the shared `upstream` / `spawn`, else the first named pool). */
  readonly default: ScgiProxy;
  readonly #named = new Map<string, ScgiProxy>();

  constructor(shared: Partial<ScgiProxyOptions>, upstreams?: unknown) {
    if (upstreams !== undefined) {
      if (upstreams === null || typeof upstreams !== 'object' || Array.isArray(upstreams)) {
        throw new InvalidOptionError('upstreams', 'must be an object of named pools');
      }
      const { upstream: _u, spawn: _s, ...settings } = shared;
      for (const [name, entry] of Object.entries(upstreams as NamedUpstreams)) {
        if (name === '') throw new InvalidOptionError('upstreams', 'names must not be empty');
        this.#named.set(name, new ScgiProxy(namedOptions(settings, entry)));
      }
    }
    const first = this.#named.values().next().value;
    this.default =
      shared.upstream === undefined && shared.spawn === undefined && first !== undefined
        ? first
        : new ScgiProxy(shared as ScgiProxyOptions);
  }

  /** The engine of pool `name` (undefined: the default). Unknown: 500 `SCGI_ERR_UNKNOWN_UPSTREAM`. */
  get(name?: string): ScgiProxy {
    if (name === undefined) return this.default;
    const proxy = this.#named.get(name);
    if (proxy === undefined) {
      throw new UnknownUpstreamError(JSON.stringify(String(name).slice(0, 64)), this.names());
    }
    return proxy;
  }

  names(): string {
    return this.#named.size === 0 ? '(none declared)' : [...this.#named.keys()].join(', ');
  }

  #all(): ScgiProxy[] {
    return [...new Set([this.default, ...this.#named.values()])];
  }

  async ready(): Promise<void> {
    await Promise.all(this.#all().map((p) => p.ready()));
  }

  async close(grace?: number): Promise<void> {
    await Promise.all(this.#all().map((p) => p.close(grace)));
  }
}

function namedOptions(settings: object, entry: NamedUpstream): ScgiProxyOptions {
  const own =
    typeof entry === 'string' ||
    Array.isArray(entry) ||
    (typeof entry === 'object' && entry !== null && 'address' in entry)
      ? { upstream: entry as UpstreamOption }
      : (entry as ScgiProxyOptions);
  return { ...settings, ...own } as ScgiProxyOptions;
}
