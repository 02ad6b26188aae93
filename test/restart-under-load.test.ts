// Issue 16: a lone backend that restarts does not turn into 502s. A real uWSGI on a Unix socket
// serves a load of GETs through both adapters; it is killed (SIGKILL to its process group: a
// crash, the worst case) and a new uWSGI starts on the same socket path a second later. Every GET
// must get its 200: the ones in flight at the kill (reset or closed before any response byte) and
// the ones sent while the socket refuses connections wait `retryDelay` and go to the same backend
// again, within `retryTimeout`. A POST is not resent: it gets the 502 at once.
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { type Backend, startUwsgi } from './helpers/backends.js';
import { has } from './helpers/binaries.js';
import { type ProxyFront, startProxyFront } from './helpers/proxy-fronts.js';
import { makeTempDir, removeTempDir } from './helpers/tmp.js';
import { waitFor } from './helpers/workers.js';

const LANES = 6; // concurrent GETs per front

describe.skipIf(!has('uwsgi'))('a uWSGI restart under load, one backend', () => {
  const dir = makeTempDir('scgi-rs-');
  const socket = join(dir, 'app.sock');
  const running: Backend[] = [];
  const fronts: ProxyFront[] = [];
  afterAll(async () => {
    for (const f of fronts) await f.close();
    for (const b of running) await b.stop();
    removeTempDir(dir);
  });

  /** SIGKILL to the whole process group (the master and its workers), as a crash would. */
  async function crash(b: Backend): Promise<void> {
    process.kill(-b.pid, 'SIGKILL');
    await waitFor(() => b.exitStatus() !== undefined, 5000, 'uWSGI to die');
    await b.stop(); // removes its log dir; the socket path is ours
  }

  it('every GET through fastify-scgi and express-scgi gets its 200; a POST gets a 502', async () => {
    running.push(await startUwsgi({ socket: 'unix', socketPath: socket, processes: 2 }));
    for (const kind of ['fastify', 'express'] as const) {
      // The defaults: retryDelay 250 (full jitter), retryTimeout 5000, maxTries 0.
      fronts.push(await startProxyFront(kind, { upstream: `unix:${socket}` }));
    }
    const outcomes = new Map<string, number>();
    const count = (key: string) => outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
    let ok = 0;
    let stop = false;
    let slowest = 0;
    const lane = async (front: ProxyFront, i: number) => {
      for (let n = 0; !stop; n++) {
        const started = Date.now();
        try {
          // A short sleep in the app, so requests are in flight when uWSGI dies.
          const res = await fetch(`${front.url}/app/slow?delay=0.02&l=${i}&n=${n}`, {
            signal: AbortSignal.timeout(15_000),
          });
          const body = await res.text();
          count(`${front.kind} ${res.status}${res.status === 200 ? '' : ` ${body.slice(0, 80)}`}`);
          if (res.status === 200) ok++;
        } catch (err) {
          count(`${front.kind} ${(err as Error).message}`);
        }
        slowest = Math.max(slowest, Date.now() - started);
      }
    };
    const load = Promise.all(
      fronts.flatMap((f) => Array.from({ length: LANES }, (_, i) => lane(f, i))),
    );

    await waitFor(() => ok >= 100, 10_000, '100 answers before the crash');
    const beforeCrash = ok;
    const crashed = Date.now();
    await crash(running.shift()!);

    // While uWSGI is gone, a POST is not resent: 502 at once, not after retryTimeout.
    const postStarted = Date.now();
    const post = await fetch(`${fronts[0]!.url}/app/echo`, { method: 'POST', body: 'x=1' });
    const postMs = Date.now() - postStarted;
    expect(post.status).toBe(502);
    await post.arrayBuffer();
    expect(postMs).toBeLessThan(1000);

    await delay(1000); // the restart comes a second later (the scenario, not an assertion)
    running.push(await startUwsgi({ socket: 'unix', socketPath: socket, processes: 2 }));
    const downMs = Date.now() - crashed;
    await waitFor(() => ok >= beforeCrash + 200, 15_000, '200 answers after the restart');
    stop = true;
    await load;

    const failed = [...outcomes].filter(([k]) => !k.endsWith(' 200'));
    console.log(
      `uWSGI restart: down ${downMs} ms; ${ok} GETs, all 200: ${failed.length === 0}; ` +
        `slowest ${slowest} ms; ${JSON.stringify(Object.fromEntries(outcomes))}`,
    );
    expect(failed).toEqual([]);
    expect(outcomes.get('fastify 200')).toBeGreaterThan(0);
    expect(outcomes.get('express 200')).toBeGreaterThan(0);
  }, 60_000);
});
