/**
 * Child processes of the benchmark suite: spawned in their own process group, logs kept in a
 * bounded buffer, stopped with SIGTERM then SIGKILL, and all killed when the suite exits for any
 * reason, so no uWSGI, nginx or front outlives a run. Also a few /proc readers: CPU time and
 * peak RSS per process, which is why every front runs as its own process.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

const KILL_AFTER_MS = 3_000;
const LOG_LIMIT = 64 * 1024;

const live = new Set();
const dirs = new Set();

function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: gone already
  }
}

/** Kills every child and removes every temp dir; safe to call more than once. */
export function cleanupAll() {
  for (const p of live) killGroup(p.pid, 'SIGKILL');
  live.clear();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  dirs.clear();
}
process.once('exit', cleanupAll);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    cleanupAll();
    process.kill(process.pid, signal);
  });
}

/** A private temp dir (short prefix: a Unix socket path must fit in 107 bytes). */
export function makeTempDir(prefix = 'scgi-b-') {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.add(dir);
  return dir;
}

/**
 * Spawns `cmd args` detached (its own process group), stdout and stderr collected (the last
 * 64 KiB). `onLine` sees each stdout/stderr line (readiness lines); `ipc` adds a message channel
 * (`child.send`, as `fork` gives).
 */
export function startProcess(name, cmd, args, { cwd, env, onLine, ipc = false } = {}) {
  const child = spawn(cmd, args, {
    cwd,
    env: env ?? process.env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe', ...(ipc ? ['ipc'] : [])],
  });
  let log = '';
  let partial = '';
  const take = (chunk) => {
    const text = chunk.toString('utf8');
    log = (log + text).slice(-LOG_LIMIT);
    if (onLine === undefined) return;
    partial += text;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) onLine(line);
  };
  child.stdout.on('data', take);
  child.stderr.on('data', take);
  const proc = {
    name,
    pid: child.pid ?? -1,
    child,
    exitStatus: child.pid === undefined ? 'spawn failed' : undefined,
    log: () => log,
    stop: undefined,
  };
  let settled = false;
  const exited = new Promise((resolve) => {
    const done = (status) => {
      if (settled) return;
      settled = true;
      proc.exitStatus = status;
      live.delete(proc);
      if (child.pid) killGroup(child.pid, 'SIGKILL'); // orphans such as uWSGI workers
      resolve();
    };
    child.once('exit', (code, signal) => done(signal ? `signal ${signal}` : `code ${code}`));
    child.once('error', (error) => done(`spawn error: ${error.message}`));
  });
  let stopping;
  proc.stop = () => {
    stopping ??= (async () => {
      if (proc.exitStatus !== undefined) return;
      child.kill('SIGTERM');
      const late = await Promise.race([exited.then(() => false), delay(KILL_AFTER_MS, true)]);
      if (late) {
        killGroup(proc.pid, 'SIGKILL');
        await exited;
      }
    })();
    return stopping;
  };
  proc.exited = exited;
  if (child.pid !== undefined) live.add(proc);
  return proc;
}

/** Polls `probe` until it returns a value; fails with the log tail if the process exits first. */
export async function waitReady(proc, probe, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitStatus !== undefined) {
      throw new Error(
        `${proc.name} exited (${proc.exitStatus}) before it was ready:\n${tail(proc)}`,
      );
    }
    const value = await probe();
    if (value !== undefined) return value;
    await delay(50);
  }
  throw new Error(`${proc.name} not ready after ${timeoutMs} ms:\n${tail(proc)}`);
}

const tail = (proc) => proc.log().slice(-3000);

/** True if a connection to `{ path }` or `{ host, port }` opens within `timeoutMs`. */
export function canConnect(target, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const socket = net.connect(target);
    const finish = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// ---- /proc ------------------------------------------------------------------------------------

/** utime + stime of `pid` in clock ticks (all its threads), or 0 once it is gone. */
export function cpuTicks(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces: split after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]); // fields 14 and 15 of stat(5)
  } catch {
    return 0;
  }
}

/** Direct children of `pid` (uWSGI's workers under its master). */
export function childPids(pid) {
  const out = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // exited while we looked
    }
  }
  return out;
}

function statusKb(pid, field) {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(
      readFileSync(`/proc/${pid}/status`, 'utf8'),
    );
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

/** VmHWM (peak resident set) of `pid` in KiB. */
export const peakRssKb = (pid) => statusKb(pid, 'VmHWM');

/** Resets VmHWM to the current RSS (proc(5), clear_refs "5"), so each round has its own peak. */
export function resetPeakRss(pid) {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** Clock ticks per second for /proc/<pid>/stat (USER_HZ; 100 on every Linux we know). */
export function clockTicks() {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
}
