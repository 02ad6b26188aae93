/**
 * Front: Express 5 + express-scgi mounted at the root, proxying to `--upstream`. Defaults
 * everywhere (no body parser: the body streams through).
 */
import express from 'express';
import { scgiProxy } from 'express-scgi';
import { announce, frontArgs } from './lib.mjs';

const { upstream, port } = frontArgs();
const app = express();
app.use(scgiProxy({ upstream }));
const server = await new Promise((resolve) => {
  const s = app.listen(Number(port), '127.0.0.1', () => resolve(s));
});
announce(server.address().port, () => {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(resolve));
});
