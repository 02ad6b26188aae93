/**
 * Front: Fastify 5 + @fastify/reply-from, proxying every path over HTTP/1.1 to `--target`
 * (uWSGI's --http11-socket). undici keeps connections alive (pipelining 1, reply-from's
 * defaults); request bodies stream through unparsed, as fastify-scgi does.
 */
import replyFrom from '@fastify/reply-from';
import Fastify from 'fastify';
import { announce, frontArgs } from './lib.mjs';

const { target, port } = frontArgs();
const app = Fastify({ logger: false });
// The payload stream itself becomes request.body: reply-from pipes it to the upstream.
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
await app.register(replyFrom, { base: target });
app.all('/*', (request, reply) => reply.from(request.url));
await app.listen({ port: Number(port), host: '127.0.0.1' });
announce(app.server.address().port, () => app.close());
