/**
 * Helpers for the spawned-worker tests: the three worker kinds, the process table (/proc), log
 * capture, bounded waits, a GET load and scratch dirs whose scripts can import the built packages.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { ScgiProxyOptions } from 'scgi-core';
import { APP_PY, PYTHON_DIR } from './backends.js';
import { makeTempDir, removeTempDir } from './tmp.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const NODE_APP = join(ROOT, 'examples', 'node-app.mjs');

export type WorkerKind = 'python' | 'uwsgi' | 'node';
// scgi-core's index does not re-export upstream/spawn.ts's types; reach them through the proxy options.
export type SpawnOptions = NonNullable<ScgiProxyOptions['spawn']>;
export type ScgiLogger = NonNullable<ScgiProxyOptions['logger']>;

/** The worker command of each kind, as a user would write it (`{socket}` is filled in). */
export function workerCommand(kind: WorkerKind): SpawnOptions {
  switch (kind) {
    case 'python':
      return {
        command: 'python3',
        args: ['scgi_server.py', '--socket', 'unix:{socket}', '--app', 'app:application'],
        cwd: PYTHON_DIR,
      };
    case 'uwsgi':
      return {
        command: 'uwsgi',
        args: [
          '--plugin',
          'python3',
          '--scgi-socket',
          '{socket}',
          '--wsgi-file',
          APP_PY,
          '--buffer-size',
          '65535',
          '--master',
          '--processes',
          '1',
          '--die-on-term',
        ],
      };
    case 'node':
      return { command: process.execPath, args: [NODE_APP, 'unix:{socket}'] };
  }
}

/** True while `pid` is a live process (a zombie or a missing entry counts as gone). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** The environment a process started with (/proc/<pid>/environ). */
export function procEnv(pid: number): Record<string, string> {
  const env: Record<string, string> = {};
  for (const entry of readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0')) {
    const eq = entry.indexOf('=');
    if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return env;
}

/** Live pids whose command line mentions `needle` (catches forked children such as uWSGI's). */
export function pidsMentioning(needle: string): number[] {
  const hits: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'latin1');
      if (cmdline.includes(needle) && alive(Number(name))) hits.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return hits;
}

/** Polls `check` every 10 ms until it returns true; throws naming `what` after `timeoutMs`. */
export async function waitFor(
  check: () => boolean,
  timeoutMs: number,
  what: string,
): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (check()) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await delay(10);
  }
}

/** Waits (bounded) until every pid is gone, then asserts it. */
export async function waitGone(pids: readonly number[], timeoutMs = 5000): Promise<void> {
  await waitFor(() => pids.every((p) => !alive(p)), timeoutMs, `pids ${pids.join(',')} to exit`);
}

export interface LogRecord {
  level: number;
  /** ms since the epoch (pino's default `time`). */
  time: number;
  msg: string;
  worker?: number;
  workerPid?: number;
  stream?: string;
  [key: string]: unknown;
}

/** A pino destination stream that keeps every JSON record (for `Fastify({ logger: { stream } })`). */
export function pinoCapture(): { stream: Writable; records: LogRecord[] } {
  const records: LogRecord[] = [];
  let rest = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      const lines = (rest + chunk.toString('utf8')).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) if (line !== '') records.push(JSON.parse(line) as LogRecord);
      done();
    },
  });
  return { stream, records };
}

/** A pino-shaped logger that records calls, with pino's level numbers (Express has no logger). */
export function recordingLogger(): { logger: ScgiLogger; records: LogRecord[] } {
  const records: LogRecord[] = [];
  const at =
    (level: number) =>
    (obj: object, msg = '') =>
      void records.push({ ...obj, level, msg, time: Date.now() });
  return { logger: { info: at(30), warn: at(40), error: at(50) }, records };
}

/**
 * `total` GETs of `url`, `concurrency` at a time (a bounded loop per lane). `onDone` runs after
 * each completed request with the number completed so far.
 */
export async function getLoad(
  url: string,
  total: number,
  concurrency: number,
  onDone?: (completed: number) => void,
): Promise<Map<number | string, number>> {
  const outcomes = new Map<number | string, number>();
  let next = 0;
  let completed = 0;
  const lane = async () => {
    while (next < total) {
      next++;
      let key: number | string;
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
        await res.arrayBuffer();
        key = res.status;
      } catch (err) {
        key = (err as Error).message;
      }
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
      onDone?.(++completed);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  return outcomes;
}

/**
 * A temp dir for test scripts; its `node_modules` links to the workspace's, so a script there
 * can `import 'scgi-core'` (the built dist, as a user would).
 */
export function scriptDir(): string {
  const dir = makeTempDir('scgi-spawn-js-');
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  return dir;
}

/** Writes `source` to `dir/name` and returns the path. */
export function writeScript(dir: string, name: string, source: string): string {
  const path = join(dir, name);
  writeFileSync(path, source);
  return path;
}

/** A child Node process with its output collected line by line. */
export interface NodeChild {
  child: ChildProcess;
  lines: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first stdout line that parses as a JSON object. */
  json<T>(timeoutMs?: number): Promise<T>;
}

export function runNode(script: string, args: string[] = []): NodeChild {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => lines.push(l));
  createInterface({ input: child.stderr! }).on('line', (l) => lines.push(`stderr: ${l}`));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    lines,
    exited,
    async json<T>(timeoutMs = 10_000): Promise<T> {
      let found: string | undefined;
      await waitFor(
        () => {
          found = lines.find((l) => l.startsWith('{'));
          return found !== undefined || child.exitCode !== null;
        },
        timeoutMs,
        'the child to print its JSON line',
      );
      if (found === undefined) throw new Error(`child exited early:\n${lines.join('\n')}`);
      return JSON.parse(found) as T;
    },
  };
}

/**
 * Points os.tmpdir() (which reads TMPDIR on each call) at a fresh private dir, so a test can see
 * exactly which `scgi-workers-*` dirs exist. `restore()` puts TMPDIR back and removes the dir
 * (vitest's workers do not always run 'exit' hooks).
 */
export function privateTmpdir(): { dir: string; workerDirs: () => string[]; restore: () => void } {
  const saved = process.env.TMPDIR;
  const dir = makeTempDir('scgi-spawn-tmp-');
  process.env.TMPDIR = dir;
  return {
    dir,
    workerDirs: () => readdirSync(dir).filter((n) => n.startsWith('scgi-workers-')),
    restore: () => {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
      removeTempDir(dir);
    },
  };
}
