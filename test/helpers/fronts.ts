// Fastify and Express fronts for the end-to-end tests: each proxies a mount to an SCGI upstream.

import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { type ExpressScgiOptions, scgiProxy } from 'express-scgi';
import express4 from 'express4';
import Fastify, { type FastifyInstance } from 'fastify';
import fastifyScgi, { type FastifyScgiOptions } from 'fastify-scgi';

export interface Front {
  name: string;
  url: string;
  close(): Promise<void>;
}

export type FrontKind = 'fastify' | 'express' | 'express4';

export async function startFastifyFront(
  options: FastifyScgiOptions,
  setup?: (app: FastifyInstance) => void | Promise<void>,
): Promise<Front & { app: FastifyInstance }> {
  const app = Fastify({ logger: false });
  await app.register(fastifyScgi, options);
  await setup?.(app);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const port = (app.server.address() as AddressInfo).port;
  return { name: 'fastify', app, url: `http://127.0.0.1:${port}`, close: () => app.close() };
}

export async function startExpressFront(
  options: ExpressScgiOptions & { mount?: string },
  version: 4 | 5 = 5,
  setup?: (app: ReturnType<typeof express>) => void,
): Promise<Front> {
  const { mount = '', ...rest } = options;
  const app = (version === 4 ? express4 : express)() as ReturnType<typeof express>;
  setup?.(app);
  const mw = scgiProxy(rest);
  if (mount === '') app.use(mw);
  else app.use(mount, mw);
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  // As the README shows: CONNECT is answered from the first request on.
  mw.attach(server);
  const port = (server.address() as AddressInfo).port;
  return {
    name: version === 4 ? 'express4' : 'express',
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Starts a front of the given kind with the mount `prefix` in front of `upstream`. */
export function startFront(
  kind: FrontKind,
  upstream: string,
  prefix: string,
  extra: Record<string, unknown> = {},
): Promise<Front> {
  // A proxy front forwards every method (WebDAV and friends too): opt in with `methods: 'all'`.
  if (kind === 'fastify') return startFastifyFront({ upstream, prefix, methods: 'all', ...extra });
  return startExpressFront({ upstream, mount: prefix, ...extra }, kind === 'express4' ? 4 : 5);
}
