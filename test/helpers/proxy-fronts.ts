/**
 * A Fastify or Express front mounting the proxy at `/app`, with the engine's `ScgiProxy` at hand
 * (stats, pool) for tests that look inside. Express answers failures itself (`respondOnError`).
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { scgiProxy } from 'express-scgi';
import Fastify from 'fastify';
import fastifyScgi from 'fastify-scgi';
import type { ScgiProxy, ScgiProxyOptions } from 'scgi-core';

export type ProxyFrontKind = 'fastify' | 'express';

export interface ProxyFront {
  readonly kind: ProxyFrontKind;
  readonly url: string;
  readonly port: number;
  readonly proxy: ScgiProxy;
  close(): Promise<void>;
}

export async function startProxyFront(
  kind: ProxyFrontKind,
  options: ScgiProxyOptions,
): Promise<ProxyFront> {
  if (kind === 'fastify') {
    const app = Fastify({ logger: false });
    await app.register(fastifyScgi, { ...options, prefix: '/app' });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    return {
      kind,
      url: `http://127.0.0.1:${port}`,
      port,
      proxy: app.scgiProxy,
      close: () => app.close(),
    };
  }
  const app = express();
  const mw = scgiProxy({ ...options, respondOnError: true });
  app.use('/app', mw);
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const port = (server.address() as AddressInfo).port;
  return {
    kind,
    url: `http://127.0.0.1:${port}`,
    port,
    proxy: mw.proxy,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
      await mw.proxy.close();
    },
  };
}
