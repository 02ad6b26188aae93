/**
 * A raw HTTP/1.1 client for exact-bytes requests, and an fd counter for leak tests.
 *
 * `fetch` and `http.request` normalise what we need to see: they refuse odd request lines,
 * merge headers and hide a body cut short. This client writes the bytes given and reports the
 * response as received, including whether the connection closed before the body was complete.
 */
import { readdirSync } from 'node:fs';
import net from 'node:net';

export interface RawResponse {
  statusCode: number;
  statusMessage: string;
  /** e.g. `HTTP/1.1` */
  httpVersion: string;
  /** Header lines in order, names as sent (several Set-Cookie stay apart). */
  headers: [name: string, value: string][];
  /** The body, de-chunked. */
  body: Buffer;
  /** Trailer lines of a chunked body. */
  trailers: [name: string, value: string][];
  /** The head as received, through the blank line. */
  rawHead: string;
  /** The connection closed (or was reset) before the response was complete. */
  closedEarly: boolean;
  /** Socket error code when the connection failed, e.g. `ECONNRESET`. */
  error?: string;
}

export interface RawRequestOptions {
  /** Give up (reject) after this long. @default 10000 */
  timeoutMs?: number;
}

/** Values of header `name` (case-insensitive), in order. */
export function headerValues(response: Pick<RawResponse, 'headers'>, name: string): string[] {
  const lower = name.toLowerCase();
  return response.headers.filter(([n]) => n.toLowerCase() === lower).map(([, v]) => v);
}

/** The single value of header `name`, or undefined; throws if it appears more than once. */
export function headerValue(
  response: Pick<RawResponse, 'headers'>,
  name: string,
): string | undefined {
  const values = headerValues(response, name);
  if (values.length > 1) throw new Error(`header ${name} appears ${values.length} times`);
  return values[0];
}

type Parsed = Omit<RawResponse, 'closedEarly' | 'error'>;

/** Bodyless by status (RFC 9110 6.4.1): 1xx, 204, 304. */
const noBody = (status: number) => status < 200 || status === 204 || status === 304;

function parseHeaderLines(lines: string[]): [string, string][] {
  return lines.map((line) => {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`bad header line ${JSON.stringify(line)}`);
    return [line.slice(0, colon), line.slice(colon + 1).trim()];
  });
}

/**
 * Tries to parse one complete response from `data`. Returns `done: false` with what is known
 * so far when more bytes are needed; `untilClose` means the body runs to the end of the stream.
 */
interface ParseResult {
  done: boolean;
  partial?: Partial<Parsed>;
  /** Once the head is known: how the end of the body will be recognised. */
  rule?: { kind: 'length'; end: number } | { kind: 'chunked' } | { kind: 'close' };
}

function parse(data: Buffer, isHead: boolean): ParseResult {
  let offset = 0;
  for (;;) {
    const end = data.indexOf('\r\n\r\n', offset);
    if (end < 0) return { done: false };
    const rawHead = data.subarray(offset, end + 4).toString('latin1');
    const [statusLine = '', ...lines] = rawHead.slice(0, -4).split('\r\n');
    const match = /^(HTTP\/\d\.\d) (\d{3})(?: (.*))?$/.exec(statusLine);
    if (!match) throw new Error(`bad status line ${JSON.stringify(statusLine)}`);
    const statusCode = Number(match[2]);
    const headers = parseHeaderLines(lines);
    offset = end + 4;
    if (statusCode >= 100 && statusCode < 200 && statusCode !== 101) continue; // interim
    const head = {
      statusCode,
      statusMessage: match[3] ?? '',
      httpVersion: match[1] ?? '',
      headers,
      rawHead,
      trailers: [] as [string, string][],
    };
    const rest = data.subarray(offset);
    if (isHead || noBody(statusCode))
      return { done: true, partial: { ...head, body: Buffer.alloc(0) } };
    const te = headerValues(head, 'transfer-encoding').join(',').toLowerCase();
    if (te.includes('chunked')) return { ...parseChunked(rest, head), rule: { kind: 'chunked' } };
    const cl = headerValues(head, 'content-length');
    if (cl.length > 0) {
      const length = Number(cl[0]);
      if (rest.length >= length) {
        return { done: true, partial: { ...head, body: rest.subarray(0, length) } };
      }
      return {
        done: false,
        partial: { ...head, body: rest },
        rule: { kind: 'length', end: offset + length },
      };
    }
    return { done: false, partial: { ...head, body: rest }, rule: { kind: 'close' } };
  }
}

function parseChunked(rest: Buffer, head: Omit<Parsed, 'body'>) {
  const pieces: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = rest.indexOf('\r\n', at);
    if (lineEnd < 0) break;
    const size = Number.parseInt(rest.subarray(at, lineEnd).toString('latin1').split(';')[0]!, 16);
    if (Number.isNaN(size)) throw new Error('bad chunk size line');
    if (size === 0) {
      const trailerEnd = rest.indexOf('\r\n\r\n', lineEnd);
      const emptyTrailer = rest.subarray(lineEnd, lineEnd + 4).toString('latin1') === '\r\n\r\n';
      if (!emptyTrailer && trailerEnd < 0) break;
      const trailerText = emptyTrailer
        ? ''
        : rest.subarray(lineEnd + 2, trailerEnd).toString('latin1');
      const trailers = trailerText ? parseHeaderLines(trailerText.split('\r\n')) : [];
      return { done: true, partial: { ...head, trailers, body: Buffer.concat(pieces) } };
    }
    if (rest.length < lineEnd + 2 + size + 2) break;
    pieces.push(rest.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
  return { done: false, partial: { ...head, body: Buffer.concat(pieces) } };
}

/**
 * Sends `request` (a string is encoded as latin-1, so `\xe9` goes out as the byte E9) to the
 * host and port of `url` and reads one response. Resolves when the response is complete (the
 * socket is then destroyed) or the server closes; rejects on timeout.
 */
export function rawRequest(
  url: string | URL,
  request: string | Buffer,
  options: RawRequestOptions = {},
): Promise<RawResponse> {
  const { hostname, port } = new URL(url);
  const bytes = typeof request === 'string' ? Buffer.from(request, 'latin1') : request;
  const isHead = /^HEAD /.test(bytes.subarray(0, 5).toString('latin1'));
  const timeoutMs = options.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let tail = Buffer.alloc(0); // last bytes received, to spot the end of a chunked body
    let rule: ParseResult['rule'];
    let error: string | undefined;
    let settled = false;
    const socket = net.connect({ host: hostname.replace(/^\[|\]$/g, ''), port: Number(port) });
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      fn();
    };
    const empty = (): RawResponse => ({
      statusCode: 0,
      statusMessage: '',
      httpVersion: '',
      headers: [],
      body: Buffer.alloc(0),
      trailers: [],
      rawHead: '',
      closedEarly: true,
    });
    const attempt = (closed: boolean) => {
      // Re-parse only when the response may be complete: keeps a large body O(n).
      if (!closed && rule?.kind === 'length' && received < rule.end) return;
      if (!closed && rule?.kind === 'chunked' && !tail.toString('latin1').endsWith('\r\n\r\n'))
        return;
      if (!closed && rule?.kind === 'close') return;
      let result: ParseResult;
      try {
        result = parse(Buffer.concat(chunks), isHead);
      } catch (cause) {
        settle(() => reject(cause));
        return;
      }
      rule = result.rule;
      if (result.done) {
        settle(() => resolve({ ...empty(), ...result.partial, closedEarly: false }));
      } else if (closed) {
        const closedEarly = rule?.kind !== 'close' || error !== undefined;
        settle(() => resolve({ ...empty(), ...result.partial, closedEarly, error }));
      }
    };
    const timer = setTimeout(() => {
      const got = Buffer.concat(chunks).subarray(0, 200).toString('latin1');
      settle(() =>
        reject(new Error(`rawRequest timed out after ${timeoutMs} ms; got ${JSON.stringify(got)}`)),
      );
    }, timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
      tail = Buffer.concat([tail, chunk]).subarray(-4);
      attempt(false);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      error = err.code ?? err.message;
    });
    socket.on('close', () => attempt(true));
    socket.write(bytes);
  });
}

/** Number of open file descriptors of `pid` (Linux /proc). */
export function countOpenFds(pid: number = process.pid): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}
