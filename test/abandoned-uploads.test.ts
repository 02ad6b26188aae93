/**
 * Memory comes back after clients abandon their uploads (issue 12 §3). 500 clients that each
 * announce 1 MiB, send part of it and go away (half with a Content-Length, streamed to the
 * backend; half chunked, spooled to a temp file past `spoolMemory`) must leave the front's RSS
 * within a bound of its baseline, with no descriptor, exchange or spool file left behind.
 *
 * The front runs in a child process started with `--expose-gc`, so its RSS is its own (the
 * backend and the clients live in this process) and the GC can be forced before each reading:
 * what is measured is memory still held, not garbage not yet collected. It imports the built
 * packages (`npm test` builds first).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createScgiServer, type ScgiServer } from 'scgi-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir, removeTempDir } from './helpers/tmp.js';
import { scriptDir, writeScript } from './helpers/workers.js';

const KiB = 1024;
const MiB = 1024 * KiB;
/** RSS may stay this much above the baseline once every upload is gone. */
/**
 * What the process holds (JS heap plus ArrayBuffers) is the leak signal: a leak of 16 KiB per
 * abandoned upload adds 8 MiB there with every batch of 500, while a high-water mark does not
 * grow from one batch to the next. RSS also moves with the allocator's and V8's high-water
 * marks on a busy machine (seen: +11 MiB with the heap and ArrayBuffers lower than before), so its
 * bound is looser; the same 16 KiB leak raised RSS by 36-39 MiB.
 */
const HELD_BOUND = 4 * MiB;
const RSS_BOUND = 24 * MiB;

/** The front: fastify-scgi or express-scgi (built packages, as a user runs them). */
const FRONT = `
import { readdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
const [kind, upstream, tmpDir] = process.argv.slice(2);
const options = { upstream, tmpDir, spoolMemory: 64 * 1024, idleTimeout: 5000 };
let proxy;
let httpServer;
let port;
if (kind === 'fastify') {
  const { default: Fastify } = await import('fastify');
  const { default: fastifyScgi } = await import('fastify-scgi');
  const app = Fastify({ logger: false });
  await app.register(fastifyScgi, { ...options, prefix: '/app' });
  await app.listen({ port: 0, host: '127.0.0.1' });
  proxy = app.scgiProxy;
  httpServer = app.server;
  port = app.server.address().port;
} else {
  const { default: express } = await import('express');
  const { scgiProxy } = await import('express-scgi');
  const app = express();
  const mw = scgiProxy({ ...options, respondOnError: true });
  app.use('/app', mw);
  proxy = mw.proxy;
  const server = await new Promise((r) => { const s = app.listen(0, '127.0.0.1', () => r(s)); });
  httpServer = server;
  port = server.address().port;
}
const settle = () => new Promise((r) => setTimeout(r, 50));
createInterface({ input: process.stdin }).on('line', async () => {
  // Several passes: a full GC can free what the next one then returns to the allocator.
  for (let i = 0; i < 4; i++) {
    globalThis.gc();
    await settle();
  }
  const m = process.memoryUsage();
  process.stdout.write(JSON.stringify({
    rss: m.rss,
    external: m.external,
    arrayBuffers: m.arrayBuffers,
    heapUsed: m.heapUsed,
    inFlight: proxy.inFlight,
    connections: await new Promise((r) => httpServer.getConnections((e, n) => r(e ? -1 : n))),
    fds: readdirSync('/proc/self/fd').length,
  }) + '\\n');
});
process.stdout.write(JSON.stringify({ port }) + '\\n');
`;

interface Reading {
  rss: number;
  external: number;
  arrayBuffers: number;
  heapUsed: number;
  inFlight: number;
  connections: number;
  fds: number;
}

/** A child front driven over stdin/stdout: each line in asks for one reading. */
class FrontProcess {
  readonly child: ChildProcess;
  readonly #lines: string[] = [];
  #waiters: Array<() => void> = [];

  constructor(script: string, args: string[]) {
    this.child = spawn(process.execPath, ['--expose-gc', script, ...args], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    createInterface({ input: this.child.stdout! }).on('line', (l) => {
      this.#lines.push(l);
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  async next<T>(): Promise<T> {
    const deadline = Date.now() + 10_000;
    while (this.#lines.length === 0) {
      if (this.child.exitCode !== null) throw new Error('the front exited');
      if (Date.now() > deadline) throw new Error('no answer from the front');
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        setTimeout(r, 100);
      });
    }
    return JSON.parse(this.#lines.shift()!) as T;
  }

  async reading(): Promise<Reading> {
    this.child.stdin!.write('measure\n');
    return this.next<Reading>();
  }

  /**
   * Readings until the front has no exchange in flight and, when `fds` is given, holds that many
   * descriptors again (bounded: a socket or spool file closes a turn of the event loop after
   * its exchange ends, so one reading may still count it; a leaked one stays past the bound).
   */
  async idle(fds?: number): Promise<Reading> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const r = await this.reading();
      const settled =
        r.inFlight === 0 && r.connections === 0 && (fds === undefined || r.fds === fds);
      if (settled || Date.now() > deadline) return r;
    }
  }
}

/** One client: announces 1 MiB, sends `sent` bytes of it, and goes away once they are out. */
function abandon(port: number, chunked: boolean, sent: number): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    socket.on('close', () => resolve());
    const head = chunked
      ? `POST /app/sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${MiB.toString(16)}\r\n`
      : `POST /app/sink HTTP/1.1\r\nHost: x\r\nContent-Length: ${MiB}\r\n\r\n`;
    socket.write(Buffer.concat([Buffer.from(head), Buffer.alloc(sent, 0x61)]), () =>
      socket.destroy(),
    );
  });
}

async function abandonMany(port: number, count: number): Promise<void> {
  const concurrency = 25;
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      await abandon(port, i % 2 === 1, 256 * KiB + (i % 7) * 64 * KiB);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

let dir: string;
let backend: ScgiServer;
let scripts: string;

beforeAll(async () => {
  dir = makeTempDir('scgi-rss-');
  // Reads every body to its end, then answers.
  backend = createScgiServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('sunk\n'));
  });
  await new Promise<void>((r) => backend.listen(join(dir, 'b.sock'), r));
  scripts = scriptDir();
  writeScript(scripts, 'front.mjs', FRONT);
});
afterAll(async () => {
  await new Promise<void>((r) => backend.close(() => r()));
  removeTempDir(dir);
  removeTempDir(scripts);
});

describe.each(['fastify', 'express'])('%s', (kind) => {
  it('500 abandoned 1 MiB uploads: RSS returns near its baseline, no fd, exchange or spool file left', async () => {
    const spoolDir = makeTempDir('scgi-rss-spool-');
    const front = new FrontProcess(join(scripts, 'front.mjs'), [
      kind,
      `unix:${join(dir, 'b.sock')}`,
      spoolDir,
    ]);
    try {
      const { port } = await front.next<{ port: number }>();
      // Warm up with as many: code compiled, and V8's young generation and the allocator at the
      // size this load takes. The first 500 raise RSS by 13-25 MiB once, as much as for a bare
      // Node server that drops the bodies (its young generation grows to the largest semi-space
      // under allocation pressure, and freed malloc chunks are kept): a high-water mark, not a
      // leak. What must hold is that more of the same does not raise it further.
      await abandonMany(port, 500);
      const base = await front.idle();
      expect(base.inFlight).toBe(0);

      // Two more batches: a leak grows with every batch, a high-water mark does not.
      await abandonMany(port, 500);
      const mid = await front.idle();
      await abandonMany(port, 500);
      const after = await front.idle(base.fds);
      const grew = after.rss - base.rss;
      const mib = (n: number) => (n / MiB).toFixed(1);
      const heldOf = (m: { heapUsed: number; arrayBuffers: number }) => m.heapUsed + m.arrayBuffers;
      const seen =
        `RSS ${mib(base.rss)} -> ${mib(mid.rss)} -> ${mib(after.rss)} MiB, heap + ArrayBuffers ` +
        `${mib(heldOf(base))} -> ${mib(heldOf(mid))} -> ${mib(heldOf(after))} MiB`;
      expect(after.inFlight).toBe(0);
      expect(after.fds).toBe(base.fds);
      expect(readdirSync(spoolDir)).toEqual([]);
      expect(after.connections).toBe(0);
      // A leak grows with every batch; a bounded cache that fills once (the 256 closed sockets
      // upstream/connect.ts keeps for reuse) or a late GC moves only one of the two steps.
      const steps = [heldOf(mid) - heldOf(base), heldOf(after) - heldOf(mid)];
      expect(Math.min(...steps), seen).toBeLessThan(HELD_BOUND);
      expect(grew, seen).toBeLessThan(RSS_BOUND);
    } finally {
      front.child.kill();
      removeTempDir(spoolDir);
    }
  });
});
