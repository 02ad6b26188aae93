/**
 * Front: Fastify 5 + fastify-scgi mounted at the root, proxying to `--upstream`
 * (`unix:/path`, `127.0.0.1:port`, or `fastcgi://unix:/path`). Defaults everywhere, as a user
 * would start, except what the FastCGI fronts set (proxyOptions in ./lib.mjs).
 */
import Fastify from 'fastify';
import fastifyScgi from 'fastify-scgi';
import { announce, frontArgs, proxyOptions } from './lib.mjs';

const args = frontArgs();
const app = Fastify({ logger: false });
await app.register(fastifyScgi, proxyOptions(args));
await app.listen({ port: Number(args.port), host: '127.0.0.1' });
announce(app.server.address().port, () => app.close());
