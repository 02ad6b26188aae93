// A plain HTTP client for the engine tests: the whole answer, and whether the connection was cut
// before the response was complete (a truncated body must never look finished).
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';

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
