/**
 * Re-encoding a body that a framework body parser already read (as http-proxy-middleware's
 * `fixRequestBody` does): the bytes are gone from the socket, so the parsed value is turned back
 * into bytes and CONTENT_LENGTH is set from the new length. Never a hang, never a wrong length.
 */
import { stringify } from 'node:querystring';
import { BodyConsumedError } from './errors.js';

function mediaType(contentType: string | undefined): string {
  if (contentType === undefined) return '';
  const semi = contentType.indexOf(';');
  return (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
}

/**
 * Bytes for a parsed body: a Buffer or string as is (UTF-8), JSON types as `JSON.stringify`,
 * `application/x-www-form-urlencoded` with `querystring.stringify`.
 * @throws BodyConsumedError (`SCGI_ERR_BODY_CONSUMED`, 500) for other types (multipart...).
 */
export function encodeParsedBody(body: unknown, contentType: string | undefined): Buffer {
  if (Buffer.isBuffer(body)) return body;
  if (body instanceof Uint8Array) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  const type = mediaType(contentType);
  if (type === 'application/json' || type.endsWith('+json')) {
    return Buffer.from(JSON.stringify(body), 'utf8');
  }
  if (type === 'application/x-www-form-urlencoded' && body !== null && typeof body === 'object') {
    return Buffer.from(stringify(body as Record<string, string>), 'utf8');
  }
  throw new BodyConsumedError(type === '' ? '(none)' : type);
}
