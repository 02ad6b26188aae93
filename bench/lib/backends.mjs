/**
 * The backend (uWSGI serving a tiny WSGI app) and the nginx peer of the benchmark suite, each
 * in a private temp dir. Config choices follow test/helpers/backends.ts; the differences are
 * for load: no logging, more workers, and nginx's keep-alive cap raised (see nginxConfig).
 */
import { accessSync, constants, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { BODIES, CONTENT_TYPE, pythonBytes, SIZES, UPLOAD_SIZE } from './bodies.mjs';
import { canConnect, childPids, freePort, startProcess, waitReady } from './procs.mjs';

// The bodies live in bodies.mjs (shared with the framework-alone fronts); re-exported here.
export { SIZES, UPLOAD_SIZE };

/**
 * The app: bodies built once at import so a request costs the WSGI call and the copy out only.
 * /upload reads wsgi.input to the end in 256 KiB reads and answers the byte count.
 */
export const WSGI_APP = `\
BODIES = {
${Object.keys(BODIES)
  .map((path) => `    "${path}": ${pythonBytes(path)},`)
  .join('\n')}
}


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/upload":
        stream = environ["wsgi.input"]
        total = 0
        while True:
            chunk = stream.read(262144)
            if not chunk:
                break
            total += len(chunk)
        body = str(total).encode()
    else:
        body = BODIES.get(path)
        if body is None:
            start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
            return [b"not found\\n"]
    start_response(
        "200 OK",
        [("Content-Type", "${CONTENT_TYPE}"), ("Content-Length", str(len(body)))],
    )
    return [body]
`;

const EXTRA_DIRS = ['/usr/sbin', '/sbin', '/usr/local/sbin'];

/** Absolute path of an executable in PATH or the sbin directories, if any. */
export function findBinary(name) {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...EXTRA_DIRS];
  for (const dir of dirs) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * uWSGI with the python3 plugin. `scgi`: `--scgi-socket` on a Unix socket and on TCP, single-
 * threaded workers (each SCGI request is its own connection, so a worker is free again as soon
 * as it answered). `http`: `--http11-socket` for "uWSGI alone" and @fastify/reply-from; with
 * keep-alive a synchronous worker thread stays with its connection until the client closes it,
 * so it needs a thread per client connection (32 from the load generator + 32 idle ones kept by
 * undici between rounds): 4 processes x 16 threads.
 */
export async function startUwsgi(dir, kind, { processes = 4 } = {}) {
  const uwsgi = findBinary('uwsgi');
  if (uwsgi === undefined)
    throw new Error('uwsgi not found (Debian: uwsgi-core uwsgi-plugin-python3)');
  writeFileSync(join(dir, 'app.py'), WSGI_APP);
  const common = [
    ...['--plugin', 'python3', '--wsgi-file', join(dir, 'app.py'), '--need-app'],
    ...['--master', '--processes', String(processes), '--buffer-size', '65535'],
    ...['--disable-logging', '--die-on-term', '--no-orphans', '--chdir', dir],
    // Room for every connection of the load generator and the proxies in the listen queue.
    ...['--listen', '1024'],
  ];
  let sockets;
  let args;
  if (kind === 'scgi') {
    const tcpPort = await freePort();
    sockets = { unix: join(dir, 'scgi.sock'), tcp: `127.0.0.1:${tcpPort}` };
    args = [...common, '--scgi-socket', sockets.unix, '--scgi-socket', sockets.tcp];
  } else {
    const httpPort = await freePort();
    sockets = { http: `127.0.0.1:${httpPort}` };
    args = [...common, '--threads', '16', '--http11-socket', sockets.http];
  }
  const proc = startProcess(`uwsgi-${kind}`, uwsgi, args, { cwd: dir });
  const probeTarget =
    kind === 'scgi'
      ? { path: sockets.unix }
      : { host: '127.0.0.1', port: Number(sockets.http.split(':')[1]) };
  await waitReady(proc, async () => {
    const spawned = proc.log().match(/spawned uWSGI worker/g)?.length ?? 0;
    return spawned >= processes && (await canConnect(probeTarget)) ? true : undefined;
  });
  return { proc, sockets, kind };
}

/**
 * nginx's stock scgi_params (nginx adds CONTENT_LENGTH first itself), plus SCRIPT_NAME and
 * PATH_INFO, which uWSGI does not derive; the Node fronts send both.
 */
const SCGI_PARAMS = `
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
      scgi_param  SCRIPT_NAME        "";
      scgi_param  PATH_INFO          $uri;`;

/**
 * One worker process by default (master_process off: the same event loop, one pid to measure);
 * with `workers` > 1 the master process is on and forks that many workers, which accept on the
 * same listening socket. Access log off, keep-alive to clients. `keepalive_requests` is raised
 * from 1000: Node servers have no cap, and autocannon mis-times the requests after a server-side
 * close. Buffering stays at nginx's defaults (scgi_buffering on, request bodies buffered, to a
 * temp file past 16 KiB). Started as root, the workers stay root (as the single process of
 * `master_process off` does) instead of nginx's default `nobody`, which could not reach the
 * private temp dirs.
 */
function nginxConfig(dir, port, { location, upstreamBlock = '', workers = 1 }) {
  const processes =
    workers > 1
      ? `master_process on;
worker_processes ${workers};
${process.getuid?.() === 0 ? 'user root;\n' : ''}`
      : `master_process off;
worker_processes 1;
`;
  return `daemon off;
${processes}error_log ${dir}/error.log warn;
pid ${dir}/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  default_type application/octet-stream;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
${upstreamBlock}  server {
    listen 127.0.0.1:${port};
    server_name localhost;
    client_max_body_size 0;
    location / {${location}
    }
  }
}
`;
}

/**
 * nginx in front of the SCGI socket `upstreamSocket`; `workers` worker processes (1: no master,
 * see nginxConfig). `proc` is the process started: the master when there is one.
 */
export function startNginx(dir, upstreamSocket, { workers = 1 } = {}) {
  return startNginxWith(dir, {
    location: `${SCGI_PARAMS}
      scgi_pass unix:${upstreamSocket};`,
    workers,
  });
}

/**
 * nginx with the suite's common config (nginxConfig) around `location` (the directives of
 * `location /`) and `upstreamBlock` (text in the `http` block, e.g. an `upstream`).
 */
export async function startNginxWith(dir, { location, upstreamBlock, workers = 1 }) {
  const nginx = findBinary('nginx');
  if (nginx === undefined) throw new Error('nginx not found (Debian: nginx-light)');
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, nginxConfig(dir, port, { location, upstreamBlock, workers }));
  const proc = startProcess('nginx', nginx, ['-p', dir, '-e', join(dir, 'error.log'), '-c', conf], {
    cwd: dir,
  });
  // The master listens before it forks: ready once every worker is there too.
  const forked = () => workers === 1 || childPids(proc.pid).length >= workers;
  await waitReady(proc, async () =>
    forked() && (await canConnect({ host: '127.0.0.1', port })) ? true : undefined,
  );
  return { proc, port };
}
