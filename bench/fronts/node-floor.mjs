/**
 * Front: the floor of any SCGI proxy written on Node's `http` and `net` modules (bench/lib/floor.mjs:
 * one socket lifecycle per request, a fixed SCGI head, the body after the blank line), answered
 * 200 by Node's `http` alone. Not a proxy anyone should run: the cost of Node's own HTTP server
 * and one socket lifecycle per request, measured in the same run as the real fronts.
 */
import { createServer } from 'node:http';
import { scgiFloor } from '../lib/floor.mjs';
import { announce, frontArgs } from './lib.mjs';

const { upstream, port } = frontArgs();
const exchange = scgiFloor(upstream);

const server = createServer((req, res) => {
  exchange(req.url, (body) => {
    if (body === null) return void res.destroy();
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': body.length,
    });
    res.end(body);
  });
});
server.keepAliveTimeout = 60_000;
await new Promise((resolve) => server.listen(Number(port), '127.0.0.1', resolve));
announce(server.address().port, () => {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(resolve));
});
