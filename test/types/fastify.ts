// Type tests for fastify-scgi (compiled by `npm run typecheck`, never run).
import Fastify, { type FastifyReply } from 'fastify';
import fastifyScgi, {
  type FastifyScgiOptions,
  fastifyScgi as named,
  type ReplyScgiOptions,
} from 'fastify-scgi';
import type { ScgiProxy, ScgiResponse } from 'scgi-core';
import { expectTypeOf } from 'vitest';

const app = Fastify();
expectTypeOf(named).toEqualTypeOf(fastifyScgi);

app.register(fastifyScgi, { upstream: 'unix:/run/app.sock', prefix: '/app' });
app.register(fastifyScgi, {
  upstream: '127.0.0.1:9000',
  connectTimeout: 1000,
  headersTimeout: 0,
  trustProxy: 'loopback',
  params: { APP_ENV: 'test' },
  rewriteEnv: (env, request) => {
    expectTypeOf(request.url).toBeString();
    return [...env, ['X_REQUEST_ID', String(request.id)]];
  },
  onResponse: (_request, reply, response) => {
    expectTypeOf(response).toEqualTypeOf<ScgiResponse>();
    expectTypeOf(response.statusCode).toBeNumber();
    reply.header('x-upstream', response.upstream);
  },
  onError: (reply, { error }) => {
    expectTypeOf(error.code).toBeString();
    expectTypeOf(error.statusCode).toBeNumber();
    reply.code(error.statusCode).send({ code: error.code });
  },
});

// @ts-expect-error upstream is required
const missing: FastifyScgiOptions = { prefix: '/app' };
void missing;
// @ts-expect-error connectTimeout is a number
app.register(fastifyScgi, { upstream: 'unix:/a', connectTimeout: '1s' });

// Declaration merging: reply.scgi() and app.scgiProxy.
app.get('/custom', (_req, reply) => {
  const r = reply.scgi({ scriptName: '/custom' });
  expectTypeOf(r).toEqualTypeOf<FastifyReply>();
  return r;
});
expectTypeOf(app.scgiProxy).toEqualTypeOf<ScgiProxy>();
expectTypeOf<ReplyScgiOptions['scriptName']>().toEqualTypeOf<string | undefined>();
