// An SCGI app behind Express 5 with express-scgi.
//
//   /app/...       -> the SCGI app (SCRIPT_NAME=/app, PATH_INFO=the rest of the path)
//   POST /api/echo -> a native Express route behind express.json()
//
//   node examples/express.mjs                        (starts a Node SCGI app itself)
//   UPSTREAM=unix:/run/app.sock node examples/express.mjs
//   UPSTREAM=127.0.0.1:9000 node examples/express.mjs
//   curl http://127.0.0.1:<port>/app/env
//   HEADERS_TIMEOUT=ms bounds how long a client may take to send its request head
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { scgiProxy } from 'express-scgi';
import { startNodeApp } from './node-app.mjs';

const PORT = Number(process.env.PORT ?? 0); // 0: the kernel picks a free port
const HOST = process.env.HOST ?? '127.0.0.1';

// The backend: yours (UPSTREAM=unix:/path or host:port), or the Node SCGI example app on a Unix
// socket in a private temp dir (mkdtemp makes it mode 0700: no other user can connect).
let upstream = process.env.UPSTREAM;
let dir = null;
let backend = null;
if (!upstream) {
  dir = mkdtempSync(join(tmpdir(), 'scgi-express-'));
  upstream = `unix:${join(dir, 'app.sock')}`;
  backend = await startNodeApp(upstream);
}

const app = express();

// Body parsers on other paths do not touch the proxied requests: under /app the body is
// streamed to the backend as it arrives. (Mounted globally, `app.use(express.json())`, they
// would read the body first, and a parsed value cannot be turned back into the client's bytes:
// such requests get 500 SCGI_ERR_BODY_CONSUMED unless the parser keeps the raw bytes with
// `express.json({ verify: keepRawBody })`. Keep them off the mount.)
app.use('/api', express.json());
app.post('/api/echo', (req, res) => res.json({ received: req.body }));

// The mount: SCRIPT_NAME is the mount path ('/app'), PATH_INFO the rest.
const scgi = scgiProxy({ upstream });
app.use('/app', scgi);

app.get('/', (_req, res) =>
  res.type('html').send('<p>The SCGI app is at <a href="/app/">/app/</a></p>'),
);

// Failures before the response head (backend down: 502, overloaded: 503, timeouts: 504, body
// too large: 413) reach error middleware with `statusCode` and a stable `code` such as
// SCGI_ERR_CONNECT. Answer with those; log the details (`upstream`, `cause`) instead of sending
// them. (`scgiProxy({ upstream, respondOnError: true })` does the answering part for you.)
app.use((err, req, res, next) => {
  if (typeof err?.code !== 'string' || !err.code.startsWith('SCGI_ERR_')) return next(err);
  console.error(`${req.method} ${req.originalUrl}: ${err.code} from ${err.upstream ?? upstream}`);
  res.status(err.statusCode).json({ statusCode: err.statusCode, code: err.code });
});

// A client that sends its headers a byte at a time holds a connection until headersTimeout;
// Node checks it only every connectionsCheckingInterval (30 s by default), so the default cut
// comes after 60 to 90 s. These bound it at 60 s (HEADERS_TIMEOUT + at most 10 s).
const HEADERS_TIMEOUT = Number(process.env.HEADERS_TIMEOUT ?? 50_000);
const CHECK_INTERVAL = Math.max(100, Math.min(10_000, Math.ceil(HEADERS_TIMEOUT / 5)));
const server = createServer(
  { headersTimeout: HEADERS_TIMEOUT, connectionsCheckingInterval: CHECK_INTERVAL },
  app,
);
// CONNECT never reaches Express: attach() answers it 405 from the first request on.
scgi.attach(server);

// Ctrl-C / SIGTERM: stop taking requests, stop the backend, remove the temp dir, exit 0.
let stopping = false;
async function stop(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`${signal}: stopping`);
  setTimeout(() => process.exit(1), 5000).unref(); // never hang on a stuck request
  // close() also drops idle keep-alive connections (Node >= 19); it waits for busy ones.
  await new Promise((resolve) => server.close(resolve));
  if (backend) await new Promise((resolve) => backend.close(resolve));
  if (dir) rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}
process.once('SIGINT', () => stop('SIGINT'));
process.once('SIGTERM', () => stop('SIGTERM'));

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(PORT, HOST, resolve);
});
console.log(`backend: ${upstream}`);
if (dir) console.log(`tmp: ${dir}`);
console.log(`ready: http://${HOST}:${server.address().port}/app/`);
