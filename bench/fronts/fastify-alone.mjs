/**
 * Front without a proxy: Fastify 5 answering GET /tiny and /64k itself, with the bytes, the
 * Content-Type and the Content-Length the uWSGI app gives (bench/lib/bodies.mjs), from Buffers
 * built at start. No backend: what the framework alone does under the same load, the ceiling
 * of any proxy built on it.
 */
import Fastify from 'fastify';
import { bodyBuffer, CONTENT_TYPE } from '../lib/bodies.mjs';
import { announce, frontArgs } from './lib.mjs';

const { port } = frontArgs();
const app = Fastify({ logger: false });
for (const path of ['/tiny', '/64k']) {
  const body = bodyBuffer(path);
  // Fastify sets Content-Length for a Buffer payload.
  app.get(path, (_request, reply) => reply.type(CONTENT_TYPE).send(body));
}
await app.listen({ port: Number(port), host: '127.0.0.1' });
announce(app.server.address().port, () => app.close());
