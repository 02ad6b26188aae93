/**
 * Several Node instances share nothing and need nothing shared: a node:cluster primary forks two
 * workers, each a Fastify app with fastify-scgi listening on the same port (the primary hands
 * connections round-robin). Requests spread over both workers, every one is answered by the one
 * backend, and SIGTERM stops both workers cleanly (docs/production.md, "Several Node instances").
 */
import { afterEach, expect, it } from 'vitest';
import { send, startNodeBackend } from './helpers/pool.js';
import { type NodeChild, runNode, scriptDir, waitFor, writeScript } from './helpers/workers.js';

const PRIMARY = `
import cluster from 'node:cluster';
import Fastify from 'fastify';
import fastifyScgi from 'fastify-scgi';

const upstream = process.argv[2];
if (cluster.isPrimary) {
  const ports = [];
  const exits = [];
  for (let i = 0; i < 2; i++) {
    const worker = cluster.fork();
    worker.on('message', (m) => {
      ports.push(m.port);
      if (ports.length === 2) console.log(JSON.stringify({ ports }));
    });
    worker.on('exit', (code, signal) => {
      exits.push({ code, signal });
      if (exits.length === 2) {
        console.log('exits ' + JSON.stringify(exits));
        process.exit(0);
      }
    });
  }
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers)) w.send('stop');
  });
} else {
  const app = Fastify();
  app.addHook('onRequest', (req, reply, done) => {
    reply.raw.setHeader('x-worker', String(process.pid));
    done();
  });
  await app.register(fastifyScgi, { upstream, prefix: '/app' });
  await app.listen({ port: 0, host: '127.0.0.1' });
  process.send({ port: app.server.address().port });
  process.on('message', async (m) => {
    if (m !== 'stop') return;
    await app.close();
    process.exit(0);
  });
}
`;

let primary: NodeChild | null = null;
afterEach(async () => {
  if (primary !== null && primary.child.exitCode === null) {
    primary.child.kill('SIGKILL');
    await primary.exited;
  }
  primary = null;
});

it('two node:cluster workers with fastify-scgi on one port both serve, then stop cleanly', async () => {
  const backend = await startNodeBackend('only');
  try {
    const script = writeScript(scriptDir(), 'primary.mjs', PRIMARY);
    primary = runNode(script, [backend.address]);
    const { ports } = await primary.json<{ ports: number[] }>(20_000);
    // Port 0 in a cluster: the primary picks one port and every worker shares it.
    expect(ports[0]).toBe(ports[1]);
    const workers = new Map<string, number>();
    for (let i = 0; i < 20; i++) {
      const r = await send(`http://127.0.0.1:${ports[0]}/app/`, { agent: false });
      expect([r.status, r.headers['x-backend']]).toEqual([200, 'only']);
      const pid = String(r.headers['x-worker']);
      workers.set(pid, (workers.get(pid) ?? 0) + 1);
    }
    expect(workers.size).toBe(2);
    expect(backend.hits).toBe(20);
    primary.child.kill('SIGTERM');
    const exit = await primary.exited;
    await waitFor(() => primary!.lines.some((l) => l.startsWith('exits ')), 5000, 'worker exits');
    const exits = JSON.parse(primary.lines.find((l) => l.startsWith('exits '))!.slice(6));
    expect(exits).toEqual([
      { code: 0, signal: null },
      { code: 0, signal: null },
    ]);
    expect(exit).toEqual({ code: 0, signal: null });
  } finally {
    await backend.kill();
  }
});
