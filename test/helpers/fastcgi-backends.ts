/**
 * Starts the FastCGI backends and the nginx FastCGI peer of the integration tests:
 * examples/python/fastcgi_server.py, uWSGI `--fastcgi-socket`, and nginx `fastcgi_pass` (with or
 * without `fastcgi_keep_conn on` + upstream `keepalive`). PHP-FPM and php-cgi are in ./php.ts.
 * Processes are managed as in ./backends.ts (own temp dir and process group, stop() idempotent).
 */
import { join } from 'node:path';
import {
  APP_PY,
  type Backend,
  backend,
  canConnect,
  getFreePort,
  type Peer,
  PYTHON_DIR,
  spawnManaged,
  startNginxWith,
  unixSocketPath,
  waitReady,
} from './backends.js';
import { findBinary } from './binaries.js';
import { makeTempDir, removeTempDir } from './tmp.js';

export const FASTCGI_SERVER_PY = join(PYTHON_DIR, 'fastcgi_server.py');

export interface PythonFastcgiOptions {
  socket: 'unix' | 'tcp';
  /** Connections served at once (`--threads`). @default 8 */
  threads?: number;
  /** @default 65536 */
  maxParams?: number;
}

/** examples/python/fastcgi_server.py serving app.py; TCP binds port 0 and reports the real port. */
export async function startPythonFastcgi(options: PythonFastcgiOptions): Promise<Backend> {
  const dir = makeTempDir('fcgi-py-');
  const requested =
    options.socket === 'unix' ? `unix:${unixSocketPath(dir, 'app.sock')}` : '127.0.0.1:0';
  const python = process.env.PYTHON ?? 'python3';
  const args = [
    ...['-u', '-B', FASTCGI_SERVER_PY, '--socket', requested],
    ...['--threads', String(options.threads ?? 8)],
    ...['--max-params', String(options.maxParams ?? 65536)],
  ];
  const proc = spawnManaged(python, args, dir, PYTHON_DIR);
  try {
    const address = await waitReady(proc, 'python fastcgi_server.py', async () => {
      const match = /^listening on (\S+)$/m.exec(proc.log());
      return match?.[1] && (await canConnect(match[1])) ? match[1] : undefined;
    });
    return backend('python-fastcgi', address, proc, dir);
  } catch (error) {
    await proc.stop();
    removeTempDir(dir);
    throw error;
  }
}

/** uWSGI `--fastcgi-socket` serving app.py (it closes the connection after every request). */
export async function startUwsgiFastcgi(options: { socket: 'unix' | 'tcp' }): Promise<Backend> {
  const uwsgi = findBinary('uwsgi') ?? 'uwsgi';
  const dir = makeTempDir('fcgi-uw-');
  const address =
    options.socket === 'unix'
      ? `unix:${unixSocketPath(dir, 'app.sock')}`
      : `127.0.0.1:${await getFreePort()}`;
  const args = [
    ...['--plugin', 'python3', '--fastcgi-socket', address.replace(/^unix:/, '')],
    ...['--wsgi-file', APP_PY, '--need-app', '--buffer-size', '65535'],
    ...['--master', '--processes', '1', '--threads', '4'],
    ...['--die-on-term', '--no-orphans', '--vacuum', '--chdir', PYTHON_DIR],
  ];
  const proc = spawnManaged(uwsgi, args, dir, PYTHON_DIR);
  try {
    await waitReady(proc, 'uwsgi', async () => {
      const spawned = /spawned uWSGI worker/.test(proc.log());
      return spawned && (await canConnect(address)) ? true : undefined;
    });
    return backend('uwsgi-fastcgi', address, proc, dir);
  } catch (error) {
    await proc.stop();
    removeTempDir(dir);
    throw error;
  }
}

/**
 * nginx's stock `fastcgi_params` (as in nginx's conf/), plus what a WSGI app needs: nginx sends
 * no PATH_INFO, and SCRIPT_NAME would be the whole path for a mount at the root.
 */
export const FASTCGI_PARAMS = `
    fastcgi_param  QUERY_STRING       $query_string;
    fastcgi_param  REQUEST_METHOD     $request_method;
    fastcgi_param  CONTENT_TYPE       $content_type;
    fastcgi_param  CONTENT_LENGTH     $content_length;
    fastcgi_param  REQUEST_URI        $request_uri;
    fastcgi_param  DOCUMENT_URI       $document_uri;
    fastcgi_param  DOCUMENT_ROOT      $document_root;
    fastcgi_param  SERVER_PROTOCOL    $server_protocol;
    fastcgi_param  REQUEST_SCHEME     $scheme;
    fastcgi_param  HTTPS              $https if_not_empty;
    fastcgi_param  GATEWAY_INTERFACE  CGI/1.1;
    fastcgi_param  SERVER_SOFTWARE    nginx/$nginx_version;
    fastcgi_param  REMOTE_ADDR        $remote_addr;
    fastcgi_param  REMOTE_PORT        $remote_port;
    fastcgi_param  SERVER_ADDR        $server_addr;
    fastcgi_param  SERVER_PORT        $server_port;
    fastcgi_param  SERVER_NAME        $server_name;
    fastcgi_param  SCRIPT_NAME        "";
    fastcgi_param  PATH_INFO          $uri;
`;

export interface NginxFastcgiOptions {
  /** `unix:/abs/path` or `127.0.0.1:port`. */
  upstream: string;
  /** `fastcgi_keep_conn on` + upstream `keepalive N` when set. */
  keepalive?: number;
  /** Extra directives in the `location` (e.g. `fastcgi_param SCRIPT_FILENAME /x.php;`). */
  locationExtra?: string;
}

/** nginx (`fastcgi_pass`) in front of a FastCGI backend. */
export function startNginxFastcgi(options: NginxFastcgiOptions): Promise<Peer> {
  if (!/^(unix:\/\S+|127\.0\.0\.1:\d+)$/.test(options.upstream)) {
    throw new Error('startNginxFastcgi: upstream must be unix:/path or 127.0.0.1:port');
  }
  const keep = options.keepalive !== undefined;
  return startNginxWith(
    (dir, port) => `daemon off;
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
  upstream app {
    server ${options.upstream};
    ${keep ? `keepalive ${options.keepalive};` : ''}
  }
  server {
    listen 127.0.0.1:${port};
    server_name localhost;
    client_max_body_size 0;
    location / {
${FASTCGI_PARAMS}
      fastcgi_pass app;
      ${keep ? 'fastcgi_keep_conn on;' : ''}
      ${options.locationExtra ?? ''}
    }
  }
}
`,
  );
}
