/**
 * Front: Express 5 + http-proxy-middleware (the Express counterpart of @fastify/reply-from),
 * proxying every path over HTTP/1.1 keep-alive to `--target`: the same app as express-scgi,
 * reached over HTTP. A keep-alive agent (http-proxy-middleware opens a connection per request
 * by default) sized for the load generator's connections; bodies stream through unparsed.
 */
import { Agent } from 'node:http';
import express from 'express';
import { createProxyMiddleware } from 'http-proxy-middleware';
import { announce, frontArgs } from './lib.mjs';

const { target, port } = frontArgs();
const app = express();
app.use(
  createProxyMiddleware({
    target,
    agent: new Agent({ keepAlive: true, maxSockets: 64 }),
    changeOrigin: false,
    xfwd: false,
  }),
);
const server = app.listen(Number(port), '127.0.0.1', () => {
  announce(server.address().port, () => new Promise((r) => server.close(r)));
});
