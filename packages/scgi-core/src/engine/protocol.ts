/**
 * The seam between the engine and a wire protocol (SCGI today, FastCGI beside it), in the shape of
 * undici's one client with one module per wire protocol (`client-h1.js`, `client-h2.js`).
 *
 * The exchange (engine/exchange.ts) owns what every transport shares: connecting, timers, socket events,
 * failures, the CGI response parser and the release to the pool. A protocol owns only the bytes:
 * how the request head and body are framed, how the response is de-framed into the CGI response
 * bytes, and whether the connection may carry another request afterwards.
 */
import type { ScgiError } from '../errors.js';
import type { EnvInput } from '../types.js';

/** One wire protocol. Instances are stateless and shared; per-request state lives in decoders. */
export interface WireProtocol {
  /** `'scgi'` or `'fastcgi'`: the scheme of its addresses, and the tag in logs. */
  readonly name: string;
  /**
   * The bytes that open a request on a fresh or kept connection, from the CGI environment (which
   * holds CONTENT_LENGTH): SCGI's header netstring; FastCGI's BEGIN_REQUEST and PARAMS records.
   * With `bodyLength` 0 it also ends the request (FastCGI's empty STDIN record), so a request
   * without a body is one write.
   * `built`: `env` is the array `buildCgiEnv` made (cgi/env.ts), changed by nothing but the request
   * id, so its rules (CONTENT_LENGTH first, unique names, no NUL) already hold and need no check.
   * @throws a typed `ScgiError` for an environment the protocol cannot carry.
   */
  encodeRequestHead(
    env: EnvInput,
    bodyLength: number,
    keepConnection: boolean,
    built?: boolean,
  ): Buffer;
  /**
   * Request body bytes go on the wire as they are and the response comes back as the raw CGI
   * response up to the close (SCGI). The exchange then takes its fast paths: the body is written
   * without copies, and the response is read straight into the buffers it picks.
   */
  readonly raw: boolean;
  /**
   * A connection may carry another request after a complete response (FastCGI with
   * FCGI_KEEP_CONN): the engine keeps idle connections per backend (upstream/keep-alive.ts).
   */
  readonly keepsConnections: boolean;
  /** Frames one chunk of the request body (not called for raw protocols). */
  frameBody(chunk: Buffer): Buffer[];
  /** Bytes that end a non-empty request body (FastCGI's empty STDIN record); null when none. */
  readonly bodyEnd: Buffer | null;
  /** A decoder for one response (not called for raw protocols). */
  createDecoder(sink: ResponseSink): ResponseDecoder;
}

/** Where a decoder delivers what it takes out of the response frames. */
export interface ResponseSink {
  /**
   * CGI response bytes (FastCGI STDOUT content). `lent` bytes are valid only until this returns:
   * whatever is kept of them is copied.
   */
  data(chunk: Buffer, lent: boolean): void;
  /** The application's diagnostic output (FastCGI STDERR): for the logger, never the client. */
  stderr(chunk: Buffer): void;
  /**
   * The backend declared the response complete (FastCGI END_REQUEST). `reusable`: the
   * connection is in a clean state and the backend keeps it open for another request.
   */
  complete(reusable: boolean): void;
  /** The backend broke the protocol: a typed error (502); the connection is not used again. */
  error(err: ScgiError): void;
}

export interface ResponseDecoder {
  /** Feeds bytes read from the backend, split anywhere. `lent` as in `ResponseSink.data`. */
  push(chunk: Buffer, lent: boolean): void;
}
