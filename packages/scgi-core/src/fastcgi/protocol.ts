/**
 * FastCGI as a wire protocol (engine/protocol.ts), the client side of FastCGI Specification 1.0:
 * one request per connection at a time, request id 1 (no multiplexing: PHP-FPM and flup do not
 * multiplex, and FCGI_MPXS_CONNS is 0 for both), role RESPONDER, FCGI_KEEP_CONN when the
 * connection is to be kept (engine option `keepAlive`).
 *
 * The request head is BEGIN_REQUEST, the PARAMS records and the empty PARAMS record, in one
 * buffer (plus the empty STDIN record when there is no body, so such a request is one write);
 * the body goes as STDIN records. The response is de-framed by FastcgiResponseDecoder: STDOUT to
 * the CGI response parser, STDERR to the logger, END_REQUEST ends the response (§5.5).
 */
import type { ResponseDecoder, ResponseSink, WireProtocol } from '../engine/protocol.js';
import { FastcgiOverloadedError, FastcgiStatusError, type ScgiError } from '../errors.js';
import type { EnvInput } from '../types.js';
import { ProtocolStatus } from './constants.js';
import { FastcgiResponseDecoder } from './decoder.js';
import {
  type EncodeRequestOptions,
  encodeRequest,
  encodeStdin,
  encodeStdinEnd,
} from './encoder.js';
import type { EndRequestBody } from './records.js';

/** The one request id: a connection carries one request at a time. */
const REQUEST_ID = 1;
const STDIN_END = encodeStdinEnd(REQUEST_ID);
const NO_BODY = new Uint8Array(0);
/** encodeRequest's options, by FCGI_KEEP_CONN (0 / 1): made once, not per request. */
const HEAD_OPTIONS: readonly EncodeRequestOptions[] = [{ keepConn: false }, { keepConn: true }];
const HEAD_OPTIONS_NO_BODY: readonly EncodeRequestOptions[] = [
  { keepConn: false, body: NO_BODY },
  { keepConn: true, body: NO_BODY },
];

/** The END_REQUEST outcome: null for REQUEST_COMPLETE, else the typed error (§5.5). */
function endStatusError(end: EndRequestBody): ScgiError | null {
  switch (end.protocolStatus) {
    case ProtocolStatus.REQUEST_COMPLETE:
      return null;
    case ProtocolStatus.OVERLOADED:
      // The application refused the request without running it: another backend may take it.
      return new FastcgiOverloadedError();
    case ProtocolStatus.CANT_MPX_CONN:
      return new FastcgiStatusError('CANT_MPX_CONN (it cannot take a second request)');
    case ProtocolStatus.UNKNOWN_ROLE:
      return new FastcgiStatusError('UNKNOWN_ROLE (it is not a RESPONDER)');
    default:
      return new FastcgiStatusError(`an undefined protocolStatus ${end.protocolStatus}`);
  }
}

/** One response: FastcgiResponseDecoder feeding the exchange's sink. */
class FastcgiDecoder implements ResponseDecoder {
  readonly #sink: ResponseSink;
  readonly #decoder: FastcgiResponseDecoder;
  #lent = false;
  #end: EndRequestBody | null = null;
  #failed = false;

  constructor(sink: ResponseSink) {
    this.#sink = sink;
    this.#decoder = new FastcgiResponseDecoder({
      onStdout: (content) => sink.data(content, this.#lent),
      onStderr: (content) => sink.stderr(content),
      onEnd: (end) => {
        this.#end = end;
      },
    });
  }

  push(chunk: Buffer, lent: boolean): void {
    if (this.#failed) return;
    this.#lent = lent;
    const endedBefore = this.#end !== null;
    try {
      this.#decoder.push(chunk);
    } catch (err) {
      this.#failed = true;
      this.#sink.error(err as ScgiError);
      return;
    }
    const end = this.#end;
    // Said once, after the whole chunk: a byte behind END_REQUEST in the same read makes the
    // push above throw instead, so `reusable` is only true for a connection left clean.
    if (end === null || endedBefore) return;
    const err = endStatusError(end);
    if (err !== null) {
      this.#failed = true;
      this.#sink.error(err);
    } else {
      this.#sink.complete(this.#decoder.reusable);
    }
  }
}

export const fastcgiProtocol: WireProtocol = Object.freeze({
  name: 'fastcgi',
  raw: false,
  keepsConnections: true,
  bodyEnd: STDIN_END,
  encodeRequestHead(env: EnvInput, bodyLength: number, keepConnection: boolean): Buffer {
    // No body: the empty STDIN record ends the request in the same buffer. (The encoder's own
    // fast path needs no hint: FastCGI frames by length, so it checks little anyway.)
    const options = bodyLength === 0 ? HEAD_OPTIONS_NO_BODY : HEAD_OPTIONS;
    return encodeRequest(REQUEST_ID, env, options[keepConnection ? 1 : 0]!);
  },
  frameBody(chunk: Buffer): Buffer[] {
    return encodeStdin(REQUEST_ID, chunk);
  },
  createDecoder(sink: ResponseSink): ResponseDecoder {
    return new FastcgiDecoder(sink);
  },
});
