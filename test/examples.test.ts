/**
 * Runs every example in examples/ the way a user does (`node examples/X.mjs`, PORT=0), makes
 * real requests to it, then stops it with a signal: it must exit 0 within 5 s, remove its temp
 * dir and leave no backend process behind. The examples load the built packages (`npx tsc -b`).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { canConnect, getFreePort } from './helpers/backends.js';
import { countOpenFds } from './helpers/http.js';
import { makeTempDir, removeTempDir } from './helpers/tmp.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const READY_MS = 15_000;
const EXIT_MS = 5_000;

interface Running {
  child: ChildProcess;
  /** stdout and stderr lines so far, for the failure message. */
  output: string[];
  /** The URLs on the ready line, in order. */
  urls: string[];
  /** The temp dir the example printed on its `tmp:` line, if any. */
  tmp?: string;
  /** The first stdout line starting with `prefix`, without it. */
  line(prefix: string): string | undefined;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running = new Set<Running>();
/** Backend processes started by an example (demo.mjs's Python server), to clean up after a failure. */
const strays = new Set<number>();

afterEach(() => {
  for (const run of running) if (run.child.exitCode === null) run.child.kill('SIGKILL');
  running.clear();
  for (const pid of strays) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  strays.clear();
});

beforeAll(() => {
  for (const pkg of ['scgi-core', 'fastify-plugin', 'express-mw']) {
    const dist = join(root, 'packages', pkg, 'dist', 'index.js');
    if (!existsSync(dist)) throw new Error(`${dist} is missing: build first (npx tsc -b)`);
  }
});

/** Starts `node examples/<file>` with PORT=0 and resolves once it printed its ready line. */
function start(file: string, env: Record<string, string> = {}): Promise<Running> {
  const child = spawn(process.execPath, [join(root, 'examples', file)], {
    cwd: root,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const stdout: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const run: Running = {
    child,
    output,
    urls: [],
    line: (prefix) =>
      stdout
        .find((l) => l.startsWith(prefix))
        ?.slice(prefix.length)
        .trim(),
    exited,
  };
  running.add(run);
  createInterface({ input: child.stderr! }).on('line', (l) => output.push(l));
  return new Promise((resolve, reject) => {
    const fail = (why: string) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${file}: ${why}\n${output.join('\n')}`));
    };
    const timer = setTimeout(() => fail(`no ready line within ${READY_MS} ms`), READY_MS);
    const early = (code: number | null) => fail(`exited (code ${code}) before it was ready`);
    child.once('exit', early);
    createInterface({ input: child.stdout! }).on('line', (l) => {
      output.push(l);
      stdout.push(l);
      if (!/^(?:demo )?ready: /.test(l) || run.urls.length > 0) return;
      clearTimeout(timer);
      child.removeListener('exit', early);
      run.urls = l.match(/https?:\/\/\S+/g) ?? [];
      run.tmp = run.line('tmp:');
      resolve(run);
    });
  });
}

/** Sends `signal` and checks the example exits 0 within 5 s, its temp dir removed. */
async function stop(run: Running, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  run.child.kill(signal);
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([
    run.exited,
    new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), EXIT_MS);
    }),
  ]);
  clearTimeout(timer);
  expect(result, run.output.join('\n')).toEqual({ code: 0, signal: null });
  if (run.tmp !== undefined) expect(existsSync(run.tmp), `${run.tmp} left behind`).toBe(false);
}

async function getJson(url: string, init?: RequestInit) {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, type: res.headers.get('content-type'), body: JSON.parse(text) };
}

const postJson = (url: string, value: unknown, headers: Record<string, string> = {}) =>
  getJson(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(value),
  });

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** Pids whose command line holds every one of `parts` (Linux /proc). */
function pidsWith(...parts: string[]): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'latin1').replaceAll('\0', ' ');
    } catch {
      continue; // exited meanwhile
    }
    if (parts.every((p) => cmdline.includes(p))) pids.push(Number(entry));
  }
  return pids;
}

/**
 * A client that sends its request head one byte every 100 ms and never finishes it: resolves
 * with what the server answered and when it closed (ms after the first byte). Gives up at `maxMs`.
 */
function trickle(origin: string, maxMs: number): Promise<{ ms: number; answer: string }> {
  const { hostname, port } = new URL(origin);
  const head = 'GET /app/env HTTP/1.1\r\nHost: x\r\nX-Slow: ';
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), hostname);
    const started = Date.now();
    let sent = 0;
    let answer = '';
    const tick = setInterval(() => {
      if (!socket.destroyed) socket.write(sent < head.length ? head[sent++]! : 'a');
    }, 100);
    const giveUp = setTimeout(() => socket.destroy(), maxMs);
    socket.on('data', (c: Buffer) => {
      answer += c.toString('latin1');
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearInterval(tick);
      clearTimeout(giveUp);
      resolve({ ms: Date.now() - started, answer });
    });
  });
}

/**
 * The example's server cuts a trickling client within HEADERS_TIMEOUT plus its check interval
 * (HEADERS_TIMEOUT / 5 here), and the connection's descriptor goes with it.
 */
async function expectSlowHeadCut(run: Running, headersTimeout: number): Promise<void> {
  const pid = run.child.pid!;
  const origin = new URL(run.urls[0]!).origin;
  expect((await fetch(`${origin}/app/env`)).status).toBe(200);
  const before = countOpenFds(pid);
  const { ms, answer } = await trickle(origin, headersTimeout * 5);
  expect(answer).toMatch(/^HTTP\/1\.1 408 /);
  expect(ms).toBeGreaterThanOrEqual(headersTimeout - 100);
  expect(ms).toBeLessThanOrEqual(headersTimeout * 1.2 + 1000);
  const deadline = Date.now() + 3000;
  while (countOpenFds(pid) > before && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 25));
  }
  expect(countOpenFds(pid)).toBeLessThanOrEqual(before);
}

describe('examples/express.mjs', () => {
  it('cuts a client that trickles its request head within HEADERS_TIMEOUT and a check interval', async () => {
    const run = await start('express.mjs', { HEADERS_TIMEOUT: '1500' });
    await expectSlowHeadCut(run, 1500);
    await stop(run);
  });

  it('proxies /app with SCRIPT_NAME=/app while express.json() serves /api', async () => {
    const run = await start('express.mjs');
    expect(run.tmp).toMatch(/scgi-express-/);
    const [url] = run.urls;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:[1-9]\d*\/app\/$/);
    const origin = new URL(url!).origin;

    const env = await getJson(`${origin}/app/env?x=1`);
    expect(env.status).toBe(200);
    expect(env.body).toMatchObject({ SCRIPT_NAME: '/app', PATH_INFO: '/env', QUERY_STRING: 'x=1' });

    const page = await fetch(url!);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('SCRIPT_NAME=/app');

    // The native route gets a parsed body; the proxied one gets the exact bytes.
    expect(await postJson(`${origin}/api/echo`, { a: 1 })).toMatchObject({
      status: 200,
      body: { received: { a: 1 } },
    });
    const raw = '{ "a" :  1 }';
    const hashed = await getJson(`${origin}/app/sha256`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: raw,
    });
    expect(hashed.body).toEqual({ length: raw.length, sha256: sha256(raw) });

    await stop(run);
  });

  it('answers a dead UPSTREAM with 502 SCGI_ERR_CONNECT and stops on SIGINT', async () => {
    const dir = makeTempDir('scgi-ex-');
    try {
      const run = await start('express.mjs', { UPSTREAM: `unix:${join(dir, 'missing.sock')}` });
      expect(run.tmp).toBeUndefined(); // UPSTREAM given: no backend, no temp dir of its own
      const res = await getJson(`${new URL(run.urls[0]!).origin}/app/env`);
      expect(res).toEqual({
        status: 502,
        type: expect.stringMatching(/^application\/json/),
        body: { statusCode: 502, code: 'SCGI_ERR_CONNECT' },
      });
      await stop(run, 'SIGINT');
    } finally {
      removeTempDir(dir);
    }
  });
});

describe('examples/tcp-vs-unix.mjs', () => {
  it('serves /unix from a Unix socket and /tcp from 127.0.0.1:<port>', async () => {
    const run = await start('tcp-vs-unix.mjs');
    expect(run.urls).toHaveLength(2);
    const [unixUrl, tcpUrl] = run.urls as [string, string];
    expect(new URL(unixUrl).pathname).toBe('/unix/');
    expect(new URL(tcpUrl).pathname).toBe('/tcp/');

    const backends = run.line('backends:') ?? '';
    const unixPath = /\/unix -> unix:(\S+)/.exec(backends)?.[1];
    expect(unixPath?.startsWith(`${run.tmp}/`), backends).toBe(true);
    expect(statSync(unixPath!).isSocket()).toBe(true);
    expect(backends).toMatch(/\/tcp -> 127\.0\.0\.1:[1-9]\d*/);

    for (const [url, prefix] of [
      [unixUrl, '/unix'],
      [tcpUrl, '/tcp'],
    ] as const) {
      const env = await getJson(`${url}env/a%20b`);
      expect(env.status).toBe(200);
      expect(env.body).toMatchObject({ SCRIPT_NAME: prefix, PATH_INFO: '/env/a b' });
    }

    await stop(run);
  });
});

describe('examples/prefix-mount.mjs', () => {
  it('mounts the app at /legacy/app next to native routes and a reply.scgi() route', async () => {
    const run = await start('prefix-mount.mjs');
    expect(run.tmp).toMatch(/scgi-prefix-/);
    const origin = new URL(run.urls[0]!).origin;
    expect(run.urls.map((u) => new URL(u).pathname)).toEqual([
      '/legacy/app/',
      '/health',
      '/api/items',
      '/admin/env',
    ]);

    const env = await getJson(`${origin}/legacy/app/env`);
    expect(env.body).toMatchObject({ SCRIPT_NAME: '/legacy/app', PATH_INFO: '/env' });
    expect(await (await fetch(`${origin}/legacy/app/`)).text()).toContain(
      'SCRIPT_NAME=/legacy/app',
    );

    // Native routes: JSON out, JSON in with schema validation.
    expect(await getJson(`${origin}/health`)).toMatchObject({
      status: 200,
      body: { status: 'ok' },
    });
    expect(await postJson(`${origin}/api/items`, { name: 'widget' })).toMatchObject({
      status: 201,
      body: { created: 'widget' },
    });
    expect((await postJson(`${origin}/api/items`, {})).status).toBe(400);

    // Under the mount the JSON parser is off: the backend gets the exact bytes.
    const raw = '{"name":  "widget"}';
    const hashed = await getJson(`${origin}/legacy/app/sha256`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: raw,
    });
    expect(hashed.body).toEqual({ length: raw.length, sha256: sha256(raw) });

    // The custom route: no token, no backend; with it, REMOTE_USER set by the route, which a
    // client header cannot override (it only becomes HTTP_REMOTE_USER).
    expect((await getJson(`${origin}/admin/env`)).status).toBe(401);
    const admin = await getJson(`${origin}/admin/env`, {
      headers: { 'x-admin-token': 'secret', 'remote-user': 'mallory' },
    });
    expect(admin.status).toBe(200);
    expect(admin.body).toMatchObject({
      SCRIPT_NAME: '/admin',
      PATH_INFO: '/env',
      REMOTE_USER: 'admin',
      HTTP_REMOTE_USER: 'mallory',
    });

    await stop(run);
  });
});

describe('examples/demo.mjs', () => {
  const havePython = spawnSync('python3', ['--version'], { stdio: 'ignore' }).status === 0;

  async function checkDemo(env: Record<string, string>, expectPython: boolean) {
    const fastcgi = env.PROTOCOL === 'fastcgi';
    const run = await start('demo.mjs', env);
    // The workers' private socket directory, made by fastify-scgi's `spawn`.
    expect(run.tmp).toMatch(/scgi-workers-/);
    const [url] = run.urls;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:[1-9]\d*\/app\/$/);

    // Two supervised workers, each told its own socket in that directory.
    const script = expectPython
      ? fastcgi
        ? 'fastcgi_server.py'
        : 'scgi_server.py'
      : 'node-app.mjs';
    const backends = pidsWith(
      script,
      `${run.tmp}/`,
      ...(fastcgi && !expectPython ? [' fastcgi'] : []),
    );
    expect(backends).toHaveLength(2);
    for (const pid of backends) strays.add(pid);

    const env200 = await getJson(`${url}env`);
    expect(env200.status).toBe(200);
    expect(env200.body).toMatchObject({ SCRIPT_NAME: '/app', PATH_INFO: '/env' });
    const home = await fetch(new URL(url!).origin);
    const text = await home.text();
    expect(text).toContain('href="/app/"');
    expect(text).toContain(fastcgi ? 'the FastCGI app' : 'the SCGI app');
    if (fastcgi) {
      // FastCGI keeps the connection (FCGI_KEEP_CONN): the next request reuses the worker's.
      expect((await getJson(`${url}env`)).status).toBe(200);
    }

    await stop(run);
    for (const pid of backends) {
      expect(existsSync(`/proc/${pid}`), `worker (pid ${pid}) left running`).toBe(false);
      strays.delete(pid);
    }
  }

  it.runIf(havePython)('spawns 2 Python workers and stops them with itself', () =>
    checkDemo({}, true),
  );

  it('falls back to Node SCGI workers without python3', () =>
    checkDemo({ PYTHON: join(root, 'no-such-python3') }, false));

  it.runIf(havePython)('PROTOCOL=fastcgi spawns 2 Python FastCGI workers (fastcgi_server.py)', () =>
    checkDemo({ PROTOCOL: 'fastcgi' }, true),
  );

  it('PROTOCOL=fastcgi without python3 falls back to Node FastCGI workers', () =>
    checkDemo({ PROTOCOL: 'fastcgi', PYTHON: join(root, 'no-such-python3') }, false));

  it('cuts a client that trickles its request head within HEADERS_TIMEOUT and a check interval', async () => {
    const run = await start('demo.mjs', {
      PYTHON: join(root, 'no-such-python3'),
      HEADERS_TIMEOUT: '1500',
    });
    await expectSlowHeadCut(run, 1500);
    await stop(run);
  });
});

describe("README's Express quick start", () => {
  /** The README's Express example, as a user would paste it. */
  function readmeExample(): string {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const blocks = [...readme.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]!);
    const block = blocks.find((b) => b.includes("from 'express-scgi'"));
    if (block === undefined) throw new Error('README.md has no Express example');
    return block;
  }

  it('answers a backend failure without a stack trace or file paths (NODE_ENV unset)', async () => {
    const dir = makeTempDir('scgi-readme-');
    const socket = join(dir, 'missing.sock');
    const port = await getFreePort();
    const code = readmeExample()
      .replaceAll('unix:/run/myapp/scgi.sock', `unix:${socket}`)
      .replace(/\b3000\b/, String(port));
    const env: Record<string, string | undefined> = { ...process.env };
    delete env.NODE_ENV;
    // --input-type=module resolves the example's imports from cwd, the repo root.
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.stdout!.resume();
    const exited = new Promise((r) => child.once('exit', r));
    try {
      const deadline = Date.now() + READY_MS;
      while (!(await canConnect(`127.0.0.1:${port}`))) {
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`not up: ${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const res = await fetch(`http://127.0.0.1:${port}/app/env`);
      const body = await res.text();
      expect(res.status).toBe(502);
      expect(body).toContain('SCGI_ERR_CONNECT');
      // Express's default error page shows `err.stack` unless NODE_ENV=production.
      expect(body).not.toMatch(/\bat [\w.<>]+ \(|node_modules|\.js:\d+/);
      expect(body).not.toContain(root);
      expect(body).not.toContain(socket);
    } finally {
      child.kill('SIGKILL');
      await exited;
      removeTempDir(dir);
    }
  });
});
