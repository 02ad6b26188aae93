/** What the request headers tell about the body's length (shared by the engine and http/parsed-body.ts). */
import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';

const DIGITS = /^[0-9]+$/;

/** The request body, as far as the headers tell: a known length, none (0), or unknown (null). */
export function requestBodyLength(req: IncomingMessage | Http2ServerRequest): number | null {
  const cl = req.headers['content-length'];
  if (cl !== undefined) {
    // Node's HTTP/1 parser has already rejected malformed or conflicting values.
    if (typeof cl === 'string' && DIGITS.test(cl)) return Number(cl);
    return null;
  }
  if (req.httpVersionMajor >= 2) {
    // HTTP/2: END_STREAM on the HEADERS frame means no body at all.
    const stream = (req as Http2ServerRequest).stream;
    if (stream?.endAfterHeaders) return 0;
    return null;
  }
  // HTTP/1.1 (RFC 9112 §6.3): no Content-Length and no Transfer-Encoding means no body.
  return req.headers['transfer-encoding'] === undefined ? 0 : null;
}
