// Issue 16: a rolling reload of spawned workers drops no request (uWSGI's chain reload, PHP-FPM's
// graceful reload). Python workers (examples/python/scgi_server.py) serve GETs and POSTs under
// load while `proxy.reload()` replaces them one at a time; retries are off (`retryDelay: 0`), so
// a request sent to a worker that is going away would show as a failure. Then: new pids, the old
// ones gone, no orphan, only the new sockets left; and the same through SIGHUP in a child process.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { has } from './helpers/binaries.js';
import { type ProxyFront, startProxyFront } from './helpers/proxy-fronts.js';
import {
  alive,
  NODE_APP,
  pidsMentioning,
  runNode,
  scriptDir,
  waitFor,
  waitGone,
  workerCommand,
  writeScript,
} from './helpers/workers.js';

describe.skipIf(!has('python3'))('rolling reload of spawned workers', () => {
  const fronts: ProxyFront[] = [];
  afterAll(async () => {
    for (const f of fronts) await f.close();
  });

  it.each([
    'fastify',
    'express',
  ] as const)('through %s: no failed request under load, old pids gone, no orphan, old sockets removed', async (kind) => {
    const front = await startProxyFront(kind, {
      spawn: { ...workerCommand('python'), instances: 2 },
      retryDelay: 0,
    });
    fronts.push(front);
    const proxy = front.proxy;
    await proxy.ready();
    const dir = proxy.options.spawn!.dir;
    const oldPids = proxy.workerPids() as number[];
    expect(oldPids.every((p) => typeof p === 'number')).toBe(true);

    const outcomes = new Map<string, number>();
    let done = 0;
    let stop = false;
    const count = (key: string) => {
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
      done++;
    };
    const lane = async (i: number) => {
      for (let n = 0; !stop; n++) {
        const post = i % 3 === 0; // a POST is never resent: it must not meet a dying worker
        try {
          const res = await fetch(
            post ? `${front.url}/app/echo?n=${n}` : `${front.url}/app/slow?delay=0.02&n=${n}`,
            {
              method: post ? 'POST' : 'GET',
              body: post ? `lane ${i} request ${n}` : undefined,
              signal: AbortSignal.timeout(15_000),
            },
          );
          const body = await res.text();
          if (post && res.status === 200 && body !== `lane ${i} request ${n}`) count('bad echo');
          else count(`${post ? 'POST' : 'GET'} ${res.status}`);
        } catch (err) {
          count((err as Error).message);
        }
      }
    };
    // One long request on each old worker: it must finish there, after the swap.
    const long = [0, 1].map(() =>
      fetch(`${front.url}/app/slow?delay=1`).then(async (r) => `${r.status} ${await r.text()}`),
    );
    const load = Promise.all(Array.from({ length: 8 }, (_, i) => lane(i)));
    await waitFor(() => done >= 50, 10_000, '50 answers before the reload');
    const started = Date.now();
    await proxy.reload();
    const reloadMs = Date.now() - started;
    const during = done;
    await waitFor(() => done >= during + 50, 10_000, '50 answers after the reload');
    stop = true;
    await load;
    const longResults = await Promise.all(long);

    const newPids = proxy.workerPids() as number[];
    console.log(
      `${kind} rolling reload of 2 python workers: ${reloadMs} ms, ${done} requests ` +
        `${JSON.stringify(Object.fromEntries(outcomes))}`,
    );
    expect([...outcomes.keys()].sort()).toEqual(['GET 200', 'POST 200']);
    expect(longResults.every((r) => r.startsWith('200 '))).toBe(true);
    expect(newPids.every((p) => typeof p === 'number' && !oldPids.includes(p))).toBe(true);
    await waitGone(oldPids);
    expect(pidsMentioning(dir).sort()).toEqual([...newPids].sort());
    expect(readdirSync(dir).sort()).toEqual(['worker-0-1.sock', 'worker-1-2.sock']);
    expect(proxy.stats().backends.map((b) => b.address)).toEqual(
      ['worker-0-1.sock', 'worker-1-2.sock'].map((s) => `unix:${join(dir, s)}`),
    );
    await front.close();
    fronts.splice(fronts.indexOf(front), 1);
    expect(pidsMentioning(dir)).toEqual([]);
  }, 60_000);

  it('spawn.reloadSignal: SIGHUP reloads the workers and no longer ends the process', async () => {
    const dir = scriptDir();
    const script = writeScript(
      dir,
      'reload.mjs',
      `import { ScgiProxy } from 'scgi-core';
const proxy = new ScgiProxy({ spawn: { command: process.execPath, args: [${JSON.stringify(NODE_APP)}, 'unix:{socket}'], instances: 2, reloadSignal: 'SIGHUP' } });
await proxy.ready();
console.log(JSON.stringify({ pids: proxy.workerPids(), dir: proxy.options.spawn.dir }));
const first = proxy.workerPids();
const timer = setInterval(() => {
  const now = proxy.workerPids();
  if (now.every((p, i) => p !== null && p !== first[i])) {
    clearInterval(timer);
    console.log('reloaded ' + JSON.stringify(now));
    proxy.close().then(() => console.log('closed'));
  }
}, 20);
`,
    );
    const run = runNode(script);
    const { pids, dir: workerDir } = await run.json<{ pids: number[]; dir: string }>();
    run.child.kill('SIGHUP');
    await waitFor(() => run.lines.includes('closed'), 15_000, 'the reload, then the close');
    const line = run.lines.find((l) => l.startsWith('reloaded '))!;
    const newPids = JSON.parse(line.slice('reloaded '.length)) as number[];
    expect(newPids.some((p) => pids.includes(p))).toBe(false);
    const { code, signal } = await run.exited;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect([...pids, ...newPids].filter(alive)).toEqual([]);
    expect(pidsMentioning(workerDir)).toEqual([]);
  }, 30_000);
});
