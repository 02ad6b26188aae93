/**
 * Fronts for the parsed-body tests (issue 12 §1): one Express app (4 or 5) with three mounts in
 * front of the same real backend, each with the body parsers in another place:
 *
 *   /keep   parsers before the proxy, with `verify: keepRawBody`     -> exact bytes
 *   /parsed parsers before the proxy, without it                     -> 500 SCGI_ERR_BODY_CONSUMED
 *   /first  the proxy before the parsers                             -> exact bytes
 *
 * The backend (examples/python/app.py) computes `{length, sha256}` of what it read at /sha256.
 */
import { createHash } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { keepRawBody, scgiProxy } from 'express-scgi';
import express4 from 'express4';
import { expect } from 'vitest';
import type { LogRecord } from './workers.js';
import { recordingLogger } from './workers.js';

export const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

export interface ParsedBodyFront {
  url: string;
  /** Warn records of the /parsed mount's logger. */
  warnings: LogRecord[];
  close(): Promise<void>;
}

type App = ReturnType<typeof express>;

export async function startParsedBodyFront(
  version: 4 | 5,
  upstream: string,
): Promise<ParsedBodyFront> {
  const e = (version === 4 ? express4 : express) as unknown as typeof express;
  const app = e() as App;
  const limit = '1mb';
  const keep = { verify: keepRawBody, limit };
  app.use(
    '/keep',
    e.json(keep),
    e.urlencoded({ extended: true, ...keep }),
    e.text(keep),
    scgiProxy({ upstream, respondOnError: true }),
  );
  const { logger, records } = recordingLogger();
  app.use(
    '/parsed',
    e.json({ limit }),
    e.urlencoded({ extended: true, limit }),
    e.text({ limit }),
    e.raw({ limit }),
    scgiProxy({ upstream, respondOnError: true, logger }),
  );
  app.use('/first', scgiProxy({ upstream, respondOnError: true }));
  app.use(e.json(), e.urlencoded({ extended: true }));
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    warnings: records,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface Outcome {
  status: number;
  /** The backend's `{length, sha256}`, or the proxy's `{statusCode, code, message}`. */
  body: Record<string, unknown>;
}

/** POSTs `body` with `contentType` (and `headers`) to `url`; parses the JSON answer. */
export async function post(
  url: string,
  body: Buffer | string | undefined,
  contentType: string,
  headers: Record<string, string> = {},
): Promise<Outcome> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': contentType, ...headers },
    body,
  });
  const text = await res.text();
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    parsed = { text };
  }
  return { status: res.status, body: parsed };
}

/** What the backend reports when it received exactly `sent`. */
export function exact(sent: Buffer | string): Outcome {
  const b = typeof sent === 'string' ? Buffer.from(sent, 'utf8') : sent;
  return { status: 200, body: { length: b.length, sha256: sha256(b) } };
}

/** The typed refusal: never other bytes. */
export const REFUSED = {
  status: 500,
  body: {
    statusCode: 500,
    code: 'SCGI_ERR_BODY_CONSUMED',
    message: expect.stringContaining('cannot be forwarded byte for byte'),
  },
};
