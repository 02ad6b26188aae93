/**
 * Spawned worker pools, serving: Fastify (`register` with `spawn`) and Express
 * (`scgiProxy({ spawn })`, `await mw.ready()`) each start real Python, uWSGI and Node SCGI
 * workers and serve through them. Checked against the process table and the filesystem: every
 * worker has its own socket in a private 0700 dir, `SCGI_SOCKET` in its environment, its output
 * in the framework's logger tagged with its index, and nothing is left after close.
 */
import { existsSync, lstatSync, statSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import express from 'express';
import { scgiProxy } from 'express-scgi';
import Fastify from 'fastify';
import fastifyScgi from 'fastify-scgi';
import type { ScgiProxy } from 'scgi-core';
import { afterAll, describe, expect, it } from 'vitest';
import { has } from './helpers/binaries.js';
import {
  alive,
  type LogRecord,
  pidsMentioning,
  pinoCapture,
  privateTmpdir,
  procEnv,
  recordingLogger,
  type WorkerKind,
  waitFor,
  waitGone,
  workerCommand,
} from './helpers/workers.js';

const tmp = privateTmpdir();
afterAll(() => tmp.restore());

const KINDS: Array<{ kind: WorkerKind; enabled: () => boolean }> = [
  { kind: 'python', enabled: () => has('python3') },
  { kind: 'uwsgi', enabled: () => has('uwsgi') },
  { kind: 'node', enabled: () => true },
];

/** The line each kind prints once it listens, and on which stream. */
function readyLine(kind: WorkerKind, socket: string): { stream: string; text: string } {
  if (kind === 'uwsgi') return { stream: 'stderr', text: `bound to UNIX address ${socket}` };
  return { stream: 'stdout', text: `listening on unix:${socket}` };
}

async function getEnv(base: string): Promise<Record<string, string>> {
  const res = await fetch(`${base}/app/env?x=1`);
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, string>;
}

/** What every spawned pool must look like while it runs; returns the pids and the dir. */
async function checkRunningPool(
  kind: WorkerKind,
  proxy: ScgiProxy,
  records: LogRecord[],
): Promise<{ pids: number[]; dir: string }> {
  const spawnOpts = proxy.options.spawn!;
  const dir = spawnOpts.dir;
  expect(dirname(dir)).toBe(tmp.dir);
  expect(statSync(dir).mode & 0o777).toBe(0o700);
  const pids = proxy.workerPids();
  expect(pids).toHaveLength(2);
  for (const [i, pid] of pids.entries()) {
    expect(pid, `worker ${i} pid`).toBeTypeOf('number');
    expect(alive(pid!)).toBe(true);
    const socket = join(dir, `worker-${i}.sock`);
    expect(spawnOpts.sockets[i]).toBe(socket);
    expect(lstatSync(socket).isSocket()).toBe(true);
    expect(procEnv(pid!).SCGI_SOCKET).toBe(socket);
    // The worker's own output, line by line, tagged with its index and pid.
    const want = readyLine(kind, socket);
    await waitFor(
      () =>
        records.some(
          (r) =>
            r.worker === i &&
            r.workerPid === pid &&
            r.stream === want.stream &&
            r.level === (want.stream === 'stdout' ? 30 : 40) &&
            r.msg.includes(want.text),
        ),
      5000,
      `worker ${i}'s "${want.text}" line in the log`,
    );
  }
  expect(new Set(pids).size).toBe(2);
  return { pids: pids as number[], dir };
}

/** After close: no worker process (nor a fork of one), no socket, no dir. */
async function checkCleanedUp(pids: number[], dir: string): Promise<void> {
  await waitGone(pids);
  expect(existsSync(dir)).toBe(false);
  await waitFor(() => pidsMentioning(dir).length === 0, 5000, `no process mentioning ${dir}`);
  expect(tmp.workerDirs()).toEqual([]);
}

describe.each(KINDS)('spawned $kind workers', ({ kind, enabled }) => {
  it.skipIf(!enabled())(
    'Fastify register({ spawn }) starts them, serves, logs and stops',
    async () => {
      const { stream, records } = pinoCapture();
      const app = Fastify({ logger: { level: 'info', stream } });
      try {
        await app.register(fastifyScgi, {
          prefix: '/app',
          spawn: { ...workerCommand(kind), instances: 2 },
        });
        await app.listen({ port: 0, host: '127.0.0.1' });
        const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
        const { pids, dir } = await checkRunningPool(kind, app.scgiProxy, records);
        // Worker lines go through Fastify's logger (its child for the plugin).
        expect(records.find((r) => r.stream !== undefined)?.plugin).toBe('fastify-scgi');
        for (let i = 0; i < 4; i++) {
          const env = await getEnv(base);
          expect(env.SCRIPT_NAME).toBe('/app');
          expect(env.PATH_INFO).toBe('/env');
          expect(env.QUERY_STRING).toBe('x=1');
        }
        // Round-robin over both workers.
        expect(app.scgiProxy.stats().backends.map((b) => b.served)).toEqual([2, 2]);
        await app.close();
        await checkCleanedUp(pids, dir);
      } finally {
        await app.close();
      }
    },
  );

  it.skipIf(!enabled())(
    'Express scgiProxy({ spawn }) + mw.ready() serves, logs and stops',
    async () => {
      const { logger, records } = recordingLogger();
      const mw = scgiProxy({ spawn: { ...workerCommand(kind), instances: 2 }, logger });
      let server: Server | undefined;
      try {
        await mw.ready();
        const app = express();
        app.use('/app', mw);
        server = await new Promise<Server>((resolve) => {
          const s = app.listen(0, '127.0.0.1', () => resolve(s));
        });
        const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
        const { pids, dir } = await checkRunningPool(kind, mw.proxy, records);
        for (let i = 0; i < 4; i++) {
          const env = await getEnv(base);
          expect(env.SCRIPT_NAME).toBe('/app');
          expect(env.PATH_INFO).toBe('/env');
        }
        expect(mw.stats().backends.map((b) => b.served)).toEqual([2, 2]);
        await mw.close();
        await checkCleanedUp(pids, dir);
      } finally {
        await mw.close();
        server?.closeAllConnections();
        server?.close();
      }
    },
  );
});
