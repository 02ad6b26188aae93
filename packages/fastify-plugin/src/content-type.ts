/**
 * Fastify answers 415 to a Content-Type that is not `type/subtype` (`foo`, empty) and 400 to a
 * QUERY without one, before the handler runs; behind a proxy mount that is the backend's call,
 * as with nginx. Until the handler runs, such a request shows Fastify a neutral type (the
 * plugin's '*' parser reads nothing); the CGI environment is built from `rawHeaders`, which keep
 * the original.
 */
import type { IncomingMessage } from 'node:http';
import type { preParsingHookHandler } from 'fastify';

const kContentType = Symbol('fastify-scgi.contentType');
type RawWithContentType = IncomingMessage & { [kContentType]?: string | null };
/** `type/subtype` as Fastify checks it before any route runs (lib/content-type.js). */
const MEDIA_TYPE = /^\s*[\w!#$%&'*+.^`|~-]+\/[\w!#$%&'*+.^`|~-]+\s*(?:;|$)/;

export const passContentType: preParsingHookHandler = (request, _reply, payload, done) => {
  const raw = request.raw as RawWithContentType;
  const type = raw.headers['content-type'];
  if (type === undefined ? raw.method === 'QUERY' : !MEDIA_TYPE.test(type)) {
    raw[kContentType] = type ?? null;
    raw.headers['content-type'] = 'application/octet-stream';
  }
  done(null, payload);
};

export function restoreContentType(request: IncomingMessage): void {
  const raw = request as RawWithContentType;
  const type = raw[kContentType];
  if (type === undefined) return;
  if (type === null) delete raw.headers['content-type'];
  else raw.headers['content-type'] = type;
  raw[kContentType] = undefined;
}
