/**
 * Backends found by name (the `resolve` option) and pools changed at run time
 * (`proxy.setUpstream`): a name with several A records is several members; a DNS answer that
 * changes under load adds and drains members without a failed request; a member that leaves
 * finishes its requests in flight; a failed lookup keeps the last good set, logged and counted.
 * The DNS server is the test's own on 127.0.0.1 (test/helpers/dns.ts), the backends listen on
 * 127.0.0.1, 127.0.0.2 and 127.0.0.3 on one port.
 */
import { ScgiProxy } from 'scgi-core';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type LoopbackBackends,
  startLoopbackBackends,
  startTestDns,
  type TestDns,
} from './helpers/dns.js';
import { startFastifyFront } from './helpers/fronts.js';
import { eventually, type Reply, send } from './helpers/pool.js';
import { recordingLogger } from './helpers/workers.js';

const HOSTS = ['127.0.0.1', '127.0.0.2', '127.0.0.3'];
const NAME = 'app.test';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(
  records: string[],
  extra: Record<string, unknown> = {},
): Promise<{
  dns: TestDns;
  backends: LoopbackBackends;
  url: string;
  proxy: ScgiProxy;
  labels: () => string[];
  states: () => Record<string, string>;
}> {
  const dns = await startTestDns();
  cleanups.push(() => dns.close());
  dns.records.set(NAME, records);
  const backends = await startLoopbackBackends(HOSTS);
  cleanups.push(() => backends.close());
  const front = await startFastifyFront({
    upstream: `${NAME}:${backends.port}`,
    resolve: { servers: [dns.server], interval: 50, timeout: 300 },
    ...extra,
  } as never);
  cleanups.push(() => front.close());
  const proxy = front.app.scgiProxy as ScgiProxy;
  await proxy.ready();
  const p = backends.port;
  return {
    dns,
    backends,
    url: `${front.url}/x`,
    proxy,
    labels: () =>
      proxy
        .stats()
        .backends.filter((b) => b.state !== 'draining')
        .map((b) => b.address.replace(`:${p}`, ''))
        .sort(),
    states: () =>
      Object.fromEntries(
        proxy.stats().backends.map((b) => [b.address.replace(`:${p}`, ''), b.state]),
      ),
  };
}

describe('resolve: host names become members', () => {
  it('a name with two A records is two members, each with its own requests', async () => {
    const { url, proxy, backends, labels } = await setup(['127.0.0.1', '127.0.0.2']);
    expect(labels()).toEqual(['127.0.0.1', '127.0.0.2']);
    expect(proxy.stats().backends.map((b) => b.resolvedFrom)).toEqual([
      `${NAME}:${backends.port}`,
      `${NAME}:${backends.port}`,
    ]);
    const bodies = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const r = await send(url);
      expect(r.status).toBe(200);
      bodies.add(r.body.toString());
    }
    expect([...bodies].sort()).toEqual(['127.0.0.1', '127.0.0.2']);
    const [names] = proxy.stats().names!;
    expect(names).toMatchObject({ name: `${NAME}:${backends.port}`, failures: 0, lastError: null });
  });

  it('a DNS answer that changes under load: members join and leave, no request fails', async () => {
    const { url, dns, backends, labels } = await setup(['127.0.0.1', '127.0.0.2']);
    const replies: Reply[] = [];
    let running = true;
    const loops = Array.from({ length: 6 }, async () => {
      while (running) replies.push(await send(url));
    });
    const answers = [['127.0.0.2', '127.0.0.3'], ['127.0.0.3'], ['127.0.0.1', '127.0.0.3']];
    for (const answer of answers) {
      dns.records.set(NAME, answer);
      const seen = await eventually(labels, (l) => l.join() === [...answer].sort().join(), 3000);
      expect(seen).toEqual([...answer].sort());
      const before = replies.length;
      await eventually(
        () => replies.length,
        (n) => n >= before + 20,
      );
    }
    running = false;
    await Promise.all(loops);
    expect(replies.length).toBeGreaterThan(60);
    const failed = replies.filter((r) => r.status !== 200);
    expect(failed.map((r) => [r.status, r.error, r.body.toString()])).toEqual([]);
    for (const host of HOSTS) expect(backends.hits.get(host) ?? 0).toBeGreaterThan(0);
  });

  it('a member that leaves finishes its request in flight, takes no new one, then is gone', async () => {
    const { url, dns, backends, states } = await setup(['127.0.0.1']);
    let open!: () => void;
    backends.gate = new Promise<void>((r) => {
      open = r;
    });
    const held = send(url);
    await eventually(
      () => backends.waiting.get('127.0.0.1') ?? 0,
      (n) => n === 1,
    );
    backends.gate = null;
    dns.records.set(NAME, ['127.0.0.2']);
    const during = await eventually(states, (s) => s['127.0.0.2'] === 'up', 3000);
    expect(during).toEqual({ '127.0.0.1': 'draining', '127.0.0.2': 'up' });
    const fresh = await send(url);
    expect(fresh.body.toString()).toBe('127.0.0.2');
    open();
    const first = await held;
    expect([first.status, first.body.toString()]).toEqual([200, '127.0.0.1']);
    expect(await eventually(states, (s) => !('127.0.0.1' in s))).toEqual({ '127.0.0.2': 'up' });
  });

  it('a failed lookup keeps the last good set, and is logged and counted', async () => {
    const { logger, records } = recordingLogger();
    const { url, dns, proxy, labels } = await setup(['127.0.0.1', '127.0.0.2'], { logger });
    dns.silent = true;
    const timedOut = await eventually(
      () => proxy.stats().names![0]!,
      (n) => n.failures >= 1,
      5000,
    );
    expect(timedOut.lastError).toBe('ETIMEOUT');
    expect(labels()).toEqual(['127.0.0.1', '127.0.0.2']);
    expect((await send(url)).status).toBe(200);
    dns.silent = false;
    dns.records.delete(NAME);
    const missing = await eventually(
      () => proxy.stats().names![0]!,
      (n) => n.lastError === 'ENOTFOUND',
      3000,
    );
    expect(missing.lastError).toBe('ENOTFOUND');
    expect(labels()).toEqual(['127.0.0.1', '127.0.0.2']);
    expect((await send(url)).status).toBe(200);
    const warned = records.filter((r) => r.level === 40 && /lookup failed/.test(r.msg));
    expect(warned.length).toBeGreaterThanOrEqual(2);
  });

  it('the TTL of the answer paces the lookups when no interval is set', async () => {
    const dns = await startTestDns();
    cleanups.push(() => dns.close());
    dns.ttl = 1;
    dns.records.set(NAME, ['127.0.0.1']);
    const proxy = new ScgiProxy({ upstream: `${NAME}:9`, resolve: { servers: [dns.server] } });
    cleanups.push(() => proxy.close());
    await proxy.ready();
    expect(dns.queries.get(NAME)).toBe(1);
    await eventually(
      () => dns.queries.get(NAME) ?? 0,
      (n) => n >= 2,
      3000,
    );
    const started = Date.now();
    await eventually(
      () => dns.queries.get(NAME) ?? 0,
      (n) => n >= 3,
      3000,
    );
    // One TTL (1 s) apart, not every few ms.
    expect(Date.now() - started).toBeGreaterThanOrEqual(800);
  });
});

describe('setUpstream: the pool changed at run time', () => {
  it('new requests go to the new list; the old member drains and its in-flight request finishes', async () => {
    const backends = await startLoopbackBackends(HOSTS);
    cleanups.push(() => backends.close());
    const p = backends.port;
    const front = await startFastifyFront({
      upstream: `127.0.0.1:${p}`,
      healthCheck: { interval: 30 },
    });
    cleanups.push(() => front.close());
    const proxy = front.app.scgiProxy as ScgiProxy;
    let open!: () => void;
    backends.gate = new Promise<void>((r) => {
      open = r;
    });
    const held = send(`${front.url}/x`);
    await eventually(
      () => backends.waiting.get('127.0.0.1') ?? 0,
      (n) => n === 1,
    );
    backends.gate = null;
    await proxy.setUpstream([`127.0.0.2:${p}`, { address: `127.0.0.3:${p}`, weight: 2 }]);
    expect(proxy.stats().backends.map((b) => [b.address, b.state])).toEqual([
      [`127.0.0.2:${p}`, 'up'],
      [`127.0.0.3:${p}`, 'up'],
      [`127.0.0.1:${p}`, 'draining'],
    ]);
    expect(proxy.health()).toMatchObject({ up: 2, total: 2 });
    // Health checks follow membership: the members that joined are probed (a connect each).
    const probes = await eventually(
      () => backends.accepted.get('127.0.0.3') ?? 0,
      (n) => n >= 2,
    );
    expect(probes).toBeGreaterThanOrEqual(2);
    const bodies: string[] = [];
    for (let i = 0; i < 6; i++) bodies.push((await send(`${front.url}/x`)).body.toString());
    expect(bodies.filter((b) => b === '127.0.0.3').length).toBe(4);
    expect(bodies.filter((b) => b === '127.0.0.2').length).toBe(2);
    open();
    const first = await held;
    expect([first.status, first.body.toString()]).toEqual([200, '127.0.0.1']);
    expect(backends.hits.get('127.0.0.1')).toBe(1);
    expect(proxy.stats().backends.map((b) => b.address)).toEqual([
      `127.0.0.2:${p}`,
      `127.0.0.3:${p}`,
    ]);
  });

  it('refuses a bad list with SCGI_ERR_INVALID_OPTION and keeps the pool', async () => {
    const proxy = new ScgiProxy({ upstream: '127.0.0.1:9' });
    cleanups.push(() => proxy.close());
    expect(() => proxy.setUpstream([])).toThrowError(
      expect.objectContaining({ code: 'SCGI_ERR_INVALID_OPTION' }),
    );
    expect(() => proxy.setUpstream('nohost')).toThrowError(
      expect.objectContaining({ code: 'SCGI_ERR_INVALID_ADDRESS' }),
    );
    expect(proxy.stats().backends.map((b) => b.address)).toEqual(['127.0.0.1:9']);
  });

  it('the resolve option is checked', () => {
    for (const resolve of [
      1,
      { servers: [] },
      { servers: ['not an address'] },
      { interval: 0 },
      { tll: 1 },
    ]) {
      expect(() => new ScgiProxy({ upstream: '127.0.0.1:9', resolve } as never)).toThrowError(
        expect.objectContaining({ code: 'SCGI_ERR_INVALID_OPTION' }),
      );
    }
  });
});
