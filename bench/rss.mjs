// Memory bound of the streaming paths: peak RSS of a fastify-scgi front (its own process) while
// 1 GiB goes up with a Content-Length, 1 GiB goes up chunked (spooled to a temp file, since SCGI
// needs CONTENT_LENGTH first) and 1 GiB comes down, against the Node SCGI app on a Unix socket.
// The target: growth < 64 MiB each.   node bench/rss.mjs   (needs `npx tsc -b` first)
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dir = mkdtempSync(join(tmpdir(), 'rss-'));
const sock = join(dir, 'app.sock');
const root = new URL('..', import.meta.url).pathname;
const backend = spawn(process.execPath, [join(root, 'examples/node-app.mjs'), `unix:${sock}`], {
  stdio: 'ignore',
});
const front = spawn(
  process.execPath,
  [
    '-e',
    `
  const Fastify = (await import('fastify')).default; const s = (await import('fastify-scgi')).default;
  const app = Fastify(); await app.register(s, { upstream: 'unix:${sock}', tmpDir: '${dir}' });
  await app.listen({ port: 0, host: '127.0.0.1' }); console.log(app.server.address().port);`,
  ],
  { stdio: ['ignore', 'pipe', 'inherit'], cwd: root },
);
front.stdout.setEncoding('utf8');
const port = await new Promise((r) => front.stdout.once('data', (d) => r(Number(d.trim()))));
await new Promise((r) => setTimeout(r, 500));
const kb = () =>
  Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${front.pid}/status`, 'utf8'))[1]);
const rssNow = () =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${front.pid}/status`, 'utf8'))[1]);
const GiB = 1024 ** 3;
const chunk = Buffer.alloc(1024 * 1024, 1);
function upload(chunked) {
  return new Promise((resolve, reject) => {
    const headers = chunked ? { 'transfer-encoding': 'chunked' } : { 'content-length': GiB };
    const req = request(
      { port, host: '127.0.0.1', method: 'POST', path: '/sha256', headers },
      (res) => {
        let t = '';
        res.on('data', (c) => {
          t += c;
        });
        res.on('end', () => resolve(t));
      },
    );
    req.on('error', reject);
    let sent = 0;
    const pump = () => {
      while (sent < GiB) {
        sent += chunk.length;
        if (!req.write(chunk)) return req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}
function download() {
  return new Promise((resolve, reject) => {
    request({ port, host: '127.0.0.1', path: `/stream?bytes=${GiB}&cl=1` }, (res) => {
      let n = 0;
      res.on('data', (c) => {
        n += c.length;
      });
      res.on('end', () => resolve(n));
    })
      .on('error', reject)
      .end();
  });
}
const base = rssNow();
for (const [name, fn] of [
  ['upload CL', () => upload(false)],
  ['upload chunked', () => upload(true)],
  ['download', download],
]) {
  const t0 = Date.now();
  const r = await fn();
  const peak = kb();
  console.log(
    `${name}: ${String(r).slice(0, 40)} in ${((Date.now() - t0) / 1000).toFixed(1)} s; front peak RSS ${Math.round(peak / 1024)} MiB, growth ${Math.round((peak - base) / 1024)} MiB over ${Math.round(base / 1024)} MiB`,
  );
}
front.kill();
backend.kill();
rmSync(dir, { recursive: true, force: true });
process.exit(0);
