/**
 * The request corpus harness: the real backends the corpus runs against (uWSGI's two replaced
 * by scgi_server.py over TCP where uWSGI is not installed), the fronts
 * (Fastify 5, Express 5, Express 4) in front of each, and exact-bytes request/response helpers.
 *
 * Both apps (examples/python/app.py under uWSGI or scgi_server.py, examples/node-app.mjs under
 * scgi-core's Node SCGI server) serve the same routes; where their answers differ on purpose
 * (texts, cookie values, /crash lengths) `APP_ROUTES` holds each one's exact answer.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { STATUS_CODES } from 'node:http';
import type { Server, Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { createFastcgiServer } from 'scgi-core';
import { afterAll, beforeAll } from 'vitest';
import { handler as nodeAppHandler, startNodeApp } from '../../examples/node-app.mjs';
import { startPythonBackend, startUwsgi } from './backends.js';
import { has, installed } from './binaries.js';
import { startPythonFastcgi, startUwsgiFastcgi } from './fastcgi-backends.js';
import { type Front, type FrontKind, startFront } from './fronts.js';
import { countOpenFds, headerValues, type RawResponse, rawRequest } from './http.js';
import { makeTempDir, removeTempDir } from './tmp.js';

export type AppKind = 'python' | 'node';

export interface BackendSpec {
  readonly name: string;
  readonly server: 'uwsgi' | 'python' | 'node';
  readonly socket: 'tcp' | 'unix';
  /** Which app answers: app.py (uWSGI, scgi_server.py) or node-app.mjs. */
  readonly app: AppKind;
  /** The wire protocol: FastCGI backends get a `fastcgi://` address. @default 'scgi' */
  readonly protocol?: 'scgi' | 'fastcgi';
}

const UWSGI_BACKENDS: readonly BackendSpec[] = [
  { name: 'uWSGI over TCP', server: 'uwsgi', socket: 'tcp', app: 'python' },
  { name: 'uWSGI over a Unix socket', server: 'uwsgi', socket: 'unix', app: 'python' },
];

/**
 * uWSGI's place when it is not installed (a contributor's first `npm test`): app.py under
 * scgi_server.py over TCP, so the corpus still crosses both transports with backends that need
 * only python3 and Node. (The Node server over TCP resets on a crash where the others close with
 * a FIN; corpus-faults.test.ts covers it in a suite of its own.)
 */
const STAND_INS: readonly BackendSpec[] = [
  { name: 'scgi_server.py over TCP', server: 'python', socket: 'tcp', app: 'python' },
];

/**
 * The backends of the corpus: uWSGI over TCP and a Unix socket where it is installed (a missing
 * uWSGI fails under CI=true, see test/helpers/binaries.ts), else the stand-in; then
 * scgi_server.py and the Node SCGI server over Unix sockets.
 */
export const BACKENDS: readonly BackendSpec[] = [
  ...(installed('uwsgi') ? UWSGI_BACKENDS : STAND_INS),
  { name: 'scgi_server.py over a Unix socket', server: 'python', socket: 'unix', app: 'python' },
  { name: 'Node SCGI server over a Unix socket', server: 'node', socket: 'unix', app: 'node' },
];

/**
 * The same apps over FastCGI (kept connections): examples/python/fastcgi_server.py, uWSGI's
 * `--fastcgi-socket` (it closes after every request), and node-app.mjs's handler under
 * scgi-core's `createFastcgiServer`.
 */
export const FASTCGI_BACKENDS: readonly BackendSpec[] = [
  {
    name: 'fastcgi_server.py over a Unix socket',
    server: 'python',
    socket: 'unix',
    app: 'python',
    protocol: 'fastcgi',
  },
  {
    name: 'uWSGI FastCGI over TCP',
    server: 'uwsgi',
    socket: 'tcp',
    app: 'python',
    protocol: 'fastcgi',
  },
  {
    name: 'Node FastCGI server over a Unix socket',
    server: 'node',
    socket: 'unix',
    app: 'node',
    protocol: 'fastcgi',
  },
];

/**
 * Whether the backend can run here: a missing binary fails under CI=true and skips (with a
 * note naming the Debian package) elsewhere, via test/helpers/binaries.ts.
 */
export function available(spec: BackendSpec): boolean {
  if (spec.server === 'uwsgi') return has('uwsgi');
  if (spec.server === 'python') return has('python3');
  return true;
}

/** Express 4 runs against the Node backend only (the brief's subset), Fastify and Express 5 everywhere. */
export function frontsFor(spec: BackendSpec): FrontKind[] {
  return spec.server === 'node' ? ['fastify', 'express', 'express4'] : ['fastify', 'express'];
}

export interface RunningBackend {
  readonly spec: BackendSpec;
  readonly address: string;
  /** The backend's own process (scgi_server.py or the uWSGI master); this process for Node. */
  readonly pid: number;
  /** The Node SCGI server, when the backend is the Node app (runs in this process). */
  readonly nodeServer: Server | null;
  stop(): Promise<void>;
}

export async function startBackend(spec: BackendSpec): Promise<RunningBackend> {
  if (spec.protocol === 'fastcgi' && spec.server !== 'node') {
    const b =
      spec.server === 'uwsgi'
        ? await startUwsgiFastcgi({ socket: spec.socket })
        : await startPythonFastcgi({ socket: spec.socket, threads: 32 });
    return {
      spec,
      address: `fastcgi://${b.address}`,
      pid: b.pid,
      nodeServer: null,
      stop: b.stop,
    };
  }
  if (spec.server === 'uwsgi') {
    const b = await startUwsgi({ socket: spec.socket, processes: 2, threads: 8 });
    return { spec, address: b.address, pid: b.pid, nodeServer: null, stop: b.stop };
  }
  if (spec.server === 'python') {
    const b = await startPythonBackend({ socket: spec.socket, threads: 32 });
    return { spec, address: b.address, pid: b.pid, nodeServer: null, stop: b.stop };
  }
  const dir = makeTempDir('scgi-na-');
  let address: string;
  let server: Server;
  if (spec.protocol === 'fastcgi') {
    const path = join(dir, 'app.sock');
    server = createFastcgiServer(nodeAppHandler);
    await new Promise<void>((resolve) => server.listen(path, resolve));
    address = `fastcgi://unix:${path}`;
  } else if (spec.socket === 'unix') {
    address = `unix:${join(dir, 'app.sock')}`;
    server = await startNodeApp(address);
  } else {
    server = await startNodeApp('127.0.0.1:0');
    const info = server.address() as { port: number };
    address = `127.0.0.1:${info.port}`;
  }
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  return {
    spec,
    address,
    pid: process.pid,
    nodeServer: server,
    stop: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // A test that failed may have left a connection open: close() would wait for it forever.
      for (const socket of sockets) socket.destroy();
      await closed;
      removeTempDir(dir);
    },
  };
}

/**
 * Registers beforeAll/afterAll for one backend and returns a handle whose `current` is the
 * running backend inside tests.
 */
export function useBackend(spec: BackendSpec): { current: RunningBackend } {
  const handle = {} as { current: RunningBackend };
  beforeAll(async () => {
    handle.current = await startBackend(spec);
  });
  afterAll(async () => {
    await handle.current?.stop();
  });
  return handle;
}

export interface FrontOptions {
  prefix?: string;
  extra?: Record<string, unknown>;
}

export interface RunningFront extends Front {
  readonly kind: FrontKind;
  readonly port: number;
  readonly prefix: string;
  /** The private spool dir (option tmpDir) of this front. */
  readonly tmpDir: string;
}

/**
 * Registers beforeAll/afterAll for one front in front of `backend`. Express fronts answer
 * failures themselves (`respondOnError`) so the error code is visible; the default `next(err)`
 * path is covered in corpus-faults.
 */
export function useFront(
  kind: FrontKind,
  backend: { current: RunningBackend },
  options: FrontOptions = {},
): { current: RunningFront } {
  const handle = {} as { current: RunningFront };
  beforeAll(async () => {
    const tmpDir = makeTempDir('scgi-sp-');
    const prefix = options.prefix ?? '/app';
    const extra = {
      tmpDir,
      ...(kind === 'fastify' ? {} : { respondOnError: true }),
      ...options.extra,
    };
    const front = await startFront(kind, backend.current.address, prefix, extra);
    const port = Number(new URL(front.url).port);
    handle.current = { ...front, kind, port, prefix, tmpDir };
  });
  afterAll(async () => {
    await handle.current?.close();
    if (handle.current) removeTempDir(handle.current.tmpDir);
  });
  return handle;
}

// ---- requests ---------------------------------------------------------------------------------

export interface Req {
  method?: string;
  /** The request-target, sent byte for byte (a string is latin-1: use `utf8Target` for UTF-8). */
  target: string;
  /** Extra header lines, in order, names as written. */
  headers?: [string, string][];
  body?: Buffer | string;
  /** Send the body with Transfer-Encoding: chunked, in 64 KiB chunks. */
  chunked?: boolean;
  /** No `Connection: close` (e.g. when the test sends its own Connection header). */
  keepAlive?: boolean;
}

/** A request-target given as text, with its non-ASCII characters sent as raw UTF-8 bytes. */
export function utf8Target(text: string): string {
  return Buffer.from(text, 'utf8').toString('latin1');
}

const CHUNK = 64 * 1024;

/** Transfer-Encoding: chunked framing of `body`. */
export function chunkedBody(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; at < body.length; at += CHUNK) {
    const piece = body.subarray(at, at + CHUNK);
    parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from('0\r\n\r\n'));
  return Buffer.concat(parts);
}

/** The request's bytes: request line, Host, the given headers, framing, body. */
export function requestBytes(front: { port: number }, r: Req): Buffer {
  const body = typeof r.body === 'string' ? Buffer.from(r.body) : r.body;
  let head = `${r.method ?? 'GET'} ${r.target} HTTP/1.1\r\nHost: 127.0.0.1:${front.port}\r\n`;
  for (const [name, value] of r.headers ?? []) head += `${name}: ${value}\r\n`;
  if (!r.keepAlive) head += 'Connection: close\r\n';
  if (body !== undefined && r.chunked) head += 'Transfer-Encoding: chunked\r\n';
  else if (body !== undefined) head += `Content-Length: ${body.length}\r\n`;
  const start = Buffer.from(`${head}\r\n`, 'latin1');
  if (body === undefined) return start;
  return Buffer.concat([start, r.chunked ? chunkedBody(body) : body]);
}

export function send(
  front: { url: string; port: number },
  r: Req,
  timeoutMs = 20_000,
): Promise<RawResponse> {
  return rawRequest(front.url, requestBytes(front, r), { timeoutMs });
}

/** Headers the fronts add on their own (per connection or per server), left out of `fields`. */
const FRONT_OWN = new Set(['date', 'connection', 'keep-alive', 'x-powered-by']);

/** The response header fields, names lower-cased, in order, without the fronts' own. */
export function fields(res: RawResponse): [string, string][] {
  return res.headers
    .map(([n, v]): [string, string] => [n.toLowerCase(), v])
    .filter(([n]) => !FRONT_OWN.has(n));
}

/** GET (or `method`) on /env: the backend's view of the CGI environment. */
export async function envOf(
  front: { url: string; port: number },
  r: Req,
): Promise<Record<string, string>> {
  const res = await send(front, r);
  if (res.statusCode !== 200 || res.closedEarly) {
    throw new Error(`env request failed: ${res.statusCode} ${res.body.toString()}`);
  }
  const [type] = headerValues(res, 'content-type');
  if (type !== 'application/json') throw new Error(`env is not JSON but ${type}`);
  return JSON.parse(res.body.toString('utf8'));
}

/** The exact JSON body of an error answered before the response head (status, code, message). */
export function errorBody(kind: FrontKind, status: number, code: string, message: string) {
  // Fastify's default error handler adds the reason phrase as `error`; express-scgi's
  // respondOnError leaves it out.
  return kind === 'fastify'
    ? { statusCode: status, code, error: STATUS_CODES[status], message }
    : { statusCode: status, code, message };
}

export function expectedErrorFields(body: string): [string, string][] {
  return [
    ['content-type', 'application/json; charset=utf-8'],
    ['content-length', String(Buffer.byteLength(body))],
  ];
}

// ---- bytes ------------------------------------------------------------------------------------

export const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** What /stream sends: byte i is i & 255 (app.py's PATTERN, node-app.mjs's patternBytes). */
export function pattern(length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) out[i] = i & 255;
  return out;
}

// ---- leaks ------------------------------------------------------------------------------------

/** Polls `probe` every 25 ms until it is true or `ms` passed; returns the last result. */
export async function eventually(probe: () => boolean | Promise<boolean>, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await probe()) return true;
    if (Date.now() > deadline) return false;
    await delay(25);
  }
}

/** Open fds of `pid` and of its direct children (uWSGI's workers), from /proc. */
export function treeFds(pid: number): number {
  let total = countOpenFds(pid);
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    for (const child of children.split(/\s+/).filter(Boolean)) {
      try {
        total += countOpenFds(Number(child));
      } catch {
        // the child exited meanwhile
      }
    }
  } catch {
    // no /proc children file: the pid alone
  }
  return total;
}

/** Number of connections the Node SCGI server holds open. */
export function nodeConnections(server: Server): Promise<number> {
  return new Promise((resolve, reject) =>
    server.getConnections((err, n) => (err ? reject(err) : resolve(n))),
  );
}

export function dirEntries(dir: string): string[] {
  return readdirSync(dir);
}
