// The two kinds of upstream address, side by side in one Fastify server:
//
//   /unix/...  -> an SCGI app on a Unix socket:  upstream: 'unix:/path/app.sock'
//                 (a bare absolute path '/path/app.sock' means the same)
//   /tcp/...   -> an SCGI app on TCP:            upstream: '127.0.0.1:9000'
//                 (IPv6: '[::1]:9000')
//
// Both backends are the Node SCGI example app (examples/node-app.mjs); any SCGI server works
// (flup, uWSGI --scgi-socket, examples/python/scgi_server.py).
//
// Prefer a Unix socket when the app runs on the same machine:
// - SCGI has no keep-alive: every request opens a new connection, and the end of the response
//   is the backend closing it. Over TCP each request costs a handshake and a local port, and
//   leaves a TIME_WAIT entry behind for about a minute (Linux: 60 s) on the side that closed
//   first. Under load these pile up by the thousands (`ss -tan state time-wait | wc -l`) and
//   can exhaust ports. A Unix socket has no ports, no handshake and no TIME_WAIT.
// - Access is a file permission: only users who can reach the socket file may connect. Any
//   local user can connect to 127.0.0.1:<port>, and the app would trust them like the proxy.
// Use TCP when the app runs on another host (or a container without a shared volume), and
// then keep it on a private network: SCGI has no authentication.
//
//   node examples/tcp-vs-unix.mjs
//   curl http://127.0.0.1:<port>/unix/env     curl http://127.0.0.1:<port>/tcp/env
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import fastifyScgi from 'fastify-scgi';
import { startNodeApp } from './node-app.mjs';

const PORT = Number(process.env.PORT ?? 0); // 0: the kernel picks a free port
const HOST = process.env.HOST ?? '127.0.0.1';

// A private temp dir (mkdtemp: mode 0700) for the socket. Keep the path short: a Unix socket
// path must fit in 107 bytes.
const dir = mkdtempSync(join(tmpdir(), 'scgi-tcpunix-'));
const unixUpstream = `unix:${join(dir, 'app.sock')}`;
const unixBackend = await startNodeApp(unixUpstream);

// Port 0 lets the kernel pick; a real deployment would use a fixed port, e.g. 127.0.0.1:9000.
const tcpBackend = await startNodeApp('127.0.0.1:0');
const tcpUpstream = `127.0.0.1:${tcpBackend.address().port}`;

const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'warn' } });

// One registration per backend. Each prefix becomes the app's SCRIPT_NAME.
await app.register(fastifyScgi, { upstream: unixUpstream, prefix: '/unix' });
await app.register(fastifyScgi, {
  upstream: tcpUpstream,
  prefix: '/tcp',
  // A TCP connect can hang on a host that drops packets: give up after 2 s (a 504).
  connectTimeout: 2000,
});

// Ctrl-C / SIGTERM: stop taking requests, stop both backends, remove the temp dir, exit 0.
let stopping = false;
async function stop(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`${signal}: stopping`);
  setTimeout(() => process.exit(1), 5000).unref(); // never hang on a stuck request
  await app.close();
  await Promise.all([unixBackend, tcpBackend].map((s) => new Promise((r) => s.close(r))));
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}
process.once('SIGINT', () => stop('SIGINT'));
process.once('SIGTERM', () => stop('SIGTERM'));

await app.listen({ port: PORT, host: HOST });
const base = `http://${HOST}:${app.server.address().port}`;
console.log(`backends: /unix -> ${unixUpstream}   /tcp -> ${tcpUpstream}`);
console.log(`tmp: ${dir}`);
console.log(`ready: ${base}/unix/ ${base}/tcp/`);
