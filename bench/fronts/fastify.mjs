/**
 * Front: Fastify 5 + fastify-scgi mounted at the root, proxying to `--upstream`
 * (`unix:/path` or `127.0.0.1:port`). Defaults everywhere, as a user would start.
 */
import Fastify from 'fastify';
import fastifyScgi from 'fastify-scgi';
import { announce, frontArgs } from './lib.mjs';

const { upstream, port } = frontArgs();
const app = Fastify({ logger: false });
await app.register(fastifyScgi, { upstream });
await app.listen({ port: Number(port), host: '127.0.0.1' });
announce(app.server.address().port, () => app.close());
