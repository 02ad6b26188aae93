// A legacy SCGI app mounted under a path prefix, next to native Fastify routes.
//
//   GET  /legacy/app/...  -> the SCGI app, with SCRIPT_NAME=/legacy/app and PATH_INFO=/...
//   GET  /health          -> a native Fastify route (JSON)
//   POST /api/items       -> a native Fastify route; Fastify parses the JSON body as usual
//   GET  /admin/env       -> a route of your own that checks a token, then forwards with
//                            reply.scgi() and tells the app who the user is (REMOTE_USER)
//
//   node examples/prefix-mount.mjs                        (starts a Node SCGI app itself)
//   UPSTREAM=unix:/run/app.sock node examples/prefix-mount.mjs
//   curl http://127.0.0.1:<port>/legacy/app/env
//   curl -H 'x-admin-token: secret' http://127.0.0.1:<port>/admin/env
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import fastifyScgi from 'fastify-scgi';
import { startNodeApp } from './node-app.mjs';

const PORT = Number(process.env.PORT ?? 0); // 0: the kernel picks a free port
const HOST = process.env.HOST ?? '127.0.0.1';
const ADMIN_TOKEN = process.env.ADMIN_TOKEN ?? 'secret';

// The backend: yours (UPSTREAM=unix:/path or host:port), or the Node SCGI example app on a Unix
// socket in a private temp dir (mkdtemp makes it mode 0700: no other user can connect).
let upstream = process.env.UPSTREAM;
let dir = null;
let backend = null;
if (!upstream) {
  dir = mkdtempSync(join(tmpdir(), 'scgi-prefix-'));
  upstream = `unix:${join(dir, 'app.sock')}`;
  backend = await startNodeApp(upstream);
}

const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'warn' } });

// The mount. Every method on /legacy/app and /legacy/app/* goes to the backend, its body
// untouched: the plugin turns Fastify's body parsers off under its prefix only. The app sees
// SCRIPT_NAME=/legacy/app (where it is mounted, so it can build its own links) and PATH_INFO=
// the rest of the path, exactly as behind nginx or Apache's mod_proxy_scgi.
await app.register(fastifyScgi, { upstream, prefix: '/legacy/app' });

// Native routes keep Fastify's JSON parser, schemas and serializers.
app.get('/health', async () => ({ status: 'ok' }));

app.post(
  '/api/items',
  {
    schema: {
      body: {
        type: 'object',
        required: ['name'],
        properties: { name: { type: 'string', minLength: 1 } },
      },
    },
  },
  async (request, reply) => reply.code(201).send({ created: request.body.name }),
);

// A route of your own that ends in the backend. Fastify does the part the legacy app should
// not have to (here: a token check), then reply.scgi() forwards the request. The app reads the
// user from REMOTE_USER, the CGI variable a front server sets after authentication (RFC 3875
// §4.1.11). A client cannot forge it: its headers only ever become HTTP_* variables.
// scriptName '/admin' makes PATH_INFO '/env' for GET /admin/env.
function requireToken(request, reply, done) {
  if (request.headers['x-admin-token'] !== ADMIN_TOKEN) {
    reply.code(401).send({ error: 'x-admin-token required' });
    return;
  }
  done();
}
app.get('/admin/env', { onRequest: requireToken }, (_request, reply) =>
  reply.scgi({
    scriptName: '/admin',
    rewriteEnv: (env) => [...env, ['REMOTE_USER', 'admin']],
  }),
);

// Ctrl-C / SIGTERM: stop taking requests, stop the backend, remove the temp dir, exit 0.
let stopping = false;
async function stop(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`${signal}: stopping`);
  setTimeout(() => process.exit(1), 5000).unref(); // never hang on a stuck request
  await app.close();
  if (backend) await new Promise((resolve) => backend.close(resolve));
  if (dir) rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}
process.once('SIGINT', () => stop('SIGINT'));
process.once('SIGTERM', () => stop('SIGTERM'));

await app.listen({ port: PORT, host: HOST });
const base = `http://${HOST}:${app.server.address().port}`;
console.log(`backend: ${upstream}`);
if (dir) console.log(`tmp: ${dir}`);
console.log(`ready: ${base}/legacy/app/ ${base}/health ${base}/api/items ${base}/admin/env`);
