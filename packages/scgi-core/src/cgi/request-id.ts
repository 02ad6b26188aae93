/**
 * The request id sent to the backend (`requestIdHeader`, see docs/production.md): the adapter's
 * (fastify-scgi: `request.id`), else the client's header, else a random UUID.
 */
import { randomUUID } from 'node:crypto';
import type { EnvPair } from '../types.js';
import type { CgiRequest } from './env.js';

/** The id for this request; undefined when `requestIdHeader` is off (`header` null). */
export function chooseRequestId(
  header: string | null,
  req: CgiRequest,
  adapterId: string | undefined,
): string | undefined {
  if (header === null) return undefined;
  if (adapterId !== undefined) return adapterId;
  const sent = req.headers[header];
  return typeof sent === 'string' && sent !== '' ? sent : randomUUID();
}

/**
 * The request id as `HTTP_<HEADER>`: in place of the client's (the adapter's id wins, so the
 * backend's logs match the proxy's), or at the end of the environment. A client's own header
 * is replaced only by the adapter's id, which is the same value otherwise.
 */
export function withRequestId(env: EnvPair[], header: string, id: string): EnvPair[] {
  const name = `HTTP_${header.toUpperCase().replaceAll('-', '_')}`;
  const i = env.findIndex(([n]) => n === name);
  if (i === -1) env.push([name, id]);
  else env[i] = [name, id];
  return env;
}
