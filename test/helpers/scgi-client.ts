/**
 * A tiny SCGI client, hand-written on purpose, for test/python-backend.test.ts and
 * test/uwsgi-backend.test.ts.
 *
 * It must NOT import scgi-core (nor anything that does, such as ./corpus.js or ./fronts.js):
 * those tests check the backends (examples/python/scgi_server.py, uWSGI) independently of our
 * own SCGI codec, so a bug in scgi-core cannot hide a bug in a backend, or the other way round.
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import { connectOptions } from './backends.js';

export type Pair = [name: string, value: string | Buffer];
const NUL = Buffer.from([0]);

/** `<len>:` + NAME\0value\0... + `,` — strings are latin-1, so every byte is expressible. */
export function netstringHead(pairs: Pair[]): Buffer {
  const payload = Buffer.concat(
    pairs.flatMap(([name, value]) => [
      Buffer.from(name, 'latin1'),
      NUL,
      typeof value === 'string' ? Buffer.from(value, 'latin1') : value,
      NUL,
    ]),
  );
  return Buffer.concat([Buffer.from(`${payload.length}:`), payload, Buffer.from(',')]);
}

/** A well-formed request environment: CONTENT_LENGTH first, SCGI=1; `extra` overrides by name. */
export function requestPairs(path: string | Buffer, bodyLength = 0, extra: Pair[] = []): Pair[] {
  const base: Pair[] = [
    ['CONTENT_LENGTH', String(bodyLength)],
    ['SCGI', '1'],
    ['REQUEST_METHOD', bodyLength ? 'POST' : 'GET'],
    ['SCRIPT_NAME', ''],
    ['PATH_INFO', path],
    ['QUERY_STRING', ''],
    ['SERVER_PROTOCOL', 'HTTP/1.1'],
    ['SERVER_NAME', 'localhost'],
    ['SERVER_PORT', '80'],
  ];
  const names = new Set(extra.map(([name]) => name));
  return [...base.filter(([name]) => !names.has(name)), ...extra];
}

export interface ScgiReply {
  raw: Buffer;
  /** The `Status` header's value ('' when there is none). */
  status: string;
  headers: [string, string][];
  body: Buffer;
  /** The socket error's code, if the connection failed (e.g. EPIPE, ECONNRESET). */
  error?: string;
}

/** Splits a raw CGI response into its head lines and body (no head: empty headers and body). */
export function parseReply(raw: Buffer, error?: string): ScgiReply {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) return { raw, status: '', headers: [], body: Buffer.alloc(0), error };
  const lines = raw.subarray(0, end).toString('latin1').split('\r\n');
  const headers = lines.map((line): [string, string] => {
    const colon = line.indexOf(':');
    return [line.slice(0, colon), line.slice(colon + 1).trim()];
  });
  const status = headers.find(([name]) => name === 'Status')?.[1] ?? '';
  return { raw, status, headers, body: raw.subarray(end + 4), error };
}

/** Sends head + body, reads until the server closes. */
export function scgi(
  address: string,
  head: Buffer,
  body: Buffer = Buffer.alloc(0),
): Promise<ScgiReply> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let error: string | undefined;
    const socket = net.connect(connectOptions(address));
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('SCGI request timed out'));
    }, 15_000);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      error = err.code;
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(parseReply(Buffer.concat(chunks), error));
    });
    socket.write(Buffer.concat([head, body]));
  });
}

/** A GET of `path` with no body; `extra` pairs override the defaults by name. */
export const get = (address: string, path: string, extra: Pair[] = []) =>
  scgi(address, netstringHead(requestPairs(path, 0, extra)));

/** Every value of header `name` (case-insensitive), in order. */
export const headerList = (reply: ScgiReply, name: string) =>
  reply.headers.filter(([n]) => n.toLowerCase() === name.toLowerCase()).map(([, v]) => v);

export const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** What /stream sends: byte i is i % 256. */
export const pattern = (length: number) => Buffer.from(Array.from({ length }, (_, i) => i & 255));
