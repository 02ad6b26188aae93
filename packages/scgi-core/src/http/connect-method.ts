/**
 * CONNECT asks for a tunnel to `host:port` (RFC 9110 §9.3.6). Node's HTTP server never hands it
 * to the request handler: it emits 'connect', and with no listener destroys the socket, so the
 * client gets no answer at all. A gateway to an app has no tunnel to give; nginx refuses it too
 * (405; 400 for the authority form, which its parser does not take: docs/nginx-differences.md).
 * This answers 405 on the whole server: the target is an authority, not a path, so no
 * mount can claim it, and a server with a listener of its own (an app that proxies CONNECT) is
 * left alone.
 */
import type { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { Http2ServerResponse } from 'node:http2';
import type { Duplex } from 'node:stream';
import { MethodNotAllowedError } from '../errors.js';

/**
 * How long the refused connection may stay open after the answer for the client to close it
 * first, reading (and dropping) what it sends meanwhile: closing with unread bytes makes the
 * kernel send a reset, which can destroy the answer before the client reads it (nginx's
 * `lingering_timeout` is 5 s for the same reason).
 */
const LINGER_MS = 5000;

/**
 * Answers CONNECT requests on `server` (`http`, `https` or `http2`) with 405
 * `SCGI_ERR_METHOD_NOT_ALLOWED` (and `Connection: close` on HTTP/1), unless another 'connect'
 * listener is there when one arrives. Idempotent:
 * one listener per server, whatever the number of mounts. Returns a function that removes it.
 */
export function refuseConnect(server: EventEmitter): () => void {
  if (!server.listeners('connect').includes(onConnect)) server.on('connect', onConnect);
  return () => server.removeListener('connect', onConnect);
}

function onConnect(
  this: EventEmitter,
  req: IncomingMessage,
  socket: Duplex | Http2ServerResponse,
): void {
  // Someone else answers CONNECT on this server (a forward proxy): the socket is theirs.
  if (this.listenerCount('connect') > 1) return;
  const err = new MethodNotAllowedError(req.method ?? 'CONNECT', 'this server is not a tunnel');
  const body = JSON.stringify({ statusCode: err.statusCode, code: err.code, message: err.message });
  if (socket instanceof Http2ServerResponse) {
    // HTTP/2 (RFC 9113 §8.5): Node's http2 server emits the request and its response; the
    // stream ends with the answer, the connection stays.
    socket.writeHead(err.statusCode, {
      allow: '',
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
    });
    socket.end(body);
    return;
  }
  // Node removed its own listeners when it gave the socket up: an error must not go unheard.
  socket.on('error', () => socket.destroy());
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  // The server's sockets allow half-open connections: the client's FIN ends it at once.
  socket.once('end', () => socket.destroy());
  socket.resume();
  // RFC 9110 §15.5.6: a 405 lists the allowed methods; a tunnel target allows none (§10.2.1:
  // an empty Allow).
  socket.end(
    'HTTP/1.1 405 Method Not Allowed\r\n' +
      `Date: ${new Date().toUTCString()}\r\n` +
      'Allow: \r\n' +
      'Content-Type: application/json; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
}

/**
 * The server a request came in on, or undefined. Node offers no public way from a request to its
 * server (Express neither): this reads `socket.server`, which Node's `net.Server` sets on every
 * connection it accepts (lib/net.js `onconnection`). test/node-internals.test.ts fails when that
 * changes; `attach(server)` is the public way and covers the same.
 */
export function serverOf(req: IncomingMessage): EventEmitter | undefined {
  return (req.socket as { server?: EventEmitter } | null)?.server;
}

const tied = new WeakMap<EventEmitter, WeakSet<object>>();

/**
 * Ties a proxy to the server it serves, once per pair: CONNECT gets its 405 there (it never
 * reaches a request handler) and the proxy closes with the server.
 */
export function tieToServer(
  proxy: { close(grace?: number): Promise<void> },
  server: EventEmitter,
): void {
  const proxies = tied.get(server) ?? new WeakSet<object>();
  tied.set(server, proxies);
  if (proxies.has(proxy)) return;
  proxies.add(proxy);
  server.once('close', () => void proxy.close(0));
  refuseConnect(server);
}
