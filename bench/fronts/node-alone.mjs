/**
 * Front without a proxy and without a framework: Node's `http` answering GET /tiny and /64k
 * itself, with the bytes, Content-Type and Content-Length of the app (bench/lib/bodies.mjs), from
 * Buffers built at start. Beside fastify-alone.mjs it shows what Fastify itself costs per
 * request; beside node-floor.mjs what one SCGI socket lifecycle costs.
 */
import { createServer } from 'node:http';
import { bodyBuffer, CONTENT_TYPE } from '../lib/bodies.mjs';
import { announce, frontArgs } from './lib.mjs';

const { port } = frontArgs();
const bodies = new Map(['/tiny', '/64k'].map((path) => [path, bodyBuffer(path)]));
const server = createServer((req, res) => {
  const body = bodies.get(req.url);
  if (body === undefined) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': CONTENT_TYPE, 'content-length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 60_000;
await new Promise((resolve) => server.listen(Number(port), '127.0.0.1', resolve));
announce(server.address().port, () => {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(resolve));
});
