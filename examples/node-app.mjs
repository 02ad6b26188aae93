// A Node SCGI app with the same routes as examples/python/app.py, served by scgi-core's
// createScgiServer. Used by the demo when python3 is missing, and by the tests as the
// "Node SCGI server" backend.
//
//   node examples/node-app.mjs unix:/tmp/app.sock     (or 127.0.0.1:9000)
import { createHash } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { createFastcgiServer, createScgiServer } from 'scgi-core';

/** Deterministic bytes: the pattern 0..255 repeated, from `offset`. */
function patternBytes(offset, length) {
  const out = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) out[i] = (offset + i) & 255;
  return out;
}

function json(res, status, value) {
  const body = Buffer.from(JSON.stringify(value));
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': body.length });
  res.end(body);
}

function envObject(req) {
  const env = {};
  for (const [k, v] of req.pairs) env[k] = v.toString('latin1');
  const pathInfo = req.pairs.find(([k]) => k === 'PATH_INFO');
  env.PATH_INFO_hex = pathInfo ? pathInfo[1].toString('hex') : '';
  env.__order = req.pairs.map(([k]) => k);
  return env;
}

/** The request handler: routes by PATH_INFO like the Python demo app. */
export function handler(req, res) {
  const path = req.env.PATH_INFO ?? '/';
  const query = new URLSearchParams(req.env.QUERY_STRING ?? '');
  if (path === '/' || path === '') {
    req.resume();
    const body = `<!doctype html><title>SCGI demo (Node)</title><h1>Hello from a Node SCGI app</h1><p>SCRIPT_NAME=${req.env.SCRIPT_NAME}</p>`;
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(body);
  } else if (path === '/env' || path.startsWith('/env/')) {
    req.resume();
    json(res, 200, envObject(req));
  } else if (path === '/echo') {
    // Full duplex: answer while the upload is still coming in.
    res.writeHead(200, {
      'Content-Type': req.env.CONTENT_TYPE || 'application/octet-stream',
      'Content-Length': req.contentLength,
    });
    req.pipe(res);
  } else if (path === '/sha256') {
    const hash = createHash('sha256');
    let length = 0;
    req.on('data', (c) => {
      hash.update(c);
      length += c.length;
    });
    req.on('end', () => json(res, 200, { length, sha256: hash.digest('hex') }));
  } else if (path === '/stream') {
    req.resume();
    const total = Number(query.get('bytes') ?? 1024);
    const chunk = Number(query.get('chunk') ?? 65536);
    const headers = { 'Content-Type': 'application/octet-stream' };
    if (query.get('cl') === '1') headers['Content-Length'] = total;
    res.writeHead(200, headers);
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        const n = Math.min(chunk, total - sent);
        const ok = res.write(patternBytes(sent, n));
        sent += n;
        if (!ok) return res.once('drain', pump);
      }
      res.end();
    };
    pump();
  } else if (path.startsWith('/status/')) {
    req.resume();
    const code = Number(path.slice(8));
    if (code === 204 || code === 304) {
      res.writeHead(code);
      res.end();
    } else {
      res.writeHead(code, { 'Content-Type': 'text/plain' });
      res.end(`status ${code}\n`);
    }
  } else if (path === '/head') {
    req.resume();
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 11 });
    res.end(req.method === 'HEAD' ? undefined : 'hello head\n');
  } else if (path === '/redirect') {
    req.resume();
    res.writeHead(302, { Location: '/target' });
    res.end();
  } else if (path === '/location-only') {
    // CGI: a Location header without Status means 302 (RFC 3875 §6.2.3/6.2.4).
    req.resume();
    res.socket.end('Location: https://example.org/elsewhere\r\n\r\n');
  } else if (path === '/cookies') {
    req.resume();
    res.writeHead(200, {
      'Content-Type': 'text/plain',
      'Set-Cookie': ['a=1; Path=/', 'b=2; HttpOnly', 'c=3'],
    });
    res.end('cookies\n');
  } else if (path === '/crash') {
    req.resume();
    const after = Number(query.get('after') ?? 1000);
    const headers = { 'Content-Type': 'application/octet-stream' };
    if (query.get('cl') === '1') headers['Content-Length'] = after * 2;
    res.writeHead(200, headers);
    // A crash. Over TCP the connection is reset (RST), as when a worker dies with unread data:
    // without a Content-Length a plain close could not be told from the end of the body.
    // A Unix socket has no reset, so there it is a plain close.
    const socket = res.socket;
    const die = () => (socket.remoteAddress ? socket.resetAndDestroy() : socket.destroy());
    res.write(patternBytes(0, after), () => setTimeout(die, 20));
  } else if (path === '/slow') {
    req.resume();
    const delay = Number(query.get('delay') ?? 1) * 1000;
    const timer = setTimeout(() => json(res, 200, { slept: delay }), delay);
    res.socket.once('close', () => clearTimeout(timer));
  } else if (path === '/unicode') {
    req.resume();
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end('héllo wörld ✓\n');
  } else {
    req.resume();
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found\n');
  }
}

/**
 * Starts the app on `address` (unix:/path, /path, host:port) speaking `protocol` ('scgi' or
 * 'fastcgi'); resolves with the net.Server.
 */
export function startNodeApp(address, protocol = 'scgi') {
  const server = protocol === 'fastcgi' ? createFastcgiServer(handler) : createScgiServer(handler);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = () => {
      server.removeListener('error', reject);
      resolve(server);
    };
    if (address.startsWith('unix:') || address.startsWith('/')) {
      const path = address.startsWith('unix:') ? address.slice(5) : address;
      try {
        unlinkSync(path);
      } catch {}
      server.listen(path, done);
    } else {
      const colon = address.lastIndexOf(':');
      server.listen(
        Number(address.slice(colon + 1)),
        address.slice(0, colon).replace(/^\[|\]$/g, ''),
        done,
      );
    }
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  // node node-app.mjs [address] [scgi|fastcgi]
  const address = process.argv[2] ?? '127.0.0.1:9000';
  const protocol = process.argv[3] === 'fastcgi' ? 'fastcgi' : 'scgi';
  const server = await startNodeApp(address, protocol);
  console.log(`listening on ${address} (${protocol})`);
  const stop = () => server.close(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
