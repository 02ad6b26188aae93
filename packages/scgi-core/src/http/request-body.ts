/**
 * Sending a request body that is a stream (the client's request, or a spooled temp file) to the
 * backend socket, with backpressure and an exact length check; framed by the wire protocol when
 * it is not raw (FastCGI STDIN records).
 */
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { WireProtocol } from '../engine/protocol.js';
import { RequestAbortedError, type ScgiError, SpoolError } from '../errors.js';

/** How a framed protocol wraps body bytes (engine/protocol.ts); null for raw SCGI. */
export type BodyFraming = Pick<WireProtocol, 'frameBody' | 'bodyEnd'>;

export interface PumpHooks {
  /** The body cannot be sent (client gone, wrong length, unreadable spool file). */
  fail(err: ScgiError): void;
  /** The whole body is written. */
  sent(): void;
}

/**
 * Copies a body stream to the socket with backpressure, checking its length. The socket comes
 * corked with the head in it: the head leaves with the first body chunk, in one write as
 * nginx's writev. A backend that answers from the head alone and closes (uWSGI, for a route
 * that ignores the body) then already holds a small body, instead of us writing into a closed
 * socket (EPIPE: Node destroys the socket and the answer waiting in it is lost, a false 502).
 */
export function pumpBody(
  socket: Socket,
  source: Readable,
  length: number,
  fromClient: boolean,
  framing: BodyFraming | null,
  hooks: PumpHooks,
): () => void {
  let sent = 0;
  let corked = true;
  const uncork = () => {
    if (corked) {
      corked = false;
      socket.uncork();
    }
  };
  const onData = (chunk: Buffer) => {
    sent += chunk.length;
    if (sent > length) {
      hooks.fail(new RequestAbortedError('request body longer than its Content-Length'));
      return;
    }
    let more: boolean;
    if (framing === null) more = socket.write(chunk);
    else {
      more = true;
      for (const frame of framing.frameBody(chunk)) more = socket.write(frame);
    }
    uncork();
    if (!more) source.pause();
  };
  const onDrain = () => source.resume();
  const detach = () => {
    uncork();
    source.removeListener('data', onData);
    source.removeListener('end', onEnd);
    source.removeListener('error', onSourceError);
    source.removeListener('close', onSourceClose);
    socket.removeListener('drain', onDrain);
  };
  const onEnd = () => {
    detach();
    if (sent !== length) {
      hooks.fail(new RequestAbortedError(`request body ended after ${sent} of ${length} bytes`));
      return;
    }
    if (!fromClient) source.destroy();
    if (framing?.bodyEnd) socket.write(framing.bodyEnd);
    hooks.sent();
  };
  const onSourceError = (err: Error) => {
    detach();
    hooks.fail(
      fromClient
        ? new RequestAbortedError(err.message, { cause: err })
        : // A local failure: the backend is not charged (engine/failure-policy.ts).
          new SpoolError(`reading the spooled body failed: ${err.message}`, { cause: err }),
    );
  };
  const onSourceClose = () => {
    if (!source.readableEnded) onSourceError(new Error('connection closed during upload'));
  };
  source.on('data', onData);
  source.on('end', onEnd);
  source.on('error', onSourceError);
  source.on('close', onSourceClose);
  socket.on('drain', onDrain);
  source.resume();
  return () => {
    detach();
    if (!fromClient) source.destroy();
    // The exchange ended before the client's body did (the backend answered early, or failed):
    // the rest is read and dropped, as nginx discards it. Left paused, it would hold the
    // keep-alive connection: Node parses the next request only after this body.
    else if (!source.readableEnded) source.resume();
  };
}
