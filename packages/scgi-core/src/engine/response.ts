/**
 * What the engine hands back once the response head arrived: status, headers, and the body as a
 * stream from the backend socket or as one buffer collected whole.
 */
import { OutgoingMessage } from 'node:http';
import { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { giveBackBodyBuffer } from '../http/body-pool.js';
import type { CgiResponseHead, ResponseHeaders } from '../types.js';

/** The side of an exchange a body stream pulls from. */
export interface BodySource {
  /** The consumer wants more: resume reading the backend socket. */
  resumeSocket(): void;
  /** The consumer destroyed the body: drop the backend connection. */
  bodyDestroyed(): void;
}

/** Timings in milliseconds since the exchange started. */
export interface ScgiTimings {
  connect: number;
  head: number;
  total: number;
}

/** The backend's answer, once its head has arrived. */
export interface ScgiResponse {
  readonly statusCode: number;
  /** The backend's reason phrase, "" when it sent none. */
  readonly statusMessage: string;
  readonly headers: ResponseHeaders;
  /**
   * The response body as a stream; empty and ended for HEAD requests and 204/304 responses.
   * Created on first access: when `bodyBuffer` is set, sending that instead costs less.
   */
  readonly body: Readable;
  /**
   * The whole body, when it was collected before the head was passed on (a Content-Length up to
   * `maxBufferedBody`, or no body at all); null when the body streams. Once `writeResponse` or
   * an adapter has sent it, the response lets go of it and this is null: read it before (in
   * `onResponse`, for instance).
   */
  readonly bodyBuffer: Buffer | null;
  /** Canonical address of the backend (for logs; never put it in a client response). */
  readonly upstream: string;
  readonly timings: ScgiTimings;
}

export class UpstreamBody extends Readable {
  readonly #exchange: BodySource;
  /** The response this body is piped into, as its 'pipe' / 'unpipe' events tell. */
  #pipedInto: OutgoingMessage | null = null;
  constructor(exchange: BodySource) {
    super({ highWaterMark: 64 * 1024 });
    this.#exchange = exchange;
  }
  override _read(): void {
    this.#exchange.resumeSocket();
  }
  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#exchange.bodyDestroyed();
    callback(err);
  }

  /**
   * Follows whether this body is piped into `res`, the response the client waits on, through the
   * 'pipe' and 'unpipe' events a Writable emits for each source (public API: no look into the
   * Readable's private pipe list). Fastify's `reply.send(stream)` and the core writer both pipe.
   */
  watchPipeInto(res: unknown): void {
    if (!(res instanceof OutgoingMessage)) return;
    const onPipe = (src: unknown) => {
      if (src === this) this.#pipedInto = res;
    };
    const onUnpipe = (src: unknown) => {
      if (src === this) this.#pipedInto = null;
    };
    res.on('pipe', onPipe);
    res.on('unpipe', onUnpipe);
    this.once('close', () => {
      res.removeListener('pipe', onPipe);
      res.removeListener('unpipe', onUnpipe);
      this.#pipedInto = null;
    });
  }

  /**
   * The HTTP/1 response the chunk just pushed went into, in the same call, through a pipe with
   * no other consumer; null otherwise (another consumer, or a patched `res.write` such as
   * compression middleware: who knows who holds the chunk then). Node corks the response socket
   * until the next tick, so the chunk is still there now; once `res.writableLength` is 0 later,
   * it has gone to the kernel and nothing refers to it any more (see `Exchange.onRead`).
   */
  pipedToResponse(): OutgoingMessage | null {
    const res = this.#pipedInto;
    if (res === null || this.readableLength !== 0 || this.listenerCount('data') !== 1) return null;
    return res.write === OutgoingMessage.prototype.write &&
      res.socket?.write === Socket.prototype.write
      ? res
      : null;
  }
}

/** A response whose body streams from the socket, or sits whole in a buffer. */
export class Response implements ScgiResponse {
  readonly statusCode: number;
  readonly statusMessage: string;
  readonly headers: ResponseHeaders;
  /** Cleared once an adapter handed the buffer on (`releaseBodyBuffer`). */
  bodyBuffer: Buffer | null;
  readonly upstream: string;
  readonly timings: ScgiTimings;
  #stream: Readable | null;

  constructor(
    head: CgiResponseHead,
    upstream: string,
    timings: ScgiTimings,
    buffer: Buffer | null,
    stream: Readable | null,
  ) {
    this.statusCode = head.statusCode;
    this.statusMessage = head.statusMessage;
    this.headers = head.headers;
    this.upstream = upstream;
    this.timings = timings;
    this.bodyBuffer = buffer;
    this.#stream = stream;
  }

  get body(): Readable {
    if (this.#stream === null) {
      const data = this.bodyBuffer ?? EMPTY;
      this.#stream = new Readable({
        read() {
          if (data.length > 0) this.push(data);
          this.push(null);
        },
      });
    }
    return this.#stream;
  }
}

export const EMPTY = Buffer.alloc(0);

/**
 * Gives a collected body's buffer back for a later response, once the caller has written it out
 * and nothing else can refer to it: for an adapter that sent `bodyBuffer` itself, asked for it
 * with `recycleBody`, and passed the response to no user code. Does nothing otherwise.
 * @internal
 */
export function recycleBodyBuffer(response: ScgiResponse): void {
  if (!pooledBodies.delete(response) || response.bodyBuffer === null) return;
  giveBackBodyBuffer(response.bodyBuffer);
}

/**
 * The adapter handed the collected body on to what writes it (Fastify's `reply.send`, Node's
 * `res.end`) and reads it no more: the response lets go of it, and `bodyBuffer` is null from
 * then on. The response object may outlive the exchange (a hook or the caller keeps it), and a
 * 64 KiB body's ArrayBuffer need not outlive it with it: V8 counts a promoted ArrayBuffer against
 * the old generation's limit (when every request's objects were promoted, before
 * engine/in-flight.ts, `--trace-gc` showed a mark-compact every ~100 ms on the 64k case, and 6 to 7
 * in 3 s once the response let go). Not for a pooled body (`recycleBodyBuffer` needs it).
 * @internal
 */
export function releaseBodyBuffer(response: ScgiResponse): void {
  if (response instanceof Response && !pooledBodies.has(response)) response.bodyBuffer = null;
}

/** The response's `bodyBuffer` may come from the pool (`recycleBodyBuffer` would take it back). @internal */
export function bodyIsPooled(response: ScgiResponse): boolean {
  return pooledBodies.has(response);
}

/** Responses whose `bodyBuffer` came from the pool and was not given back yet. */
const pooledBodies = new WeakSet<ScgiResponse>();

/** The response's `bodyBuffer` came from the pool (`takeBodyBuffer`). @internal */
export function markBodyPooled(response: Response): void {
  pooledBodies.add(response);
}
