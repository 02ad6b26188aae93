/**
 * SCGI as a wire protocol (engine/protocol.ts): the request is the header netstring then the raw body,
 * the response is the raw CGI response up to the close, and a connection carries one request
 * (the SCGI protocol has no keep-alive: python.ca/scgi/protocol.txt).
 */
import type { ResponseDecoder, ResponseSink, WireProtocol } from '../engine/protocol.js';
import type { EnvInput, EnvPair } from '../types.js';
import { encodeBuiltScgiHead } from './built-head.js';
import { encodeScgiHead } from './head.js';

export const scgiProtocol: WireProtocol = Object.freeze({
  name: 'scgi',
  raw: true,
  keepsConnections: false,
  bodyEnd: null,
  encodeRequestHead(env: EnvInput, _bodyLength: number, _keep: boolean, built?: boolean): Buffer {
    return built === true ? encodeBuiltScgiHead(env as readonly EnvPair[]) : encodeScgiHead(env);
  },
  frameBody(chunk: Buffer): Buffer[] {
    return [chunk];
  },
  createDecoder(sink: ResponseSink): ResponseDecoder {
    // The exchange reads raw protocols itself; a decoder is only a pass-through.
    return { push: (chunk: Buffer, lent: boolean) => sink.data(chunk, lent) };
  },
});
