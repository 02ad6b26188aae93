/**
 * How a proxied response goes out through Fastify's reply (index.ts): its head into `reply`, so
 * onSend hooks see the headers, and its body by `reply.send`.
 */
import type { FastifyReply } from 'fastify';
import type { ScgiResponse } from 'scgi-core';
import { afterBodySent, type HeadTarget, onEarlyBodyFailure } from 'scgi-core/adapter';

/** The reply as the core's head target: headers stay in `reply`, where onSend hooks see them. */
export function replyTarget(reply: FastifyReply): HeadTarget {
  return {
    raw: reply.raw,
    status(code, reason) {
      reply.code(code);
      if (reason !== undefined) reply.raw.statusMessage = reason;
    },
    header: (name, value) => reply.header(name, value),
    removeHeader: (name) => reply.removeHeader(name),
  };
}

/** A small body collected whole goes out as one Buffer; anything else streams. */
export function sendBody(reply: FastifyReply, response: ScgiResponse, recycle: boolean): void {
  const buf = response.bodyBuffer;
  // Fastify labels a Buffer without a type application/octet-stream; a CGI response without a
  // Content-Type must reach the client without one, so such a body takes the stream path.
  if (buf !== null && (buf.length === 0 || response.headers['content-type'] !== undefined)) {
    reply.send(buf.length === 0 ? undefined : buf);
    afterBodySent(reply.raw, response, recycle);
    return;
  }
  // A body that fails before its first byte reaches Fastify's error handler (its listener comes
  // after this one), without the backend's headers.
  onEarlyBodyFailure(replyTarget(reply), response);
  reply.send(response.body);
}
