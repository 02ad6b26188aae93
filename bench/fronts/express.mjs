/**
 * Front: Express 5 + express-scgi mounted at the root, proxying to `--upstream` (SCGI or
 * `fastcgi://`). Defaults everywhere (no body parser: the body streams through), except what the
 * command line sets (proxyOptions in ./lib.mjs).
 */
import express from 'express';
import { scgiProxy } from 'express-scgi';
import { announce, frontArgs, proxyOptions } from './lib.mjs';

const args = frontArgs();
const app = express();
app.use(scgiProxy(proxyOptions(args)));
const server = await new Promise((resolve) => {
  const s = app.listen(Number(args.port), '127.0.0.1', () => resolve(s));
});
announce(server.address().port, () => {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(resolve));
});
