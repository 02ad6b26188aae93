/**
 * Spawned worker pools, faults: a worker killed with SIGKILL under load, commands that fail at
 * start, a worker that never listens, and workers that keep failing after a good start. Real
 * processes; checked against the process table and the filesystem.
 */
import { readFileSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import express from 'express';
import { scgiProxy } from 'express-scgi';
import Fastify from 'fastify';
import fastifyScgi from 'fastify-scgi';
import { ScgiProxy } from 'scgi-core';
import { afterAll, describe, expect, it } from 'vitest';
import { has } from './helpers/binaries.js';
import {
  alive,
  getLoad,
  pinoCapture,
  privateTmpdir,
  recordingLogger,
  scriptDir,
  waitFor,
  waitGone,
  workerCommand,
  writeScript,
} from './helpers/workers.js';

const tmp = privateTmpdir();
afterAll(() => tmp.restore());
const scripts = scriptDir();

describe('a worker killed with SIGKILL under load', () => {
  it('loses no GET, leaves the rotation at once, is restarted and serves again', async () => {
    const { stream, records } = pinoCapture();
    const app = Fastify({ logger: { level: 'info', stream } });
    try {
      await app.register(fastifyScgi, {
        prefix: '/app',
        spawn: { ...workerCommand('node'), instances: 2 },
      });
      await app.listen({ port: 0, host: '127.0.0.1' });
      const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
      const proxy = app.scgiProxy;
      const [victim, other] = proxy.workerPids() as [number, number];

      let outOfRotation: Promise<number> | undefined;
      // 50 ms per request keeps several in flight on each worker when the kill lands.
      const outcomes = await getLoad(`${base}/app/slow?delay=0.05`, 200, 10, (done) => {
        if (done !== 50) return;
        process.kill(victim, 'SIGKILL');
        outOfRotation = waitFor(
          () => proxy.stats().backends[0]!.healthy === false,
          500,
          'the killed worker to leave the rotation',
        );
      });
      expect(Object.fromEntries(outcomes)).toEqual({ 200: 200 });
      expect(await outOfRotation).toBeLessThan(500);

      await waitFor(
        () => {
          const pid = proxy.workerPids()[0];
          return typeof pid === 'number' && pid !== victim && proxy.stats().backends[0]!.healthy;
        },
        5000,
        'worker 0 to be restarted',
      );
      const [restarted, still] = proxy.workerPids() as [number, number];
      expect(alive(victim)).toBe(false);
      expect(alive(restarted)).toBe(true);
      expect(still).toBe(other);
      expect(
        records.some(
          (r) => r.worker === 0 && r.signal === 'SIGKILL' && r.msg.includes('restarting'),
        ),
      ).toBe(true);

      const served = proxy.stats().backends[0]!.served;
      for (let i = 0; i < 10; i++) expect((await fetch(`${base}/app/env`)).status).toBe(200);
      expect(proxy.stats().backends[0]!.served - served).toBeGreaterThanOrEqual(4);
      await app.close();
      await waitGone([restarted, other]);
      expect(tmp.workerDirs()).toEqual([]);
    } finally {
      await app.close();
    }
  });
});

describe('a worker command that fails at start', () => {
  const missingScript = join(scripts, 'no-such-script.py');
  const cases = [
    {
      name: 'python3 with a missing script',
      enabled: () => has('python3'),
      spawn: { command: 'python3', args: [missingScript, '{socket}'] },
      names: `python3 ${missingScript}`,
      tail: /No such file or directory/,
    },
    {
      name: 'a command that does not exist',
      enabled: () => true,
      spawn: { command: 'no-such-scgi-worker-cmd', args: ['--socket', '{socket}'] },
      names: 'no-such-scgi-worker-cmd --socket',
      tail: /ENOENT/,
    },
    {
      name: 'a command that prints "boom" and exits 1',
      enabled: () => true,
      spawn: { command: 'sh', args: ['-c', 'echo starting; echo boom >&2; exit 1'] },
      names: 'sh -c echo starting; echo boom >&2; exit 1',
      tail: /exited before accepting connections \(code 1, signal null\); stderr: boom/,
    },
  ];

  // A skip, not an early return: a case whose binary is missing must show in the skip count.
  for (const c of cases) {
    it.skipIf(!c.enabled())(
      `Fastify register() rejects with SCGI_ERR_SPAWN: ${c.name}`,
      async () => {
        const { stream, records } = pinoCapture();
        const app = Fastify({ logger: { level: 'info', stream } });
        try {
          const err = await app
            .register(fastifyScgi, { prefix: '/app', spawn: { ...c.spawn, instances: 2 } })
            .then(
              () => null,
              (e: unknown) => e as Error & { code: string },
            );
          expect(err?.code).toBe('SCGI_ERR_SPAWN');
          expect(err?.message).toContain(c.names);
          expect(err?.message).toMatch(c.tail);
          await expect(app.ready()).rejects.toMatchObject({ code: 'SCGI_ERR_SPAWN' });
          // Nothing left behind: no worker process, no socket dir.
          const pids = [...new Set(records.map((r) => r.workerPid).filter((p) => p !== undefined))];
          await waitGone(pids as number[], 2000);
          expect(tmp.workerDirs()).toEqual([]);
        } finally {
          await app.close().catch(() => {});
        }
      },
    );
  }

  it('Express mw.ready() rejects the same way, and requests get the error', async () => {
    const mw = scgiProxy({ spawn: { ...cases[2]!.spawn, instances: 1 }, respondOnError: true });
    await expect(mw.ready()).rejects.toMatchObject({
      code: 'SCGI_ERR_SPAWN',
      message: expect.stringContaining('boom'),
    });
    expect(tmp.workerDirs()).toEqual([]);
    const app = express();
    app.use('/app', mw);
    const server = await new Promise<Server>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    try {
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/app/`);
      expect(res.status).toBe(500);
      expect(await res.json()).toMatchObject({ code: 'SCGI_ERR_SPAWN' });
    } finally {
      await mw.close();
      server.closeAllConnections();
      server.close();
    }
  });

  it('invalid options create no socket dir (regression: dir made before validation)', () => {
    const bad = [
      { spawn: { command: 'x', idleTimeout: 0 } },
      { spawn: { command: 'x', readyTimeout: -1 } },
      { spawn: { command: 'x' }, maxQueue: -1 },
      { spawn: { command: 'x' }, balance: 'random' as 'round-robin' },
    ];
    try {
      for (const options of bad) {
        expect(() => new ScgiProxy(options)).toThrow(
          expect.objectContaining({ code: 'SCGI_ERR_INVALID_OPTION' }),
        );
      }
      expect(tmp.workerDirs()).toEqual([]);
    } finally {
      for (const d of tmp.workerDirs()) rmSync(join(tmp.dir, d), { recursive: true });
    }
  });
});

describe('readiness', () => {
  it('a worker that never listens: SCGI_ERR_SPAWN after readyTimeout, and it is killed', async () => {
    const proxy = new ScgiProxy({
      spawn: { command: 'sleep', args: ['30'], instances: 1, readyTimeout: 500 },
    });
    const started = Date.now();
    const ready = proxy.ready();
    const [pid] = proxy.workerPids() as [number];
    expect(alive(pid)).toBe(true);
    const err = await ready.then(
      () => null,
      (e: unknown) => e as Error & { code: string },
    );
    const took = Date.now() - started;
    expect(err?.code).toBe('SCGI_ERR_SPAWN');
    expect(err?.message).toContain('sleep 30');
    expect(err?.message).toContain('did not accept connections on its socket within 500 ms');
    expect(took).toBeGreaterThanOrEqual(500);
    expect(took).toBeLessThan(3000);
    expect(alive(pid)).toBe(false);
    expect(tmp.workerDirs()).toEqual([]);
    await proxy.close();
  });
});

describe('a worker that keeps failing after it came up', () => {
  it('crashing 100 ms after it listens: restarts with backoff, then reported, not restarted', async () => {
    const script = writeScript(
      scripts,
      'crash-after-listen.mjs',
      `import net from 'node:net';
net.createServer((s) => s.destroy()).listen(process.env.SCGI_SOCKET, () => {
  setTimeout(() => process.exit(3), 100);
});
`,
    );
    const { logger, records } = recordingLogger();
    const proxy = new ScgiProxy({
      spawn: { command: process.execPath, args: [script], instances: 1, restartDelay: 50 },
      logger,
    });
    try {
      await proxy.ready();
      const reported = () => records.filter((r) => r.msg.includes('keeps failing at start'));
      await waitFor(() => reported().length > 0, 8000, 'the "keeps failing at start" error');
      const starts = records.filter((r) => r.msg === 'scgi worker ready');
      // maxStartFailures (5) starts in all, each later one after a longer wait: no hot loop.
      expect(starts).toHaveLength(5);
      // Each gap: the worker's 100 ms of life plus a restart delay doubling from 2 x 50 ms.
      const gaps = starts.slice(1).map((r, i) => r.time - starts[i]!.time);
      for (const [i, gap] of gaps.entries()) {
        expect(gap).toBeGreaterThanOrEqual(100 + 50 * 2 ** (i + 1));
      }
      expect(reported()[0]).toMatchObject({ level: 50, worker: 0, failures: 5 });
      // Not restarted any more.
      await delay(800);
      expect(records.filter((r) => r.msg === 'scgi worker ready')).toHaveLength(5);
      expect(reported()).toHaveLength(1);
      expect(proxy.workerPids()).toEqual([null]);
      await waitGone(starts.map((r) => r.workerPid!));
    } finally {
      await proxy.close();
    }
    expect(tmp.workerDirs()).toEqual([]);
  });

  it('a restart that never listens is retried one at a time, and never after it was reported (regression)', async () => {
    // Listens (then exits) on its first run only; later runs never listen.
    const marker = join(scripts, 'listened-once');
    const script = writeScript(
      scripts,
      'listen-once.mjs',
      `import { appendFileSync, existsSync, writeFileSync } from 'node:fs';
import net from 'node:net';
const marker = process.argv[2];
appendFileSync(marker + '.pids', process.pid + '\\n');
if (existsSync(marker)) setInterval(() => {}, 1000);
else {
  writeFileSync(marker, '');
  net.createServer((s) => s.destroy()).listen(process.env.SCGI_SOCKET, () => {
    setTimeout(() => process.exit(3), 100);
  });
}
`,
    );
    const launched = () =>
      readFileSync(`${marker}.pids`, 'utf8').split('\n').filter(Boolean).map(Number);
    const { logger, records } = recordingLogger();
    const proxy = new ScgiProxy({
      spawn: {
        command: process.execPath,
        args: [script, marker],
        instances: 1,
        // Room for the first run's Node startup on a loaded machine.
        readyTimeout: 1000,
        restartDelay: 50,
        maxStartFailures: 3,
      },
      logger,
    });
    try {
      await proxy.ready();
      let mostAlive = 0;
      const reported = () => records.some((r) => r.msg.includes('keeps failing at start'));
      await waitFor(
        () => {
          mostAlive = Math.max(mostAlive, launched().filter(alive).length);
          return reported();
        },
        8000,
        'the "keeps failing at start" error',
      );
      const atReport = launched().length;
      // Long enough for a restart timer left behind to fire and its worker to start.
      await waitFor(
        () => {
          mostAlive = Math.max(mostAlive, launched().filter(alive).length);
          return false;
        },
        1000,
        'nothing',
      ).catch(() => {});
      expect(mostAlive).toBe(1);
      expect(atReport).toBeLessThanOrEqual(3);
      expect(launched()).toHaveLength(atReport);
      expect(records.filter((r) => r.msg.includes('keeps failing at start'))).toHaveLength(1);
      await waitGone(launched());
    } finally {
      await proxy.close();
    }
    expect(tmp.workerDirs()).toEqual([]);
  });
});
