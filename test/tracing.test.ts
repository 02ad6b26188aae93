/**
 * The `scgi-core:request` TracingChannel, used the way an OpenTelemetry instrumentation does:
 * `start.bindStore` makes the request's span the active context, spans get their parent from it,
 * and a span ends at `asyncEnd`, which must come only once the response body is over. Several
 * requests run at once, so a context mixed up between them shows as a wrong parent.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import diagnosticsChannel from 'node:diagnostics_channel';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import { createScgiServer, type RequestTraceContext } from 'scgi-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from './helpers/corpus.js';
import { type Front, startFastifyFront } from './helpers/fronts.js';
import { rawRequest } from './helpers/http.js';

interface Span {
  name: string;
  parent: Span | undefined;
  children: Span[];
  events: string[];
  url?: string;
  ctx?: RequestTraceContext;
  /** `scgi-core:request:upstream` id of an attempt span. */
  attemptOf?: number;
}

const als = new AsyncLocalStorage<Span>();
const scgiSpans = new Map<RequestTraceContext, Span>();
const attempts: Span[] = [];

function newSpan(name: string, parent: Span | undefined): Span {
  const span: Span = { name, parent, children: [], events: [] };
  parent?.children.push(span);
  return span;
}

const tracing = diagnosticsChannel.tracingChannel<RequestTraceContext, RequestTraceContext>(
  'scgi-core:request',
);
const record = (event: string) => (ctx: RequestTraceContext) => {
  scgiSpans.get(ctx)?.events.push(event);
};
const handlers = {
  start: record('start'),
  end: record('end'),
  asyncStart: record('asyncStart'),
  asyncEnd: record('asyncEnd'),
  error: record('error'),
};
const onUpstream = (msg: unknown) => {
  const span = newSpan('attempt', als.getStore());
  span.attemptOf = (msg as { id: number }).id;
  attempts.push(span);
};

let backend: NetServer;
let upstream: string;
/** Responses whose last chunk waits for the test. */
const held: Socket[] = [];
let front: Front;
let dead: Front;

beforeAll(async () => {
  tracing.start.bindStore(als, (ctx) => {
    const span = newSpan('scgi.request', als.getStore());
    span.ctx = ctx;
    scgiSpans.set(ctx, span);
    return span;
  });
  tracing.subscribe(handlers);
  diagnosticsChannel.subscribe('scgi-core:request:upstream', onUpstream);

  // A streamed body (no Content-Length) whose end the test releases.
  backend = createScgiServer((req) => {
    req.socket.write(
      `Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst ${req.env.PATH_INFO};`,
    );
    held.push(req.socket);
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  upstream = `127.0.0.1:${(backend.address() as AddressInfo).port}`;

  const withRoute = (target: string, retryDelay?: number) =>
    startFastifyFront({ upstream: target, routes: false, retryDelay }, (app) => {
      // The app's own span for each HTTP request: the parent the proxy's span must get.
      app.get('/t/*', (request, reply) => {
        const span = newSpan('http', undefined);
        span.url = request.url;
        return als.run(span, () => reply.scgi());
      });
    });
  front = await withRoute(upstream);
  // A port nothing listens on: the connect fails.
  const gone = createScgiServer(() => {});
  await new Promise<void>((r) => gone.listen(0, '127.0.0.1', r));
  const port = (gone.address() as AddressInfo).port;
  await new Promise<void>((r) => gone.close(() => r()));
  // No waits for a restart (retryDelay): one attempt, answered at once.
  dead = await withRoute(`127.0.0.1:${port}`, 0);
});

afterAll(async () => {
  tracing.unsubscribe(handlers);
  tracing.start.unbindStore(als);
  diagnosticsChannel.unsubscribe('scgi-core:request:upstream', onUpstream);
  await front.close();
  await dead.close();
  await new Promise<void>((r) => backend.close(() => r()));
});

const get = (f: Front, path: string) =>
  rawRequest(f.url, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);

describe('scgi-core:request tracing channel', () => {
  it('builds one span per request under the right parent, ended with the body', async () => {
    const N = 6;
    const paths = Array.from({ length: N }, (_, i) => `/t/${i}`);
    const responses = Promise.all(paths.map((p) => get(front, p)));
    // Every head is out, every body still open: asyncStart seen, asyncEnd not yet.
    expect(await eventually(() => held.length === N)).toBe(true);
    const spans = () => [...scgiSpans.values()].filter((s) => s.parent?.url?.startsWith('/t/'));
    expect(
      await eventually(() => spans().filter((s) => s.events.includes('asyncStart')).length === N),
    ).toBe(true);
    for (const s of spans()) expect(s.events).toEqual(['start', 'end', 'asyncStart']);

    for (const socket of held.splice(0)) socket.end('last');
    const done = await responses;
    for (const [i, res] of done.entries()) {
      expect(res.statusCode).toBe(200);
      expect(res.body.toString()).toBe(`first /t/${i};last`);
    }
    expect(await eventually(() => spans().every((s) => s.events.includes('asyncEnd')))).toBe(true);

    const tree = spans();
    expect(tree).toHaveLength(N);
    for (const span of tree) {
      expect(span.events).toEqual(['start', 'end', 'asyncStart', 'asyncEnd']);
      const ctx = span.ctx!;
      // Parent: the HTTP span of the same request, not of another one running at the same time.
      expect(span.parent!.name).toBe('http');
      expect(span.parent!.url).toBe(ctx.request.url);
      expect(span.parent!.children).toEqual([span]);
      expect(ctx.statusCode).toBe(200);
      expect(ctx.upstream).toBe(upstream);
      // Child: its backend attempt, found through the active context inside the engine.
      expect(span.children).toHaveLength(1);
      expect(span.children[0]!.name).toBe('attempt');
      expect(span.children[0]!.attemptOf).toBe(ctx.id);
    }
    expect(new Set(tree.map((s) => s.ctx!.id)).size).toBe(N);
  });

  it('a failure before the head: error, then asyncStart and asyncEnd at once', async () => {
    const res = await get(dead, '/t/dead');
    expect(res.statusCode).toBe(502);
    const span = [...scgiSpans.values()].find((s) => s.parent?.url === '/t/dead')!;
    expect(span.events).toEqual(['start', 'end', 'error', 'asyncStart', 'asyncEnd']);
    expect((span.ctx!.error as { code: string }).code).toBe('SCGI_ERR_CONNECT');
    expect(span.ctx!.statusCode).toBe(502);
    expect(span.children.map((c) => c.name)).toEqual(['attempt']);
  });
});
