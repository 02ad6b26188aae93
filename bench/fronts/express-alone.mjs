/**
 * Front without a proxy: Express 5 answering GET /tiny and /64k itself, with the bytes, the
 * Content-Type and the Content-Length the uWSGI app gives (bench/lib/bodies.mjs), from Buffers
 * built at start. `res.set` + `res.end` rather than `res.send`, which would also hash every body
 * for an ETag the uWSGI app does not send. No backend: what the framework alone does under the
 * same load, the ceiling of any proxy built on it.
 */
import express from 'express';
import { bodyBuffer, CONTENT_TYPE } from '../lib/bodies.mjs';
import { announce, frontArgs } from './lib.mjs';

const { port } = frontArgs();
const app = express();
for (const path of ['/tiny', '/64k']) {
  const body = bodyBuffer(path);
  const headers = { 'content-type': CONTENT_TYPE, 'content-length': String(body.length) };
  app.get(path, (_req, res) => res.set(headers).end(body));
}
const server = await new Promise((resolve) => {
  const s = app.listen(Number(port), '127.0.0.1', () => resolve(s));
});
announce(server.address().port, () => {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(resolve));
});
