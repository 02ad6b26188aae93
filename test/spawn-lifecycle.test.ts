/**
 * Spawned worker pools, lifecycle: sizing by load, graceful shutdown (in-flight requests finish,
 * SIGTERM then SIGKILL after killTimeout, sockets and dir removed) and no orphan worker on any
 * exit path Node can observe, checked from outside a child Node process that runs the built
 * packages as a user would.
 */
import { existsSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import express from 'express';
import { scgiProxy } from 'express-scgi';
import Fastify from 'fastify';
import fastifyScgi from 'fastify-scgi';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  alive,
  getLoad,
  NODE_APP,
  type NodeChild,
  pinoCapture,
  privateTmpdir,
  ROOT,
  runNode,
  scriptDir,
  waitFor,
  waitGone,
  workerCommand,
  writeScript,
} from './helpers/workers.js';

const tmp = privateTmpdir();
afterAll(() => tmp.restore());
const scripts = scriptDir();

beforeAll(() => {
  // The child scripts and examples/node-app.mjs load the built packages.
  for (const pkg of ['scgi-core', 'fastify-plugin']) {
    const dist = join(ROOT, 'packages', pkg, 'dist', 'index.js');
    if (!existsSync(dist)) throw new Error(`${dist} is missing: build first (npx tsc -b)`);
  }
});

describe('sizing by load', () => {
  it('grows from minInstances under load, shrinks back after idleTimeout', async () => {
    const { stream, records } = pinoCapture();
    const app = Fastify({ logger: { level: 'info', stream } });
    try {
      await app.register(fastifyScgi, {
        prefix: '/app',
        spawn: { ...workerCommand('node'), minInstances: 1, maxInstances: 3, idleTimeout: 500 },
      });
      await app.listen({ port: 0, host: '127.0.0.1' });
      const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
      const proxy = app.scgiProxy;
      const running = () => proxy.workerPids().filter((p) => p !== null).length;
      const [first] = proxy.workerPids();
      expect(proxy.workerPids()).toEqual([first, null, null]);

      let most = 1;
      const extraPids = new Set<number>();
      const sampler = setInterval(() => {
        most = Math.max(most, running());
        for (const p of proxy.workerPids().slice(1)) if (p !== null) extraPids.add(p);
      }, 10);
      const outcomes = await getLoad(`${base}/app/slow?delay=0.25`, 40, 8).finally(() =>
        clearInterval(sampler),
      );
      expect(Object.fromEntries(outcomes)).toEqual({ 200: 40 });
      expect(most).toBe(3);
      const grown = records.filter((r) => r.msg === 'scgi pool busy: starting a worker').length;
      expect(grown).toBeGreaterThanOrEqual(2);

      const shrank = await waitFor(() => running() === 1, 5000, 'the pool to shrink back to 1');
      expect(shrank).toBeGreaterThanOrEqual(400);
      expect(proxy.workerPids()).toEqual([first, null, null]);
      await waitGone([...extraPids]);
      expect(records.filter((r) => r.msg === 'scgi worker idle: stopping it')).toHaveLength(grown);
      // Still serving on the one left.
      expect((await fetch(`${base}/app/env`)).status).toBe(200);
    } finally {
      await app.close();
    }
    expect(tmp.workerDirs()).toEqual([]);
  });
});

describe('shutdown', () => {
  it('Fastify close(): in-flight requests finish, then SIGTERM, then SIGKILL after killTimeout', async () => {
    const stubborn = writeScript(
      scripts,
      'ignores-sigterm.mjs',
      `import { startNodeApp } from ${JSON.stringify(pathToFileURL(NODE_APP).href)};
process.on('SIGTERM', () => console.log('ignoring SIGTERM'));
await startNodeApp(process.argv[2]);
`,
    );
    const { stream, records } = pinoCapture();
    const app = Fastify({ logger: { level: 'info', stream } });
    try {
      await app.register(fastifyScgi, {
        prefix: '/app',
        spawn: {
          command: process.execPath,
          args: [stubborn, 'unix:{socket}'],
          instances: 2,
          killTimeout: 300,
        },
        closeGrace: 5000,
      });
      await app.listen({ port: 0, host: '127.0.0.1' });
      const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
      const proxy = app.scgiProxy;
      const pids = proxy.workerPids() as number[];
      const dir = proxy.options.spawn!.dir;

      const slow = [1, 2].map(async () => {
        const res = await fetch(`${base}/app/slow?delay=0.6`);
        const body = await res.json();
        return { status: res.status, body, at: Date.now() };
      });
      await waitFor(() => proxy.inFlight === 2, 2000, 'two requests in flight');
      const closing = app.close().then(() => Date.now());
      const answers = await Promise.all(slow);
      const closedAt = await closing;
      for (const a of answers) expect(a).toMatchObject({ status: 200, body: { slept: 600 } });

      // SIGTERM first (each worker said it ignores it), SIGKILL killTimeout later.
      for (const pid of pids) {
        expect(alive(pid)).toBe(false);
        await waitFor(
          () => records.some((r) => r.workerPid === pid && r.msg === 'ignoring SIGTERM'),
          2000,
          `worker ${pid} to log that it got SIGTERM`,
        );
      }
      const lastAnswer = Math.max(...answers.map((a) => a.at));
      expect(closedAt - lastAnswer).toBeGreaterThanOrEqual(250);
      expect(closedAt - lastAnswer).toBeLessThan(2000);
      expect(existsSync(dir)).toBe(false);
      expect(tmp.workerDirs()).toEqual([]);
    } finally {
      await app.close();
    }
  });

  it('Express mw.close(): in-flight requests finish, new ones get 503, workers and dir are gone', async () => {
    const mw = scgiProxy({ spawn: { ...workerCommand('node'), instances: 2 } });
    let server: Server | undefined;
    try {
      await mw.ready();
      const app = express();
      app.use('/app', mw);
      server = await new Promise<Server>((resolve) => {
        const s = app.listen(0, '127.0.0.1', () => resolve(s));
      });
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const pids = mw.proxy.workerPids() as number[];
      const dir = mw.proxy.options.spawn!.dir;
      const slow = fetch(`${base}/app/slow?delay=0.4`).then(async (r) => [
        r.status,
        await r.json(),
      ]);
      await waitFor(() => mw.proxy.inFlight === 1, 2000, 'a request in flight');
      const closing = mw.close();
      expect((await fetch(`${base}/app/env`)).status).toBe(503);
      expect(await slow).toEqual([200, { slept: 400 }]);
      await closing;
      for (const pid of pids) expect(alive(pid)).toBe(false);
      expect(existsSync(dir)).toBe(false);
      expect(tmp.workerDirs()).toEqual([]);
    } finally {
      await mw.close();
      server?.closeAllConnections();
      server?.close();
    }
  });
});

describe('no orphan worker on any exit path of the Node process', () => {
  const children = new Set<NodeChild>();
  afterEach(() => {
    for (const c of children) if (c.child.exitCode === null) c.child.kill('SIGKILL');
    children.clear();
  });

  const core = writeScript(
    scripts,
    'core-child.mjs',
    `import { ScgiProxy } from 'scgi-core';
const [mode, nodeApp] = process.argv.slice(2);
const proxy = new ScgiProxy({
  spawn: { command: process.execPath, args: [nodeApp, 'unix:{socket}'], instances: 2 },
});
await proxy.ready();
// The test looks at the workers first, then sends SIGUSR2 (or the signal under test).
process.once('SIGUSR2', () => {
  if (mode === 'close') void proxy.close();
  else if (mode === 'throw') setTimeout(() => { throw new Error('uncaught in the child'); });
  else if (mode === 'exit') process.exit(0);
});
console.log(JSON.stringify({ pids: proxy.workerPids(), dir: proxy.options.spawn.dir }));
`,
  );

  const paths: Array<{
    how: string;
    mode: string;
    signal?: NodeJS.Signals;
    exit: { code: number | null; signal: NodeJS.Signals | null };
  }> = [
    { how: 'close()', mode: 'close', exit: { code: 0, signal: null } },
    { how: 'SIGINT', mode: 'wait', signal: 'SIGINT', exit: { code: null, signal: 'SIGINT' } },
    { how: 'SIGTERM', mode: 'wait', signal: 'SIGTERM', exit: { code: null, signal: 'SIGTERM' } },
    { how: 'SIGHUP', mode: 'wait', signal: 'SIGHUP', exit: { code: null, signal: 'SIGHUP' } },
    { how: 'an uncaught exception', mode: 'throw', exit: { code: 1, signal: null } },
    { how: 'process.exit(0)', mode: 'exit', exit: { code: 0, signal: null } },
  ];

  it.each(paths)('$how', async ({ mode, signal, exit }) => {
    const run = runNode(core, [mode, NODE_APP]);
    children.add(run);
    const { pids, dir } = await run.json<{ pids: number[]; dir: string }>();
    expect(pids).toHaveLength(2);
    for (const pid of pids) expect(alive(pid)).toBe(true);
    expect(existsSync(dir)).toBe(true);
    run.child.kill(signal ?? 'SIGUSR2');
    const exited = await Promise.race([
      run.exited,
      waitFor(() => false, 5000, 'the child to exit').catch(() => null),
    ]);
    expect(exited, run.lines.join('\n')).toEqual(exit);
    await waitGone(pids, 3000);
    expect(existsSync(dir)).toBe(false);
    expect(tmp.workerDirs()).toEqual([]);
  });

  it("an app's own SIGTERM handler still gets a graceful close (regression: workers were SIGKILLed first)", async () => {
    const script = writeScript(
      scripts,
      'fastify-child.mjs',
      `import Fastify from 'fastify';
import fastifyScgi from 'fastify-scgi';
const app = Fastify();
await app.register(fastifyScgi, {
  prefix: '/app',
  spawn: { command: process.execPath, args: [process.argv[2], 'unix:{socket}'], instances: 2 },
  closeGrace: 5000,
});
await app.listen({ port: 0, host: '127.0.0.1' });
process.once('SIGTERM', async () => {
  await app.close();
  console.log('closed');
  process.exit(0);
});
const { pids, dir } = { pids: app.scgiProxy.workerPids(), dir: app.scgiProxy.options.spawn.dir };
console.log(JSON.stringify({ port: app.server.address().port, pids, dir }));
`,
    );
    const run = runNode(script, [NODE_APP]);
    children.add(run);
    const { port, pids, dir } = await run.json<{ port: number; pids: number[]; dir: string }>();
    const slow = fetch(`http://127.0.0.1:${port}/app/slow?delay=0.6`).then(async (r) => [
      r.status,
      await r.text(),
    ]);
    await new Promise((r) => setTimeout(r, 250));
    run.child.kill('SIGTERM');
    expect(await slow).toEqual([200, JSON.stringify({ slept: 600 })]);
    expect(await run.exited, run.lines.join('\n')).toEqual({ code: 0, signal: null });
    expect(run.lines).toContain('closed');
    await waitGone(pids, 3000);
    expect(existsSync(dir)).toBe(false);
  });
});
