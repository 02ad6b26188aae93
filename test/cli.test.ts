/**
 * The `fastify-scgi` command (packages/fastify-plugin/dist/cli.js, built by `tsc -b`), run as a
 * child process the way a user runs it: against spawned Python workers and against Node SCGI
 * servers given with --upstream; SIGTERM closes it with exit code 0 and nothing left behind;
 * mistakes on the command line are one line on stderr and exit code 2; a client that sends its
 * request head a byte at a time is cut.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { PYTHON_DIR } from './helpers/backends.js';
import { has } from './helpers/binaries.js';
import { type NodeBackend, startNodeBackend } from './helpers/pool.js';
import { makeTempDir, removeTempDir } from './helpers/tmp.js';
import { alive, waitFor, waitGone } from './helpers/workers.js';

const CLI = fileURLToPath(new URL('../packages/fastify-plugin/dist/cli.js', import.meta.url));
const PKG = fileURLToPath(new URL('../packages/fastify-plugin/package.json', import.meta.url));

interface Run {
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running = new Set<ChildProcess>();
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
  for (const c of cleanups.splice(0)) await c();
});

function runCli(args: string[], options: { cwd?: string; tmpdir?: string } = {}): Run {
  const env = { ...process.env };
  if (options.tmpdir !== undefined) env.TMPDIR = options.tmpdir;
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: options.cwd,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  const stdout: string[] = [];
  const stderr: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => stdout.push(l));
  createInterface({ input: child.stderr! }).on('line', (l) => stderr.push(l));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }),
  );
  return { child, stdout, stderr, exited };
}

/** Runs to the end (bounded): exit code and output. */
async function runToEnd(args: string[]) {
  const run = runCli(args);
  const timer = setTimeout(() => run.child.kill('SIGKILL'), 10_000);
  const { code } = await run.exited;
  clearTimeout(timer);
  // The readline interfaces may still hold the last line for a tick.
  await delay(20);
  return { code, stdout: run.stdout.join('\n'), stderr: run.stderr };
}

interface Ready {
  url: string;
  backend: string[];
}

/** Waits for the CLI's `fastify-scgi ready` log line. */
async function ready(run: Run): Promise<Ready> {
  let line: string | undefined;
  await waitFor(
    () => {
      line = run.stdout.find((l) => l.includes('"fastify-scgi ready"'));
      return line !== undefined || run.child.exitCode !== null;
    },
    20_000,
    'the CLI to log "fastify-scgi ready"',
  );
  if (line === undefined) {
    throw new Error(`the CLI exited early:\n${[...run.stdout, ...run.stderr].join('\n')}`);
  }
  return JSON.parse(line) as Ready;
}

/** Pids of the CLI's child processes (/proc/<pid>/task/<tid>/children). */
function childPids(pid: number): number[] {
  const pids: number[] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
    if (text !== '') pids.push(...text.split(' ').map(Number));
  }
  return pids;
}

describe('fastify-scgi CLI: usage', () => {
  it('--help prints the usage and exits 0', async () => {
    const { code, stdout } = await runToEnd(['--help']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^Usage: fastify-scgi /);
    for (const flag of ['--upstream', '--spawn', '--workers', '--prefix', '--port', '--host'])
      expect(stdout).toContain(flag);
    for (const flag of ['--static', '--log-level', '--headers-timeout', '--version'])
      expect(stdout).toContain(flag);
  });

  it('--version prints the package version', async () => {
    const { code, stdout } = await runToEnd(['--version']);
    expect(code).toBe(0);
    expect(stdout.trim()).toBe(JSON.parse(readFileSync(PKG, 'utf8')).version);
  });

  it.each([
    [['--upstrem', 'unix:/x.sock'], 'unknown option --upstrem; did you mean --upstream?'],
    [['-u', 'unix:/x.sock', '--port', 'abc'], '--port must be a whole number from 0 to 65535'],
    [['-u', 'unix:/x.sock', '--port'], '--port needs a value'],
    [['-u', 'unix:/x.sock', '--workers', '3'], '--workers goes with --spawn'],
    [['--spawn', 'python3 -c 1', '--workers', '0'], '--workers must be a whole number from 1'],
    [['--port', '8080'], 'give the backend with --upstream ADDRESS or --spawn'],
    [['-u', 'unix:/x.sock', '--spawn', 'x'], '--upstream and --spawn cannot be used together'],
    [['-u', 'nowhere'], '--upstream: Invalid upstream address nowhere'],
    [['-u', 'unix:/x.sock', '--static', '/s=./no-such-dir'], '--static /s=./no-such-dir'],
    [['-u', 'unix:/x.sock', '--static', 'public'], '--static takes URL=DIR'],
    [['--spawn', `python3 'app.py`], '--spawn: unbalanced'],
    [['-u', 'unix:/x.sock', '--prefix', 'app'], '--prefix must start with /'],
    [['-u', 'unix:/x.sock', '--prefix', '/a b'], 'SCGI_ERR_INVALID_OPTION'],
    [['-u', 'unix:/x.sock', '--log-level', 'loud'], '--log-level must be one of'],
    [['-u', 'unix:/x.sock', 'stray'], 'unexpected argument "stray"'],
  ])('%j exits 2 with one line naming the mistake', async (args, message) => {
    const { code, stderr } = await runToEnd(args);
    expect(code).toBe(2);
    expect(stderr).toHaveLength(1);
    expect(stderr[0]).toMatch(/^fastify-scgi: /);
    expect(stderr[0]).toContain(message);
  });

  it('a worker command that fails at start exits 1 naming SCGI_ERR_SPAWN', async () => {
    const { code, stderr } = await runToEnd([
      '--spawn',
      `${process.execPath} -e "process.exit(3)"`,
      '--port',
      '0',
      '--log-level',
      'silent',
    ]);
    expect(code).toBe(1);
    expect(stderr.join('\n')).toContain('SCGI_ERR_SPAWN');
  });
});

describe.skipIf(!has('python3'))('fastify-scgi CLI --spawn: the Python example backend', () => {
  it('serves the app under --prefix and files under --static, and SIGTERM leaves nothing', async () => {
    const tmp = makeTempDir('scgi-cli-');
    cleanups.push(() => removeTempDir(tmp));
    const publicDir = join(tmp, 'public');
    mkdirSync(publicDir);
    writeFileSync(join(publicDir, 'hello.txt'), 'static hello\n');
    const run = runCli(
      [
        ...['--spawn', 'python3 -B scgi_server.py --socket unix:{socket}', '--workers', '2'],
        ...['--prefix', '/app', '--port', '0', '--static', `/files=${publicDir}`],
      ],
      { cwd: PYTHON_DIR, tmpdir: tmp },
    );
    const { url, backend } = await ready(run);
    expect(backend).toHaveLength(2);
    const workerDir = readdirSync(tmp).filter((n) => n.startsWith('scgi-workers-'));
    expect(workerDir).toHaveLength(1);
    const workers = childPids(run.child.pid!);
    expect(workers).toHaveLength(2);
    for (const socket of backend) expect(existsSync(socket)).toBe(true);

    const res = await fetch(`${url}/app/env/x?q=1`);
    expect(res.status).toBe(200);
    const env = (await res.json()) as Record<string, string>;
    expect(env.SCRIPT_NAME).toBe('/app');
    expect(env.PATH_INFO).toBe('/env/x');
    expect(env.QUERY_STRING).toBe('q=1');
    const file = await fetch(`${url}/files/hello.txt`);
    expect(file.status).toBe(200);
    expect(await file.text()).toBe('static hello\n');

    // A request in flight when SIGTERM arrives still gets its answer (graceful close).
    const slow = fetch(`${url}/app/slow?delay=0.5`);
    await waitFor(
      () => run.stdout.some((l) => l.includes('/app/slow')),
      5000,
      'the slow request to arrive',
    );
    run.child.kill('SIGTERM');
    const answer = await slow;
    expect(answer.status).toBe(200);
    expect(await answer.text()).toBe('slept 0.5\n');
    expect(await run.exited).toEqual({ code: 0, signal: null });
    await waitGone(workers);
    for (const socket of backend) expect(existsSync(socket)).toBe(false);
    expect(readdirSync(tmp).filter((n) => n.startsWith('scgi-workers-'))).toEqual([]);
  });
});

describe('fastify-scgi CLI --upstream: Node SCGI servers (scgi-core createScgiServer)', () => {
  const backends: NodeBackend[] = [];
  afterEach(async () => {
    for (const b of backends.splice(0)) await b.kill();
  });

  it('balances over a pool of --upstream addresses, and SIGTERM exits 0', async () => {
    backends.push(await startNodeBackend('a'), await startNodeBackend('b', 'tcp'));
    const run = runCli([
      ...['--upstream', backends[0]!.address, '-u', backends[1]!.address],
      ...['--port', '0'],
    ]);
    const { url } = await ready(run);
    const seen = new Set<string | null>();
    for (let i = 0; i < 4; i++) {
      const res = await fetch(`${url}/env`);
      expect(res.status).toBe(200);
      seen.add(res.headers.get('x-backend'));
      await res.arrayBuffer();
    }
    expect([...seen].sort()).toEqual(['a', 'b']);
    expect(backends[0]!.hits + backends[1]!.hits).toBe(4);

    const pid = run.child.pid!;
    run.child.kill('SIGTERM');
    expect(await run.exited).toEqual({ code: 0, signal: null });
    expect(alive(pid)).toBe(false);
    // No connection to a backend is left open by the closed proxy.
    await waitFor(() => backends.every((b) => b.sockets.size === 0), 5000, 'backend sockets');
  });

  it('SIGINT closes gracefully too', async () => {
    backends.push(await startNodeBackend('a'));
    const run = runCli(['-u', backends[0]!.address, '--port', '0']);
    const { url } = await ready(run);
    expect((await fetch(`${url}/`)).status).toBe(200);
    run.child.kill('SIGINT');
    expect(await run.exited).toEqual({ code: 0, signal: null });
  });

  it('cuts a client that sends its request head a byte at a time (--headers-timeout)', async () => {
    backends.push(await startNodeBackend('a'));
    const run = runCli([
      ...['-u', backends[0]!.address, '--port', '0', '--headers-timeout', '1000'],
    ]);
    const { url } = await ready(run);
    const { hostname, port } = new URL(url);
    const socket = net.connect({ host: hostname, port: Number(port) });
    const received: Buffer[] = [];
    socket.on('data', (d) => received.push(d));
    socket.on('error', () => {});
    let closed = false;
    socket.once('close', () => {
      closed = true;
    });
    const start = Date.now();
    const head = `GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ${'a'.repeat(200)}`;
    // One byte every 50 ms: 200+ bytes would take over 10 s; the server must cut it first.
    for (const byte of head) {
      if (closed || Date.now() - start > 8000) break;
      socket.write(byte);
      await delay(50);
    }
    const elapsed = Date.now() - start;
    socket.destroy();
    expect(closed).toBe(true);
    // headersTimeout 1 s, checked every 250 ms: cut well before the 8 s this loop allows.
    expect(elapsed).toBeLessThan(4000);
    expect(Buffer.concat(received).toString('latin1')).toMatch(/^HTTP\/1\.1 408 /);
    run.child.kill('SIGTERM');
    expect((await run.exited).code).toBe(0);
  });
});
