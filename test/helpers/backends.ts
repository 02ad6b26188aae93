/**
 * Starts and stops the real SCGI backends (examples/python/scgi_server.py, uWSGI) and the nginx
 * peer the integration tests run against.
 *
 * Every process gets its own temp dir (socket, config, log file) and process group; `stop()`
 * sends SIGTERM, then SIGKILL to the whole group after 3 s, and is idempotent. An exit hook
 * kills whatever a test forgot, so no child outlives the test process.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { findBinary } from './binaries.js';
import { makeTempDir, removeTempDir } from './tmp.js';

export const PYTHON_DIR = fileURLToPath(new URL('../../examples/python/', import.meta.url));
export const APP_PY = join(PYTHON_DIR, 'app.py');
export const SCGI_SERVER_PY = join(PYTHON_DIR, 'scgi_server.py');

const READY_TIMEOUT_MS = 10_000;
const KILL_AFTER_MS = 3_000;
const BIND_ATTEMPTS = 3;
/** sun_path holds 108 bytes including the NUL. */
const MAX_UNIX_PATH = 107;

/** A running SCGI backend. */
export interface Backend {
  /** `unix:/abs/path` or `127.0.0.1:port`. */
  readonly address: string;
  readonly kind: 'python' | 'uwsgi' | 'python-fastcgi' | 'uwsgi-fastcgi' | 'php-fpm' | 'php-cgi';
  readonly pid: number;
  /** Private temp dir holding the socket and the log file. */
  readonly dir: string;
  /** Everything the process wrote to stdout and stderr so far. */
  log(): string;
  /** `code 0`, `signal SIGKILL`... once the process has exited; undefined while it runs. */
  exitStatus(): string | undefined;
  /** SIGTERM, SIGKILL after 3 s; resolves once the process is gone. Idempotent. */
  stop(): Promise<void>;
}

/** A running HTTP front server (nginx). */
export interface Peer {
  /** `http://127.0.0.1:port` */
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  readonly dir: string;
  /** The error log (nginx writes no stdout). */
  log(): string;
  stop(): Promise<void>;
}

// ---- process bookkeeping ---------------------------------------------------------------------

const children = new Set<ChildProcess>();
let hooked = false;

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal); // detached: the child leads its own process group
  } catch {
    // ESRCH: already gone
  }
}

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  const killAll = () => {
    for (const child of children) if (child.pid) killGroup(child.pid, 'SIGKILL');
    children.clear();
  };
  process.once('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    // Only where nobody else listens: re-raising must then kill us with the default action.
    if (process.listenerCount(signal) === 0) {
      process.once(signal, () => {
        killAll();
        process.kill(process.pid, signal);
      });
    }
  }
}

/** A spawned process with its log (for the other start helpers, e.g. ./php.ts). */
export interface Managed {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Set once the process has exited: `code 0`, `signal SIGTERM` or a spawn error. */
  exitStatus: string | undefined;
  log(): string;
  tail(): string;
  stop(): Promise<void>;
}

export function spawnManaged(
  cmd: string,
  args: readonly string[],
  dir: string,
  cwd: string,
): Managed {
  hookExit();
  const logPath = join(dir, 'output.log');
  const fd = openSync(logPath, 'a');
  // A file, not a pipe: a chatty child can never block on a full pipe we forgot to drain.
  const child = spawn(cmd, args, { cwd, detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  child.unref();
  children.add(child);
  const log = () => {
    try {
      return readFileSync(logPath, 'utf8');
    } catch {
      return '';
    }
  };
  let stopping: Promise<void> | undefined;
  const managed: Managed = {
    child,
    pid: child.pid ?? -1,
    exitStatus: child.pid === undefined ? 'spawn failed' : undefined,
    log,
    tail: () => log().slice(-4000),
    stop: () => {
      stopping ??= (async () => {
        if (managed.exitStatus !== undefined) return;
        child.kill('SIGTERM'); // the leader only: uWSGI's master then stops its workers
        const timer = new AbortController();
        const late = delay(KILL_AFTER_MS, 'late', { signal: timer.signal }).catch(() => 'early');
        const outcome = await Promise.race([exited, late]);
        timer.abort();
        if (outcome === 'late') {
          if (child.pid) killGroup(child.pid, 'SIGKILL');
          await exited;
        }
      })();
      return stopping;
    },
  };
  const exited = new Promise<void>((resolve) => {
    const done = (status: string) => {
      if (managed.exitStatus !== undefined) return;
      managed.exitStatus = status;
      children.delete(child);
      if (child.pid) killGroup(child.pid, 'SIGKILL'); // orphans, e.g. uWSGI workers
      resolve();
    };
    child.once('exit', (code, signal) => done(signal ? `signal ${signal}` : `code ${code}`));
    child.once('error', (error) => done(`spawn error: ${error.message}`));
  });
  return managed;
}

// ---- readiness -------------------------------------------------------------------------------

/** `net.connect` options for `unix:/path` or `host:port`. */
export function connectOptions(address: string): net.NetConnectOpts {
  if (address.startsWith('unix:')) return { path: address.slice('unix:'.length) };
  const colon = address.lastIndexOf(':');
  return { host: address.slice(0, colon), port: Number(address.slice(colon + 1)) };
}

/** True if a connection to `address` opens within `timeoutMs`; the connection is closed again. */
export function canConnect(address: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(connectOptions(address));
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}

/** A TCP port that was free a moment ago (listen on 0, close). Callers retry on EADDRINUSE. */
export function getFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Polls `probe` until it yields a value; fails fast, with the log tail, if the process exits. */
export async function waitReady<T>(
  proc: Managed,
  what: string,
  probe: () => Promise<T | undefined>,
  tail: () => string = proc.tail,
): Promise<T> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (proc.exitStatus !== undefined) {
      throw new Error(`${what} exited (${proc.exitStatus}) before it was ready:\n${tail()}`);
    }
    const value = await probe();
    if (value !== undefined) return value;
    await delay(50);
  }
  throw new Error(`${what} not ready after ${READY_TIMEOUT_MS} ms:\n${tail()}`);
}

export function unixSocketPath(dir: string, name: string): string {
  const path = join(dir, name);
  if (Buffer.byteLength(path) > MAX_UNIX_PATH) {
    throw new Error(`Unix socket path too long (${path}); set TMPDIR to a shorter directory`);
  }
  return path;
}

// ---- backends --------------------------------------------------------------------------------

export interface PythonBackendOptions {
  socket: 'unix' | 'tcp';
  /** Concurrent requests (`--threads`). @default 16 */
  threads?: number;
  /** `--max-head` in bytes. @default 65536 */
  maxHead?: number;
  /** `--app module:callable`, importable from examples/python. @default 'app:application' */
  app?: string;
  /** Interpreter. @default process.env.PYTHON ?? 'python3' */
  python?: string;
}

/** examples/python/scgi_server.py serving app.py; TCP binds port 0 and reports the real port. */
export async function startPythonBackend(options: PythonBackendOptions): Promise<Backend> {
  const dir = makeTempDir('scgi-py-');
  const requested =
    options.socket === 'unix' ? `unix:${unixSocketPath(dir, 'app.sock')}` : '127.0.0.1:0';
  const python = options.python ?? process.env.PYTHON ?? 'python3';
  const args = [
    ...['-u', '-B', SCGI_SERVER_PY, '--socket', requested],
    ...['--threads', String(options.threads ?? 16), '--max-head', String(options.maxHead ?? 65536)],
    ...['--app', options.app ?? 'app:application'],
  ];
  const proc = spawnManaged(python, args, dir, PYTHON_DIR);
  try {
    const address = await waitReady(proc, 'python scgi_server.py', async () => {
      const match = /^listening on (\S+)$/m.exec(proc.log());
      return match?.[1] && (await canConnect(match[1])) ? match[1] : undefined;
    });
    return backend('python', address, proc, dir);
  } catch (error) {
    await proc.stop();
    removeTempDir(dir);
    throw error;
  }
}

export interface UwsgiOptions {
  socket: 'unix' | 'tcp';
  /** @default 2 */
  processes?: number;
  /** Threads per process. @default 4 */
  threads?: number;
  /** uWSGI's default is 4096, which refuses larger SCGI heads; 65535 is its maximum. @default 65535 */
  bufferSize?: number;
  /** Appended to the command line. */
  extraArgs?: readonly string[];
  /** With `socket: 'unix'`: this socket path instead of one in the backend's own dir (a restart on the same path). */
  socketPath?: string;
}

/** uWSGI (`--plugin python3 --scgi-socket`) serving examples/python/app.py. */
export async function startUwsgi(options: UwsgiOptions): Promise<Backend> {
  const uwsgi = findBinary('uwsgi') ?? 'uwsgi';
  const processes = options.processes ?? 2;
  for (let attempt = 1; ; attempt++) {
    const dir = makeTempDir('scgi-uw-');
    const address =
      options.socket === 'unix'
        ? `unix:${options.socketPath ?? unixSocketPath(dir, 'app.sock')}`
        : `127.0.0.1:${await getFreePort()}`;
    const args = [
      ...['--plugin', 'python3', '--scgi-socket', address.replace(/^unix:/, '')],
      ...[
        '--wsgi-file',
        APP_PY,
        '--need-app',
        '--buffer-size',
        String(options.bufferSize ?? 65535),
      ],
      ...['--master', '--processes', String(processes), '--threads', String(options.threads ?? 4)],
      // --die-on-term: uWSGI 2.0 treats SIGTERM as "reload" without it.
      ...['--die-on-term', '--no-orphans', '--vacuum', '--chdir', PYTHON_DIR],
      ...(options.extraArgs ?? []),
    ];
    const proc = spawnManaged(uwsgi, args, dir, PYTHON_DIR);
    try {
      await waitReady(proc, 'uwsgi', async () => {
        // The master binds before forking; wait for the workers, then for the socket.
        const spawned = proc.log().match(/spawned uWSGI worker/g)?.length ?? 0;
        return spawned >= processes && (await canConnect(address)) ? true : undefined;
      });
      return backend('uwsgi', address, proc, dir);
    } catch (error) {
      const raced = proc.log().includes('Address already in use');
      await proc.stop();
      removeTempDir(dir);
      if (!raced || attempt >= BIND_ATTEMPTS) throw error;
    }
  }
}

export function backend(
  kind: Backend['kind'],
  address: string,
  proc: Managed,
  dir: string,
): Backend {
  let stopped: Promise<void> | undefined;
  return {
    address,
    kind,
    pid: proc.pid,
    dir,
    log: proc.log,
    exitStatus: () => proc.exitStatus,
    stop: () => {
      stopped ??= proc.stop().then(() => removeTempDir(dir));
      return stopped;
    },
  };
}

// ---- nginx -----------------------------------------------------------------------------------

/**
 * nginx's stock `scgi_params` (as shipped in nginx's conf/). Debian's copy also sets
 * `HTTP_HOST $host`, which drops the client's port; we keep the Host header as sent.
 */
export const SCGI_PARAMS = `
    scgi_param  REQUEST_METHOD     $request_method;
    scgi_param  REQUEST_URI        $request_uri;
    scgi_param  QUERY_STRING       $query_string;
    scgi_param  CONTENT_TYPE       $content_type;

    scgi_param  DOCUMENT_URI       $document_uri;
    scgi_param  DOCUMENT_ROOT      $document_root;
    scgi_param  SCGI               1;
    scgi_param  SERVER_PROTOCOL    $server_protocol;
    scgi_param  REQUEST_SCHEME     $scheme;
    scgi_param  HTTPS              $https if_not_empty;

    scgi_param  REMOTE_ADDR        $remote_addr;
    scgi_param  REMOTE_PORT        $remote_port;
    scgi_param  SERVER_PORT        $server_port;
    scgi_param  SERVER_NAME        $server_name;
`;

export interface NginxOptions {
  /** SCGI backend: `unix:/abs/path` or `127.0.0.1:port` (a Backend's `address`). */
  upstream: string;
  /** Mount prefix such as `/app`: sent as SCRIPT_NAME, the rest of the path as PATH_INFO. */
  scriptName?: string;
  /** Extra directives inside the SCGI `location` (e.g. `scgi_request_buffering off;`). */
  locationExtra?: string;
  /** Extra directives inside `http {}`. */
  httpExtra?: string;
}

function nginxConfig(dir: string, port: number, options: NginxOptions): string {
  const { scriptName } = options;
  if (scriptName !== undefined && !/^(\/[A-Za-z0-9._~-]+)+$/.test(scriptName)) {
    throw new Error(
      `startNginx: scriptName must look like /app, got ${JSON.stringify(scriptName)}`,
    );
  }
  if (!/^(unix:\/\S+|127\.0\.0\.1:\d+)$/.test(options.upstream)) {
    throw new Error(`startNginx: upstream must be unix:/path or 127.0.0.1:port`);
  }
  // Stock scgi_params send no SCRIPT_NAME/PATH_INFO and uWSGI does not derive them, so we add
  // them. (?s) lets the decoded path hold a newline (%0A).
  const location =
    scriptName === undefined
      ? `location / {\n    scgi_param SCRIPT_NAME "";\n    scgi_param PATH_INFO $uri;`
      : `location ~ "(?s)^${scriptName.replaceAll('.', '\\.')}(?<scgi_path_info>/.*)?$" {\n` +
        `    scgi_param SCRIPT_NAME ${scriptName};\n    scgi_param PATH_INFO $scgi_path_info;`;
  return `daemon off;
master_process off;
worker_processes 1;
error_log ${dir}/error.log info;
pid ${dir}/nginx.pid;
events { worker_connections 1024; }
http {
  access_log ${dir}/access.log;
  default_type application/octet-stream;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  ${options.httpExtra ?? ''}
  server {
    listen 127.0.0.1:${port};
    server_name localhost;
    client_max_body_size 0;
    ${location}
${SCGI_PARAMS}
    scgi_pass ${options.upstream};
    ${options.locationExtra ?? ''}
    }
  }
}
`;
}

/** nginx in the foreground, single process, everything in a temp dir, `scgi_pass` to upstream. */
export function startNginx(options: NginxOptions): Promise<Peer> {
  return startNginxWith((dir, port) => nginxConfig(dir, port, options));
}

/**
 * nginx in the foreground with the config `makeConfig(dir, port)` returns: it must listen on
 * 127.0.0.1:port and keep its pid, logs and temp paths in `dir` (./fastcgi-backends.ts).
 */
export async function startNginxWith(
  makeConfig: (dir: string, port: number) => string,
): Promise<Peer> {
  const nginx = findBinary('nginx') ?? '/usr/sbin/nginx';
  for (let attempt = 1; ; attempt++) {
    const dir = makeTempDir('scgi-ng-');
    const port = await getFreePort();
    const conf = join(dir, 'nginx.conf');
    writeFileSync(conf, makeConfig(dir, port));
    // -e: log startup errors here, not to /var/log/nginx (unwritable without root).
    const proc = spawnManaged(
      nginx,
      ['-p', dir, '-e', join(dir, 'error.log'), '-c', conf],
      dir,
      dir,
    );
    const errorLog = () => {
      try {
        return proc.log() + readFileSync(join(dir, 'error.log'), 'utf8');
      } catch {
        return proc.log();
      }
    };
    try {
      const address = `127.0.0.1:${port}`;
      const probe = async () => ((await canConnect(address)) ? true : undefined);
      await waitReady(proc, 'nginx', probe, () => errorLog().slice(-4000));
      let stopped: Promise<void> | undefined;
      return {
        url: `http://${address}`,
        port,
        pid: proc.pid,
        dir,
        log: errorLog,
        stop: () => {
          stopped ??= proc.stop().then(() => removeTempDir(dir));
          return stopped;
        },
      };
    } catch (error) {
      const raced = errorLog().includes('Address already in use');
      await proc.stop();
      removeTempDir(dir);
      if (!raced || attempt >= BIND_ATTEMPTS) throw error;
    }
  }
}
