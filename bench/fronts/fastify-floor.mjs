/**
 * Front: the floor of any SCGI proxy built as a Fastify 5 route: the same per-request socket
 * exchange as node-floor (bench/lib/floor.mjs), answered through `reply.send`, as a Fastify plugin
 * must. With node-floor it splits the floor between Node's `http` and Fastify; against
 * @fastify/reply-from it is the most any SCGI plugin for Fastify can reach on this machine.
 */
import Fastify from 'fastify';
import { CONTENT_TYPE } from '../lib/bodies.mjs';
import { scgiFloor } from '../lib/floor.mjs';
import { announce, frontArgs } from './lib.mjs';

const { upstream, port } = frontArgs();
const exchange = scgiFloor(upstream);
const app = Fastify({ logger: false });
app.get('/*', (request, reply) => {
  exchange(request.raw.url, (body) => {
    if (body === null) return void reply.raw.destroy();
    reply.type(CONTENT_TYPE).send(body);
  });
  return reply;
});
await app.listen({ port: Number(port), host: '127.0.0.1' });
announce(app.server.address().port, () => app.close());
