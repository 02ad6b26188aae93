/**
 * Helpers for the upstream-pool tests: Node SCGI backends that say who they are and can be
 * stopped and restarted on the same address, an HTTP client that reports a cut connection, the
 * resource counts the leak checks compare, and per-test fixtures that are undone after each test.
 */
import { Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo, Server, Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import {
  createScgiServer,
  type ScgiHandler,
  type ScgiServerRequest,
  type ScgiServerResponse,
} from 'scgi-core';
import { afterEach } from 'vitest';
import { handler as appHandler } from '../../examples/node-app.mjs';
import { type Front, startFastifyFront } from './fronts.js';
import { countOpenFds } from './http.js';
import { makeTempDir } from './tmp.js';

/** A handler that may answer itself, or call `next()` to let the example app answer. */
export type Hook = (req: ScgiServerRequest, res: ScgiServerResponse, next: () => void) => void;

/** A Node SCGI backend running examples/node-app.mjs, tagging each answer with `X-Backend`. */
export interface NodeBackend {
  readonly name: string;
  /** `unix:/path` or `127.0.0.1:port` (stays the same across restarts). */
  readonly address: string;
  /** Requests whose SCGI head arrived. */
  hits: number;
  /** Requests being handled now, and the most at once. */
  active: number;
  maxActive: number;
  /** Replaces the request hook (undefined: the example app answers everything). */
  hook: Hook | undefined;
  readonly sockets: Set<Socket>;
  running(): boolean;
  /** Stops listening and destroys every open connection (a crash, as far as peers can tell). */
  kill(): Promise<void>;
  /** Listens again on the same address. */
  restart(): Promise<void>;
}

/** Starts a Node backend on a Unix socket in a private temp dir, or on 127.0.0.1 port 0. */
export async function startNodeBackend(
  name: string,
  socket: 'unix' | 'tcp' = 'unix',
  hook?: Hook,
): Promise<NodeBackend> {
  let server: Server | null = null;
  let port = 0;
  const path = socket === 'unix' ? join(makeTempDir('scgi-pl-'), 'b.sock') : null;
  const backend: NodeBackend = {
    name,
    address: '',
    hits: 0,
    active: 0,
    maxActive: 0,
    hook,
    sockets: new Set(),
    running: () => server !== null,
    kill: async () => {
      const s = server;
      if (s === null) return;
      server = null;
      const closed = new Promise<void>((r) => s.close(() => r()));
      for (const c of backend.sockets) c.destroy();
      await closed;
    },
    restart: async () => {
      if (server !== null) return;
      server = await listen();
    },
  };
  const onRequest: ScgiHandler = (req, res) => {
    backend.hits++;
    backend.active++;
    backend.maxActive = Math.max(backend.maxActive, backend.active);
    let done = false;
    const finish = () => {
      if (!done) {
        done = true;
        backend.active--;
      }
    };
    res.once('finish', finish);
    res.once('close', finish);
    req.socket.once('close', finish);
    res.setHeader('X-Backend', name);
    const next = () => appHandler(req, res);
    if (backend.hook === undefined) next();
    else backend.hook(req, res, next);
  };
  const listen = () =>
    new Promise<Server>((resolve, reject) => {
      const s = createScgiServer(onRequest);
      s.on('connection', (c: Socket) => {
        backend.sockets.add(c);
        c.once('close', () => backend.sockets.delete(c));
      });
      s.once('error', reject);
      const ready = () => {
        s.removeListener('error', reject);
        resolve(s);
      };
      if (path !== null) s.listen(path, ready);
      else s.listen(port, '127.0.0.1', ready);
    });
  server = await listen();
  if (path === null) port = (server.address() as AddressInfo).port;
  (backend as { address: string }).address = path === null ? `127.0.0.1:${port}` : `unix:${path}`;
  return backend;
}

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** The connection failed or was cut before the response was complete. */
  cut: boolean;
  /** Socket error code, e.g. ECONNREFUSED or ECONNRESET. */
  error?: string;
  ms: number;
}

export interface SendOptions {
  method?: string;
  headers?: Record<string, string>;
  /** A body sent with Content-Length. */
  body?: Buffer;
  /** A body sent chunked (no Content-Length), in pieces of this many bytes. */
  chunked?: Buffer;
  agent?: Agent | false;
  timeoutMs?: number;
}

/** One HTTP request; never rejects: failures are `cut: true` with `error`. */
export function send(url: string, opts: SendOptions = {}): Promise<Reply> {
  const started = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    const settle = (r: Omit<Reply, 'ms'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...r, ms: performance.now() - started });
    };
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.body !== undefined) headers['content-length'] = String(opts.body.length);
    const req = httpRequest(
      url,
      { method: opts.method ?? 'GET', headers, agent: opts.agent ?? false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          settle({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
            cut: false,
          }),
        );
        res.on('error', (err: NodeJS.ErrnoException) =>
          settle({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
            cut: true,
            error: err.code ?? err.message,
          }),
        );
      },
    );
    const timer = setTimeout(
      () => req.destroy(new Error('client timeout')),
      opts.timeoutMs ?? 15_000,
    );
    req.on('error', (err: NodeJS.ErrnoException) =>
      settle({
        status: 0,
        headers: {},
        body: Buffer.alloc(0),
        cut: true,
        error: err.code ?? err.message,
      }),
    );
    if (opts.chunked !== undefined) {
      const data = opts.chunked;
      for (let i = 0; i < data.length; i += 1024) req.write(data.subarray(i, i + 1024));
      req.end();
    } else {
      req.end(opts.body);
    }
  });
}

/** Runs `tasks` with at most `concurrency` at once; results in task order. */
export async function runConcurrently<T>(
  count: number,
  concurrency: number,
  task: (i: number) => Promise<T>,
): Promise<T[]> {
  const results: T[] = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      results[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return results;
}

/** The parsed JSON error body Fastify's error handler sends (or undefined). */
export function errorCode(reply: Reply): string | undefined {
  try {
    return (JSON.parse(reply.body.toString()) as { code?: string }).code;
  } catch {
    return undefined;
  }
}

/** Handles, timers and fds this process holds right now. */
export interface ResourceCounts {
  tcp: number;
  pipe: number;
  timeout: number;
  fds: number;
}

export function resourceCounts(): ResourceCounts {
  const info = process.getActiveResourcesInfo();
  const count = (name: string) => info.filter((x) => x === name).length;
  return {
    tcp: count('TCPSocketWrap'),
    pipe: count('PipeWrap'),
    timeout: count('Timeout'),
    fds: countOpenFds(),
  };
}

/** Polls until `probe` holds or `ms` pass; returns its last value. */
export async function eventually<T>(
  probe: () => T,
  ok: (v: T) => boolean,
  ms = 3000,
  step = 20,
): Promise<T> {
  const deadline = Date.now() + ms;
  let v = probe();
  while (!ok(v) && Date.now() < deadline) {
    await delay(step);
    v = probe();
  }
  return v;
}

/** Lets requests started with this agent share connections; `destroy()` it when done. */
export function keepAliveAgent(maxSockets = 50): Agent {
  return new Agent({ keepAlive: true, maxSockets });
}

/** What a test leaves to be undone after it: each is awaited, last first. */
export type Cleanups = Array<() => Promise<unknown> | unknown>;

export interface PoolFixtures {
  /** Emptied after each test, last first; push whatever else a test must undo. */
  readonly cleanups: Cleanups;
  /** `n` Node backends named n0, n1...; killed after the test. */
  nodeBackends(n: number, socket?: 'unix' | 'tcp'): Promise<NodeBackend[]>;
  /** A Fastify front (startFastifyFront); closed after the test. */
  fastify(
    options: Parameters<typeof startFastifyFront>[0],
  ): Promise<Front & { app: FastifyInstance }>;
}

/** Call at a test file's top level: registers the `afterEach` that runs the cleanups. */
export function poolFixtures(): PoolFixtures {
  const cleanups: Cleanups = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  return {
    cleanups,
    async nodeBackends(n, socket = 'unix') {
      const list = await Promise.all(
        Array.from({ length: n }, (_, i) => startNodeBackend(`n${i}`, socket)),
      );
      cleanups.push(() => Promise.all(list.map((b) => b.kill())));
      return list;
    },
    async fastify(options) {
      const front = await startFastifyFront(options);
      cleanups.push(() => front.close());
      return front;
    },
  };
}
