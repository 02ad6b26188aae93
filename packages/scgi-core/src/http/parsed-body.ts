/**
 * Bodies a framework body parser already read. The bytes are gone from the socket; the backend
 * must still get exactly what the client sent, or the request fails with a clear error.
 *
 * Re-encoding a parsed value is never exact, not even with a length check: `{"a":1e2}` and
 * `{"a":100}` have the same length, so do `a=%41+` and `a=A%20`; `JSON.parse` rounds big
 * integers, drops duplicate keys and whitespace; qs-style forms (`a[b]=1`) have no inverse. So
 * only raw bytes are forwarded: kept by the parser's `verify` hook (`keepRawBody`), a `rawBody`
 * another middleware set (the fastify-raw-body convention), or a Buffer body (`express.raw()`).
 * http-proxy-middleware's `fixRequestBody` re-encodes instead; that is what issue 12 reported.
 */
import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import { BodyConsumedError, type ScgiError } from '../errors.js';
import type { ScgiLogger } from '../upstream/spawn.js';
import { requestBodyLength } from './request-length.js';

type BodyRequest = IncomingMessage | Http2ServerRequest;

/** A request a body parser may have given the raw bytes to (see `keepRawBody`). */
export interface RawBodyRequest {
  rawBody?: unknown;
}

/**
 * For body-parser's `verify` option (`express.json({ verify: keepRawBody })`, also
 * `urlencoded`, `text`, `raw`): keeps the bytes the parser read as `req.rawBody`, so a proxy
 * mounted after the parser can forward them exactly. body-parser has already undone a
 * `Content-Encoding` by then: such bodies are still refused (`SCGI_ERR_BODY_CONSUMED`).
 */
export function keepRawBody(req: IncomingMessage, _res: unknown, buf: Buffer): void {
  (req as IncomingMessage & RawBodyRequest).rawBody = buf;
}

/**
 * True when something read the request stream before the proxy (a body parser, or any
 * middleware that listened to 'data'). Public stream state only: `readableDidRead` ('data'
 * was emitted, also a partial read) and `readableEnded`; body-parser 1's private `req._body`
 * is set by the same reads, so it adds nothing (issue 13).
 */
export function requestBodyConsumed(req: BodyRequest): boolean {
  return req.readableDidRead || req.readableEnded;
}

/** How to fix the setup, for express-scgi (the default) and fastify-scgi. */
export const BODY_PARSER_FIX = {
  express:
    'mount the proxy before the body parser, or pass `verify: keepRawBody` (from express-scgi) to the parser',
  fastify:
    'keep the raw bytes as `request.rawBody` (e.g. addContentTypeParser with parseAs "buffer"), or serve the path from the plugin prefix, which reads no body',
} as const;

const REENCODE_ONLY = 'mount the proxy before the body parser';

function mediaType(contentType: string | undefined): string {
  if (contentType === undefined) return '(none)';
  const semi = contentType.indexOf(';');
  return (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase() || '(none)';
}

/** The `charset` parameter of a Content-Type, lower case; undefined when there is none. */
function charsetOf(contentType: string | undefined): string | undefined {
  if (contentType === undefined) return undefined;
  const m = /;\s*charset\s*=\s*(?:"([^"]*)"|([^;\s]*))/i.exec(contentType);
  return m === null ? undefined : (m[1] ?? m[2] ?? '').toLowerCase();
}

function headerString(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

function asBuffer(value: unknown): Buffer | undefined {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.length);
  return undefined;
}

/**
 * The exact bytes to forward for a request whose body a parser already read.
 *
 * 1. No body on the wire (no Content-Length nor Transfer-Encoding, Content-Length 0, an HTTP/2
 *    stream ended with its headers): empty, whatever the parser left (body-parser's `{}`).
 * 2. A `Content-Encoding` other than identity: refused; body-parser inflates before `verify`
 *    and `req.body`, so no bytes it hands out are the client's.
 * 3. Raw bytes (`raw` as Buffer/Uint8Array, else `parsed` as one): sent as they are, when their
 *    length is the request's Content-Length (where there is one).
 * 4. A string (`raw`, else `parsed`: express.text(), fastify-raw-body's default): sent as UTF-8
 *    only when the charset is UTF-8 or absent, it holds no U+FFFD (the decoder's mark for bytes
 *    that were not UTF-8) and its UTF-8 length is the Content-Length (a BOM the decoder
 *    stripped, a Latin-1 decoding of non-ASCII bytes). Without a Content-Length: refused.
 * 5. Anything else (parsed JSON, forms, multipart...): refused.
 *
 * @param fix what the error message tells the user to change (`BODY_PARSER_FIX`)
 * @throws BodyConsumedError (`SCGI_ERR_BODY_CONSUMED`, 500: the server's setup, not the client)
 */
export function parsedBodyBytes(
  req: BodyRequest,
  parsed: unknown,
  raw: unknown,
  fix: string = BODY_PARSER_FIX.express,
): Buffer {
  const length = requestBodyLength(req);
  if (length === 0) return Buffer.alloc(0);
  const coding = headerString(req.headers['content-encoding'])?.trim().toLowerCase();
  if (coding !== undefined && coding !== '' && coding !== 'identity') {
    throw new BodyConsumedError(
      `the parser decoded Content-Encoding ${JSON.stringify(coding)}, so no bytes it kept are the client's; ${REENCODE_ONLY}`,
    );
  }
  const contentType = headerString(req.headers['content-type']);
  const bytes = asBuffer(raw) ?? asBuffer(parsed);
  if (bytes !== undefined) {
    if (length !== null && bytes.length !== length) {
      throw new BodyConsumedError(
        `the raw body kept has ${bytes.length} bytes but Content-Length is ${length}; ${REENCODE_ONLY}`,
      );
    }
    return bytes;
  }
  const text = typeof raw === 'string' ? raw : typeof parsed === 'string' ? parsed : undefined;
  if (text !== undefined) {
    const charset = charsetOf(contentType);
    let why: string | undefined;
    if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
      why = `decoded from charset ${JSON.stringify(charset)}`;
    } else if (text.includes('\uFFFD')) {
      why = 'holds U+FFFD (bytes that were not UTF-8)';
    } else if (length === null) {
      why = 'has no Content-Length to check it against';
    } else if (Buffer.byteLength(text, 'utf8') !== length) {
      why = `is ${Buffer.byteLength(text, 'utf8')} bytes as UTF-8 but Content-Length is ${length}`;
    }
    if (why !== undefined) {
      throw new BodyConsumedError(`the body was kept as text that ${why}; ${fix}`);
    }
    return Buffer.from(text, 'utf8');
  }
  throw new BodyConsumedError(`the parser left a parsed value (${mediaType(contentType)}); ${fix}`);
}

/** What an adapter needs to forward a request whose body may have been read already. */
export interface ParsedBodyGuardOptions {
  /** The proxy's logger (`ScgiProxy.options.logger`); the first refusal is logged at warn. */
  logger: ScgiLogger | null;
  /** Fix named in errors and the log line (`BODY_PARSER_FIX.express` / `.fastify`). */
  fix: string;
  /** Log message of the first refusal: the middleware order to change. */
  message: string;
}

/**
 * One per middleware or plugin instance: returns `undefined` when the request stream is
 * untouched (stream it as usual), the exact bytes when a parser read it (`parsedBodyBytes`),
 * or throws `SCGI_ERR_BODY_CONSUMED`, logging the first such refusal once at warn level.
 */
export function parsedBodyGuard(
  options: ParsedBodyGuardOptions,
): (req: BodyRequest, parsed: unknown, raw: unknown) => Buffer | undefined {
  const { logger, fix, message } = options;
  let warned = false;
  return (req, parsed, raw) => {
    if (!requestBodyConsumed(req)) return undefined;
    try {
      return parsedBodyBytes(req, parsed, raw, fix);
    } catch (err) {
      if (!warned && logger !== null) {
        warned = true;
        const e = err as ScgiError;
        logger.warn({ code: e.code, reason: e.message }, message);
      }
      throw err;
    }
  };
}
