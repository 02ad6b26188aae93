/**
 * Spawned worker pools, as Apache mod_fcgid and lighttpd's `bin-path` do: the proxy starts its
 * SCGI backends itself, each on its own Unix socket in a private 0700 directory, waits until each
 * accepts connections, restarts the ones that die (with exponential backoff, and not in a hot
 * loop when a worker crashes at start), sizes the pool between `minInstances` and `maxInstances`
 * by load, and stops them all on close. No worker outlives the Node process on any exit path
 * Node can observe: close, SIGINT, SIGTERM, an uncaught exception.
 *
 * `reload()` replaces the workers one at a time without dropping a request, as uWSGI's chain
 * reload and PHP-FPM's graceful reload do: the new worker starts on a new socket and accepts
 * before the slot's backend points at it; the old one gets no new request, finishes what it has
 * (bounded by the proxy's `closeGrace`), then gets SIGTERM (SIGKILL after `killTimeout`).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { checkKnownKeys, intOption } from '../engine/option-checks.js';
import { InvalidOptionError, type ScgiError, SpawnError } from '../errors.js';
import { parseAddress, type UpstreamAddress } from './address.js';
import { addExitCleanup } from './exit-hooks.js';
import type { Backend, UpstreamPool } from './pool.js';

/** A pino-compatible logger (Fastify's `log`), used for worker output and lifecycle events. */
export interface ScgiLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface SpawnOptions {
  /** The worker program, e.g. `python3`, `uwsgi` or `php-cgi`. */
  command: string;
  /**
   * The protocol the workers speak on their socket: `'fastcgi'` for `php-cgi -b {socket}`,
   * examples/python/fastcgi_server.py or `uwsgi --fastcgi-socket {socket}`.
   * @default 'scgi'
   */
  protocol?: 'scgi' | 'fastcgi';
  /**
   * Its arguments; `{socket}` is replaced with the worker's Unix socket path (also given in the
   * environment variable `SCGI_SOCKET`).
   */
  args?: readonly string[];
  /** Workers to run. @default 2 */
  instances?: number;
  /** With sizing: fewest workers. @default instances */
  minInstances?: number;
  /** With sizing: most workers; more than `minInstances` turns sizing by load on. @default instances */
  maxInstances?: number;
  /** ms an extra worker (above `minInstances`) may stay idle before it is stopped. @default 30000 */
  idleTimeout?: number;
  /** Working directory of the workers. @default process.cwd() */
  cwd?: string;
  /** Extra environment variables (added to the parent's environment). */
  env?: Readonly<Record<string, string>>;
  /** ms a worker may take to accept connections after it starts. @default 10000 */
  readyTimeout?: number;
  /** ms between SIGTERM and SIGKILL when stopping a worker. @default 5000 */
  killTimeout?: number;
  /** First restart delay in ms; doubles per failed start up to `maxRestartDelay`. @default 100 */
  restartDelay?: number;
  /** @default 10000 */
  maxRestartDelay?: number;
  /** Failed starts in a row after which a worker is reported and no longer restarted. @default 5 */
  maxStartFailures?: number;
  /**
   * A signal of the Node process that reloads the workers one by one (`proxy.reload()`), e.g.
   * `'SIGHUP'` as nginx, uWSGI and PHP-FPM take it. Opt-in: listening to it means the signal no
   * longer ends the process.
   * @default false
   */
  reloadSignal?: 'SIGHUP' | 'SIGUSR2' | false;
}

export interface ResolvedSpawnOptions {
  readonly command: string;
  readonly protocol: 'scgi' | 'fastcgi';
  readonly args: readonly string[];
  readonly minInstances: number;
  readonly maxInstances: number;
  readonly idleTimeout: number;
  readonly cwd: string | undefined;
  readonly env: Readonly<Record<string, string>>;
  readonly readyTimeout: number;
  readonly killTimeout: number;
  readonly restartDelay: number;
  readonly maxRestartDelay: number;
  readonly maxStartFailures: number;
  readonly reloadSignal: 'SIGHUP' | 'SIGUSR2' | null;
  /** The private directory holding the worker sockets. */
  readonly dir: string;
  readonly sockets: readonly string[];
}

const int = (name: string, v: unknown, d: number, min: number) =>
  intOption(`spawn.${name}`, v, d, min);

/** Validates `spawn` options and makes the private socket directory. */
const SPAWN_KEYS = new Set([
  'command',
  'protocol',
  'args',
  'instances',
  'minInstances',
  'maxInstances',
  'idleTimeout',
  'cwd',
  'env',
  'readyTimeout',
  'killTimeout',
  'restartDelay',
  'maxRestartDelay',
  'maxStartFailures',
  'reloadSignal',
]);

export function resolveSpawnOptions(o: SpawnOptions): ResolvedSpawnOptions {
  if (o === null || typeof o !== 'object')
    throw new InvalidOptionError('spawn', 'must be an object');
  checkKnownKeys(o, SPAWN_KEYS, 'spawn');
  if (typeof o.command !== 'string' || o.command === '') {
    throw new InvalidOptionError('spawn.command', 'must be a non-empty string');
  }
  if (
    o.args !== undefined &&
    (!Array.isArray(o.args) || o.args.some((a) => typeof a !== 'string'))
  ) {
    throw new InvalidOptionError('spawn.args', 'must be a list of strings');
  }
  if (o.env !== undefined && (o.env === null || typeof o.env !== 'object')) {
    throw new InvalidOptionError('spawn.env', 'must be an object of strings');
  }
  if (o.protocol !== undefined && o.protocol !== 'scgi' && o.protocol !== 'fastcgi') {
    throw new InvalidOptionError('spawn.protocol', "must be 'scgi' or 'fastcgi'");
  }
  if (o.cwd !== undefined && typeof o.cwd !== 'string')
    throw new InvalidOptionError('spawn.cwd', 'must be a string');
  const reloadSignal = o.reloadSignal ?? false;
  if (reloadSignal !== false && reloadSignal !== 'SIGHUP' && reloadSignal !== 'SIGUSR2') {
    throw new InvalidOptionError('spawn.reloadSignal', "must be false, 'SIGHUP' or 'SIGUSR2'");
  }
  const instances = int('instances', o.instances, 2, 1);
  const minInstances = int('minInstances', o.minInstances, instances, 1);
  const maxInstances = int('maxInstances', o.maxInstances, Math.max(instances, minInstances), 1);
  if (maxInstances < minInstances)
    throw new InvalidOptionError('spawn.maxInstances', 'must be >= minInstances');
  // Only the name: the supervisor makes the directory, so options that fail validation (here
  // or in the proxy options) leave nothing behind.
  const dir = join(tmpdir(), `scgi-workers-${randomBytes(6).toString('hex')}`);
  return Object.freeze({
    command: o.command,
    protocol: o.protocol ?? 'scgi',
    args: Object.freeze([...(o.args ?? [])]),
    minInstances,
    maxInstances,
    idleTimeout: int('idleTimeout', o.idleTimeout, 30_000, 1),
    cwd: o.cwd,
    env: Object.freeze({ ...o.env }),
    readyTimeout: int('readyTimeout', o.readyTimeout, 10_000, 1),
    killTimeout: int('killTimeout', o.killTimeout, 5000, 0),
    restartDelay: int('restartDelay', o.restartDelay, 100, 1),
    maxRestartDelay: int('maxRestartDelay', o.maxRestartDelay, 10_000, 1),
    maxStartFailures: int('maxStartFailures', o.maxStartFailures, 5, 1),
    reloadSignal: reloadSignal === false ? null : reloadSignal,
    dir,
    sockets: Object.freeze(
      Array.from({ length: maxInstances }, (_, i) => join(dir, `worker-${i}.sock`)),
    ),
  });
}

// Every live worker of every supervisor, killed synchronously when the process exits.
const liveChildren = new Set<ChildProcess>();
const liveDirs = new Set<string>();
function killAllNow(): void {
  for (const c of liveChildren) {
    try {
      c.kill('SIGKILL');
    } catch {}
  }
  for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
}

/** A worker up this long is considered to have started fine. */
const STABLE_MS = 5000;

interface Slot {
  readonly index: number;
  /** The socket of the current worker (a new one per reload). */
  socket: string;
  readonly backend: Backend;
  child: ChildProcess | null;
  ready: boolean;
  wanted: boolean;
  startFailures: number;
  readyAt: number;
  restartTimer: NodeJS.Timeout | null;
  lastBusy: number;
  stderrTail: string[];
}

/**
 * Resolves once no request in flight uses `address` any more, or after `closeGrace` ms (the
 * proxy knows its exchanges; engine/proxy.ts).
 */
export type DrainAddress = (address: UpstreamAddress) => Promise<void>;

/** Starts, watches and stops the workers behind a pool. */
export class WorkerSupervisor {
  readonly #o: ResolvedSpawnOptions;
  readonly #pool: UpstreamPool;
  readonly #log: ScgiLogger | null;
  readonly #slots: Slot[];
  readonly #drain: DrainAddress;
  #stopping = false;
  #sizer: NodeJS.Timeout | null = null;
  /** Workers started by a reload and not yet swapped in, or swapped out and draining. */
  readonly #outside = new Set<ChildProcess>();
  #generation = 0;
  #reloading: Promise<void> = Promise.resolve();
  #onSignal: (() => void) | null = null;

  constructor(
    o: ResolvedSpawnOptions,
    pool: UpstreamPool,
    logger: ScgiLogger | null,
    drain: DrainAddress = async () => {},
  ) {
    this.#o = o;
    this.#pool = pool;
    this.#log = logger;
    this.#drain = drain;
    this.#slots = pool.backends.map((backend, index) => ({
      index,
      socket: o.sockets[index]!,
      backend,
      child: null,
      ready: false,
      wanted: false,
      startFailures: 0,
      readyAt: 0,
      restartTimer: null,
      lastBusy: Date.now(),
      stderrTail: [],
    }));
    for (const s of this.#slots) pool.setHealthy(s.backend, false);
    // mkdir fails when the name exists: nobody can plant the directory (or a symlink) first.
    mkdirSync(o.dir, { mode: 0o700 });
    chmodSync(o.dir, 0o700);
    liveDirs.add(o.dir);
    // On 'exit' and on a signal that ends the process (upstream/exit-hooks.ts; registering twice is a
    // no-op). When the app listens to the signal too, the workers stay up for its graceful
    // close, and 'exit' still kills what is left.
    addExitCleanup(killAllNow);
  }

  /** Starts `minInstances` workers; resolves when all accept connections, or rejects (and cleans up). */
  async start(): Promise<void> {
    const first = this.#slots.slice(0, this.#o.minInstances);
    try {
      await Promise.all(first.map((s) => this.#launch(s)));
    } catch (err) {
      await this.stop();
      throw err;
    }
    if (this.#o.maxInstances > this.#o.minInstances) {
      this.#sizer = setInterval(() => this.#resize(), 250);
      this.#sizer.unref();
    }
    const sig = this.#o.reloadSignal;
    if (sig !== null && !this.#stopping) {
      // Another listener of the signal: upstream/exit-hooks.ts then leaves the signal to the app
      // (it no longer ends the process), which is what opting in means.
      this.#onSignal = () => {
        this.reload().catch((err: ScgiError) =>
          this.#log?.error({ err: err.message }, 'scgi worker reload failed'),
        );
      };
      process.on(sig, this.#onSignal);
    }
  }

  /**
   * Replaces every running worker, one slot at a time (see the file comment). Resolves when all
   * are replaced; rejects with the SpawnError of a new worker that did not come up (that slot
   * and the ones after it keep their old workers). A reload asked for during another runs after it.
   */
  reload(): Promise<void> {
    const run = this.#reloading.then(() => this.#reloadAll());
    this.#reloading = run.catch(() => {});
    return run;
  }

  async #reloadAll(): Promise<void> {
    for (const slot of this.#slots) {
      // A slot (re)starting or stopped gets the new program when it next starts anyway.
      if (this.#stopping || !slot.wanted || !slot.ready || slot.child === null) continue;
      const old = slot.child;
      const oldSocket = slot.socket;
      const oldAddress = slot.backend.address;
      const socket = join(this.#o.dir, `worker-${slot.index}-${++this.#generation}.sock`);
      let child: ChildProcess;
      try {
        child = await this.#spawn(slot, socket, false);
      } catch (err) {
        rmSync(socket, { force: true });
        throw err;
      }
      if (this.#stopping || slot.child !== old) {
        // Stopped meanwhile, or the old worker died and the slot restarted on its own.
        this.#outside.delete(child);
        await this.#kill(child);
        rmSync(socket, { force: true });
        continue;
      }
      // The swap: new requests go to the new worker from here on.
      slot.child = child;
      slot.socket = socket;
      slot.backend.address = parseAddress(`${this.#o.protocol}://unix:${socket}`);
      slot.readyAt = Date.now();
      slot.startFailures = 0;
      this.#outside.delete(child);
      this.#outside.add(old);
      this.#pool.setHealthy(slot.backend, true);
      this.#log?.info(
        { worker: slot.index, workerPid: child.pid, oldPid: old.pid },
        'scgi worker replaced; draining the old one',
      );
      await this.#drain(oldAddress);
      await this.#kill(old);
      this.#outside.delete(old);
      rmSync(oldSocket, { force: true });
    }
  }

  /** Worker pids, by slot (null where no worker runs). */
  pids(): Array<number | null> {
    return this.#slots.map((s) => s.child?.pid ?? null);
  }

  async #launch(slot: Slot): Promise<void> {
    slot.wanted = true;
    await this.#spawn(slot, slot.socket, true);
  }

  /**
   * Starts a worker for `slot` on `socket`; resolves with it once it accepts connections.
   * `adopt`: it is the slot's worker from the start (a start or restart), marked ready and
   * healthy when it accepts; otherwise (a reload) the caller swaps it in.
   */
  #spawn(slot: Slot, socket: string, adopt: boolean): Promise<ChildProcess> {
    rmSync(socket, { force: true });
    const o = this.#o;
    const args = o.args.map((a) => a.replaceAll('{socket}', socket));
    const child = spawn(o.command, args, {
      cwd: o.cwd,
      env: { ...process.env, ...o.env, SCGI_SOCKET: socket },
      stdio: ['ignore', this.#log === null ? 'inherit' : 'pipe', 'pipe'],
    });
    if (adopt) {
      slot.child = child;
      slot.ready = false;
    } else this.#outside.add(child);
    slot.stderrTail = [];
    liveChildren.add(child);
    const tag = { worker: slot.index, workerPid: child.pid };
    if (child.stdout !== null && this.#log !== null) {
      createInterface({ input: child.stdout }).on('line', (line) =>
        this.#log?.info({ ...tag, stream: 'stdout' }, line),
      );
    }
    createInterface({ input: child.stderr! }).on('line', (line) => {
      slot.stderrTail.push(line);
      if (slot.stderrTail.length > 20) slot.stderrTail.shift();
      if (this.#log !== null) this.#log.warn({ ...tag, stream: 'stderr' }, line);
      else process.stderr.write(`[scgi worker ${slot.index}] ${line}\n`);
    });

    return new Promise<ChildProcess>((resolve, reject) => {
      let settled = false;
      let up = false;
      const started = Date.now();
      const fail = (why: string) => {
        if (settled) return;
        settled = true;
        // Give the stderr reader a moment so the tail says why.
        setTimeout(() => {
          const tail = slot.stderrTail.slice(-5).join(' | ');
          reject(
            new SpawnError(
              `${o.command} ${args.join(' ')}`,
              tail === '' ? why : `${why}; stderr: ${tail}`,
            ),
          );
        }, 50);
      };
      child.once('error', (err) => fail(err.message));
      child.once('exit', (code, signal) => {
        liveChildren.delete(child);
        this.#outside.delete(child);
        const current = slot.child === child;
        if (current) slot.child = null;
        if (!settled) fail(`exited before accepting connections (code ${code}, signal ${signal})`);
        // A launch that failed (e.g. killed at readyTimeout) is retried by whoever awaited it;
        // restarting it here too would start a second worker for the slot. A worker replaced by
        // a reload is no longer the slot's: its exit is expected.
        else if (up && current) this.#onExit(slot, code, signal);
      });
      const poll = () => {
        if (settled) return;
        if (Date.now() - started > o.readyTimeout) {
          child.kill('SIGKILL');
          fail(`did not accept connections on its socket within ${o.readyTimeout} ms`);
          return;
        }
        const s = connect(socket);
        s.once('connect', () => {
          s.destroy();
          if (settled) return;
          settled = true;
          up = true;
          if (adopt) {
            slot.ready = true;
            slot.readyAt = Date.now();
            slot.lastBusy = slot.readyAt;
            this.#pool.setHealthy(slot.backend, true);
          }
          this.#log?.info({ ...tag }, 'scgi worker ready');
          resolve(child);
        });
        s.once('error', () => {
          s.destroy();
          setTimeout(poll, 25);
        });
      };
      poll();
    });
  }

  /** A worker exited: out of rotation at once, then restarted with backoff. */
  #onExit(slot: Slot, code: number | null, signal: NodeJS.Signals | null): void {
    slot.ready = false;
    this.#pool.setHealthy(slot.backend, false);
    if (this.#stopping || !slot.wanted) return;
    // A worker that dies soon after it came up counts as a failed start: the backoff grows and
    // a worker that cannot stay up is reported instead of restarted in a loop.
    if (Date.now() - slot.readyAt < STABLE_MS) slot.startFailures++;
    else slot.startFailures = 0;
    this.#log?.warn({ worker: slot.index, code, signal }, 'scgi worker exited; restarting');
    this.#scheduleRestart(slot);
  }

  #scheduleRestart(slot: Slot): void {
    const o = this.#o;
    if (slot.startFailures >= o.maxStartFailures) {
      this.#log?.error(
        { worker: slot.index, failures: slot.startFailures, stderr: slot.stderrTail.slice(-5) },
        'scgi worker keeps failing at start; not restarting it',
      );
      return;
    }
    const delay = Math.min(o.maxRestartDelay, o.restartDelay * 2 ** slot.startFailures);
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = null;
      if (this.#stopping || !slot.wanted) return;
      this.#launch(slot).catch((err: ScgiError) => {
        slot.startFailures++;
        this.#log?.warn({ worker: slot.index, err: err.message }, 'scgi worker failed to start');
        if (slot.child !== null) this.#kill(slot.child);
        this.#scheduleRestart(slot);
      });
    }, delay);
    slot.restartTimer.unref();
  }

  /** Sizing by load: one more worker while requests queue or every worker is busy; idle extras stop. */
  #resize(): void {
    if (this.#stopping) return;
    const now = Date.now();
    const running = this.#slots.filter((s) => s.wanted);
    for (const s of running) if (s.backend.active > 0) s.lastBusy = now;
    const busy = running.every(
      (s) => !s.ready || s.backend.active >= Math.max(1, s.backend.maxConnections),
    );
    const starting = running.some((s) => s.wanted && !s.ready);
    if ((this.#pool.queued > 0 || busy) && !starting && running.length < this.#o.maxInstances) {
      const slot = this.#slots.find((s) => !s.wanted);
      if (slot !== undefined) {
        this.#log?.info({ worker: slot.index }, 'scgi pool busy: starting a worker');
        this.#launch(slot).catch((err: ScgiError) => {
          slot.wanted = false;
          this.#log?.warn(
            { worker: slot.index, err: err.message },
            'scgi extra worker failed to start',
          );
        });
      }
      return;
    }
    if (running.length > this.#o.minInstances) {
      const idle = running
        .filter((s) => s.index >= this.#o.minInstances && s.ready && s.backend.active === 0)
        .find((s) => now - s.lastBusy > this.#o.idleTimeout);
      if (idle !== undefined) {
        this.#log?.info({ worker: idle.index }, 'scgi worker idle: stopping it');
        idle.wanted = false;
        this.#pool.setHealthy(idle.backend, false);
        if (idle.child !== null) void this.#kill(idle.child);
      }
    }
  }

  /** SIGTERM, then SIGKILL after `killTimeout`; resolves when the process is gone. */
  #kill(child: ChildProcess): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), this.#o.killTimeout);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.kill('SIGTERM');
    });
  }

  /** Stops every worker and removes the sockets and the directory. */
  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#sizer !== null) clearInterval(this.#sizer);
    this.#sizer = null;
    if (this.#onSignal !== null && this.#o.reloadSignal !== null)
      process.removeListener(this.#o.reloadSignal, this.#onSignal);
    this.#onSignal = null;
    const kills: Promise<void>[] = [...this.#outside].map((c) => this.#kill(c));
    for (const s of this.#slots) {
      s.wanted = false;
      if (s.restartTimer !== null) clearTimeout(s.restartTimer);
      s.restartTimer = null;
      this.#pool.setHealthy(s.backend, false);
      if (s.child !== null) kills.push(this.#kill(s.child));
    }
    await Promise.all(kills);
    rmSync(this.#o.dir, { recursive: true, force: true });
    liveDirs.delete(this.#o.dir);
  }
}
