// Type tests for express-scgi (compiled by `npm run typecheck`, never run).
import express from 'express';
import scgiProxyDefault, { type ExpressScgiOptions, keepRawBody, scgiProxy } from 'express-scgi';
import type { ScgiProxy } from 'scgi-core';
import { expectTypeOf } from 'vitest';

expectTypeOf(scgiProxyDefault).toEqualTypeOf(scgiProxy);
const app = express();
const mw = scgiProxy({
  upstream: 'unix:/run/app.sock',
  respondOnError: true,
  maxBodySize: 10 * 1024 * 1024,
});
app.use('/app', mw);
expectTypeOf(mw.proxy).toEqualTypeOf<ScgiProxy>();
app.use(
  '/hooks',
  scgiProxy({
    upstream: '[::1]:9000',
    rewriteEnv: (env, req) => {
      expectTypeOf(req.originalUrl).toEqualTypeOf<string | undefined>();
      return env;
    },
    onResponse: (_req, res, response) => {
      res.setHeader('x-status', String(response.statusCode));
      return undefined;
    },
  }),
);
// @ts-expect-error upstream is required
const bad: ExpressScgiOptions = {};
void bad;
// @ts-expect-error respondOnError is a boolean
scgiProxy({ upstream: 'unix:/a', respondOnError: 'yes' });
// With `spawn`, the README's `await mw.ready()` and `mw.close()` are part of the type.
const spawned = scgiProxy({ spawn: { command: 'python3', args: ['app.py', '{socket}'] } });
expectTypeOf(spawned.ready()).toEqualTypeOf<Promise<void>>();
expectTypeOf(spawned.close(1000)).toEqualTypeOf<Promise<void>>();
expectTypeOf(spawned.stats().queued).toEqualTypeOf<number>();
// keepRawBody fits body-parser's `verify` option of every parser (the README's recipe).
app.use(express.json({ verify: keepRawBody }), express.urlencoded({ verify: keepRawBody }));
app.use(express.text({ verify: keepRawBody }), express.raw({ verify: keepRawBody }));
