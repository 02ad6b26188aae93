// A plain HTTP client for the engine tests: the whole answer, and whether the connection was cut
// before the response was complete (a truncated body must never look finished).
import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ScgiProxy } from '../src/index.js';

export interface Got {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** The connection closed (or errored) before the response was complete. */
  cut: boolean;
}

export function get(port: number, path = '/', method = 'GET', body?: Buffer): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ port, host: '127.0.0.1', path, method }, (res) => {
      const chunks: Buffer[] = [];
      let cut = false;
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('aborted', () => {
        cut = true;
      });
      res.on('error', () => {
        cut = true;
      });
      res.on('close', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks),
          cut: cut || !res.complete,
        }),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * A node:http front over `proxy` on 127.0.0.1; a failure answers its status with the code in
 * `x-error`. `close` stops the server, then the proxy.
 */
export async function serveProxy(
  proxy: ScgiProxy,
): Promise<{ port: number; close(): Promise<void> }> {
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    proxy.request(req, { res }).then(
      (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.body.pipe(res);
      },
      (err: { statusCode: number; code: string }) => {
        if (res.destroyed) return;
        res.writeHead(err.statusCode, { 'x-error': err.code });
        res.end();
      },
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await proxy.close(0);
    },
  };
}
