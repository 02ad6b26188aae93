/**
 * Who is in the pool: the configured `upstream` entries, with host names resolved into one member
 * per address when the `resolve` option is on (nginx's `server name resolve` with `resolver`;
 * how a Kubernetes headless Service or Consul DNS presents a pool). Each name is looked up at
 * start and again when its answer's TTL runs out (or every `interval`); members that appear
 * join, members that disappear drain (UpstreamPool.setMembers). A failed lookup keeps the last
 * good set, as nginx keeps a server's addresses when its resolver fails; it is logged and
 * counted in `stats().names`.
 *
 * Without `resolve`, a host name stays one member that the OS looks up on each connection.
 */
import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import { checkKnownKeys, intOption } from '../engine/option-checks.js';
import { InvalidOptionError } from '../errors.js';
import { parseAddress, type UpstreamAddress } from './address.js';
import { Backend, type NameStats, type UpstreamPool } from './pool.js';
import type { ScgiLogger } from './spawn.js';

export interface ResolveOptions {
  /**
   * DNS servers to ask (`'10.0.0.10'`, `'127.0.0.1:5353'`, `'[::1]:53'`): a sidecar resolver,
   * or a test's own server. @default the system's (`/etc/resolv.conf`)
   */
  servers?: readonly string[];
  /**
   * ms between lookups of a name, in place of the answer's TTL (nginx `resolver ... valid=`).
   * @default the TTL of the answer, at least 1000
   */
  interval?: number;
  /** ms one DNS query may take (each name is asked twice before the lookup fails). @default 5000 */
  timeout?: number;
}

export interface ResolvedResolve {
  readonly servers: readonly string[] | null;
  readonly interval: number | null;
  readonly timeout: number;
}

const RESOLVE_KEYS = new Set(['servers', 'interval', 'timeout']);
/** A TTL of 0 (or 1 s) must not turn into a lookup per request. */
const MIN_TTL_MS = 1000;
/** Next lookup after a failure when no `interval` is set. */
const RETRY_MS = 5000;

/** The `resolve` option: false (absent) keeps host names as single members. */
export function resolveResolveOption(value: unknown): ResolvedResolve | null {
  if (value === undefined || value === false) return null;
  if (value === true) return Object.freeze({ servers: null, interval: null, timeout: 5000 });
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidOptionError(
      'resolve',
      'must be false, true or { servers, interval, timeout }',
    );
  }
  checkKnownKeys(value, RESOLVE_KEYS, 'resolve');
  const o = value as ResolveOptions;
  let servers: readonly string[] | null = null;
  if (o.servers !== undefined) {
    if (!Array.isArray(o.servers) || o.servers.length === 0) {
      throw new InvalidOptionError('resolve.servers', 'must be a non-empty list of addresses');
    }
    // Checked here, so a bad address fails at construction and not at the first lookup.
    try {
      new Resolver().setServers(o.servers as string[]);
    } catch (err) {
      throw new InvalidOptionError('resolve.servers', (err as Error).message);
    }
    servers = Object.freeze([...o.servers]);
  }
  return Object.freeze({
    servers,
    interval: o.interval === undefined ? null : intOption('resolve.interval', o.interval, 0, 1),
    timeout: intOption('resolve.timeout', o.timeout, 5000, 1),
  });
}

/** A host name (not an IP address) to resolve. */
function isName(address: UpstreamAddress): address is Extract<UpstreamAddress, { kind: 'tcp' }> {
  return address.kind === 'tcp' && isIP(address.host) === 0;
}

/** Backends configured alike are the same member (its counters and health survive a change). */
function memberKey(b: Backend): string {
  return `${b.protocol.name} ${b.address.label} ${b.weight} ${b.maxConnections}`;
}

/** One host name of `upstream` and the members it currently resolves to. */
class NameGroup {
  readonly template: Backend;
  readonly host: string;
  /** Current members by label, in the answer's order. */
  members = new Map<string, Backend>();
  lookups = 0;
  failures = 0;
  lastError: string | null = null;
  timer: NodeJS.Timeout | null = null;
  stopped = false;

  constructor(template: Backend, host: string) {
    this.template = template;
    this.host = host;
  }

  stats(): NameStats {
    return {
      name: this.template.address.label,
      addresses: [...this.members.keys()],
      lookups: this.lookups,
      failures: this.failures,
      lastError: this.lastError,
    };
  }
}

export interface MembershipOptions {
  readonly resolve: ResolvedResolve | null;
  readonly logger: ScgiLogger | null;
}

/** Keeps the pool's members in step with the configured entries and their DNS answers. */
export class Membership {
  readonly #pool: UpstreamPool;
  readonly #o: MembershipOptions;
  readonly #resolver: Resolver | null;
  /** Entries that are members as they are (addresses, and names without `resolve`). */
  #statics: Backend[] = [];
  /** Host names being resolved, by memberKey of their entry. */
  #groups = new Map<string, NameGroup>();
  #stopped = false;

  constructor(pool: UpstreamPool, options: MembershipOptions) {
    this.#pool = pool;
    this.#o = options;
    const r = options.resolve;
    this.#resolver = r === null ? null : new Resolver({ timeout: r.timeout, tries: 2 });
    if (r?.servers != null) this.#resolver!.setServers(r.servers as string[]);
  }

  /**
   * Sets the configured entries (the `upstream` option, `ScgiProxy.setUpstream`). Entries kept
   * keep their members; the pool changes at once for addresses, and for each new host name when
   * its first lookup ends: the promise resolves then (it never rejects; a failed first lookup
   * leaves the name without members until a later lookup succeeds).
   */
  set(entries: readonly Backend[]): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    const current = new Map<string, Backend>();
    for (const b of this.#pool.backends) current.set(memberKey(b), b);
    const statics: Backend[] = [];
    const groups = new Map<string, NameGroup>();
    const fresh: NameGroup[] = [];
    for (const entry of entries) {
      const key = memberKey(entry);
      if (this.#resolver !== null && isName(entry.address)) {
        let group = this.#groups.get(key);
        if (group === undefined) {
          group = new NameGroup(entry, entry.address.host);
          fresh.push(group);
        }
        groups.set(key, group);
      } else {
        statics.push(current.get(key) ?? entry);
      }
    }
    for (const [key, group] of this.#groups) if (!groups.has(key)) this.#stopGroup(group);
    this.#statics = statics;
    this.#groups = groups;
    this.#apply();
    return Promise.all(fresh.map((g) => this.#lookup(g))).then(() => undefined);
  }

  /** The pool's members: the addresses, then each name's, each label once. */
  #apply(): void {
    const members: Backend[] = [];
    const labels = new Set<string>();
    const add = (b: Backend) => {
      if (labels.has(b.address.label)) return;
      labels.add(b.address.label);
      members.push(b);
    };
    for (const b of this.#statics) add(b);
    for (const g of this.#groups.values()) for (const b of g.members.values()) add(b);
    this.#pool.setMembers(members);
  }

  async #lookup(group: NameGroup): Promise<void> {
    const resolver = this.#resolver!;
    group.lookups++;
    const [v4, v6] = await Promise.allSettled([
      resolver.resolve4(group.host, { ttl: true }),
      resolver.resolve6(group.host, { ttl: true }),
    ]);
    if (group.stopped || this.#stopped) return;
    const records = [
      ...(v4.status === 'fulfilled' ? v4.value : []),
      ...(v6.status === 'fulfilled' ? v6.value : []),
    ];
    const interval = this.#o.resolve!.interval;
    if (records.length === 0) {
      // Both families failed, or the name has no address now: keep the last good set, as
      // nginx does when its resolver fails (an empty answer from a flapping registry would
      // otherwise empty the pool).
      const reason = [v4, v6].find(
        (r): r is PromiseRejectedResult =>
          r.status === 'rejected' && (r.reason as { code?: string }).code !== 'ENODATA',
      );
      const code = (reason?.reason as { code?: string } | undefined)?.code ?? 'ENODATA';
      group.failures++;
      group.lastError = code;
      this.#o.logger?.warn(
        { upstream: group.template.address.label, code, kept: [...group.members.keys()] },
        'scgi-core: upstream name lookup failed; keeping the last good addresses',
      );
      this.#schedule(group, interval ?? RETRY_MS);
      return;
    }
    const t = group.template;
    const next = new Map<string, Backend>();
    for (const r of records) {
      const address = parseAddress(
        `${t.address.scheme}://${isIP(r.address) === 6 ? `[${r.address}]` : r.address}:${t.address.kind === 'tcp' ? t.address.port : 0}`,
      );
      if (next.has(address.label)) continue;
      next.set(
        address.label,
        group.members.get(address.label) ??
          new Backend(
            address,
            t.weight,
            t.maxConnections,
            t.protocol,
            t.keepAlive?.options ?? null,
            t.address.label,
          ),
      );
    }
    const changed =
      next.size !== group.members.size || [...next.keys()].some((k) => !group.members.has(k));
    group.members = next;
    if (changed) {
      this.#o.logger?.info(
        { upstream: t.address.label, addresses: [...next.keys()] },
        'scgi-core: upstream name resolved',
      );
      this.#apply();
    }
    const ttl = Math.min(...records.map((r) => r.ttl)) * 1000;
    this.#schedule(group, interval ?? Math.max(MIN_TTL_MS, ttl));
  }

  #schedule(group: NameGroup, ms: number): void {
    if (group.stopped || this.#stopped) return;
    group.timer = setTimeout(() => {
      group.timer = null;
      void this.#lookup(group);
    }, ms);
    // Lookups alone never keep the process alive.
    group.timer.unref();
  }

  #stopGroup(group: NameGroup): void {
    group.stopped = true;
    if (group.timer !== null) clearTimeout(group.timer);
    group.timer = null;
  }

  stats(): NameStats[] {
    return [...this.#groups.values()].map((g) => g.stats());
  }

  /** Stops every lookup (queries in flight are cancelled); the members stay as they are. */
  stop(): void {
    this.#stopped = true;
    for (const g of this.#groups.values()) this.#stopGroup(g);
    this.#resolver?.cancel();
  }
}
