/**
 * A Node SCGI server: the other end of the protocol, so SCGI apps can run in Node and tests can
 * run a backend whose every byte they control. Like flup and Python's `scgi`, a malformed head
 * closes the connection without an answer (there is no protocol to answer it with).
 */
import { createServer, type Server, type ServerOpts, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { CgiServerResponse } from '../cgi/server-response.js';
import { InvalidOptionError, type ScgiError, UpstreamBodyError } from '../errors.js';
import { ScgiHeadDecoder } from './head.js';

export interface ScgiServerOptions {
  /**
   * Largest SCGI head in bytes (uWSGI's `--buffer-size` does the same job, default 4096 there).
   * @default 65536
   */
  maxHeadSize?: number;
  /** Called with each connection-level failure (malformed head, socket errors); defaults to ignoring them. */
  onError?: (err: Error, socket: Socket) => void;
  /** Passed to `net.createServer`. */
  serverOptions?: ServerOpts;
}

/** The request side of one SCGI connection: the environment and a body stream of exactly CONTENT_LENGTH bytes. */
export class ScgiServerRequest extends Readable {
  /** Variables decoded as latin1 (PEP 3333's rule), in arrival order. */
  readonly env: Readonly<Record<string, string>>;
  /** Raw variable bytes, for values that are not text (PATH_INFO). */
  readonly pairs: ReadonlyArray<readonly [string, Buffer]>;
  readonly contentLength: number;
  readonly socket: Socket;
  #remaining: number;

  constructor(
    socket: Socket,
    env: Record<string, string>,
    pairs: Array<[string, Buffer]>,
    contentLength: number,
  ) {
    super({ highWaterMark: 64 * 1024 });
    this.socket = socket;
    this.env = env;
    this.pairs = pairs;
    this.contentLength = contentLength;
    this.#remaining = contentLength;
    if (contentLength === 0) this.push(null);
  }

  get method(): string {
    return this.env.REQUEST_METHOD ?? 'GET';
  }
  get url(): string {
    return this.env.REQUEST_URI ?? '/';
  }

  /** @internal feeds body bytes from the socket; returns bytes it did not need. */
  feed(chunk: Buffer): void {
    if (this.#remaining === 0 || chunk.length === 0) return;
    if (chunk.length > this.#remaining) chunk = chunk.subarray(0, this.#remaining);
    this.#remaining -= chunk.length;
    const more = this.push(chunk);
    if (this.#remaining === 0) this.push(null);
    else if (!more) this.socket.pause();
  }

  /** @internal the connection ended before the whole body came; true when it did. */
  cut(): boolean {
    if (this.#remaining === 0) return false;
    this.destroy(new UpstreamBodyError(`request body short by ${this.#remaining} bytes`));
    return true;
  }

  override _read(): void {
    this.socket.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // As Node's http.IncomingMessage: a failed connection (the client went away mid-body) is an
    // 'error' only for an app that listens for one; unheard, it would crash the whole server.
    cb(this.listenerCount('error') > 0 ? err : null);
  }
}

/**
 * The SCGI response: the CGI response goes out raw on the socket, and the end of the response
 * is the end of the connection (SCGI has no other framing).
 */
export class ScgiServerResponse extends CgiServerResponse {
  protected override output(data: Buffer[], cb?: (err?: Error | null) => void): void {
    const last = data.length - 1;
    if (last > 0) this.socket.cork();
    for (let i = 0; i < last; i++) this.socket.write(data[i]!);
    this.socket.write(data[last]!, cb);
    if (last > 0) this.socket.uncork();
  }

  protected override finish(cb: (err?: Error | null) => void): void {
    this.socket.end(cb);
  }

  protected override abort(): void {
    this.socket.destroy();
  }
}

export type ScgiHandler = (req: ScgiServerRequest, res: ScgiServerResponse) => void;

/**
 * Creates an SCGI server (a `net.Server`: call `listen()` with a port or a Unix socket path).
 * The handler gets one request and one response per connection.
 */
export function createScgiServer(handler: ScgiHandler, options: ScgiServerOptions = {}): Server {
  const maxHeadSize = options.maxHeadSize ?? 65536;
  if (!Number.isSafeInteger(maxHeadSize) || maxHeadSize <= 0) {
    throw new InvalidOptionError('maxHeadSize', 'must be a positive integer');
  }
  if (typeof handler !== 'function') throw new InvalidOptionError('handler', 'must be a function');
  const onError = options.onError;
  // allowHalfOpen: a client that shuts down its sending side after the body still gets its answer.
  return createServer({ allowHalfOpen: true, ...options.serverOptions }, (socket) => {
    const decoder = new ScgiHeadDecoder({ maxLength: maxHeadSize });
    let req: ScgiServerRequest | null = null;
    socket.on('error', (err) => {
      onError?.(err, socket);
      req?.destroy(err);
    });
    socket.on('end', () => {
      // A peer that shuts down before the whole request came (the proxy dropped it) will never
      // read an answer: close, or allowHalfOpen keeps the socket open for good.
      if (req === null || req.cut()) socket.destroy();
    });
    socket.on('close', () => req?.cut());
    socket.on('data', (chunk: Buffer) => {
      if (req !== null) {
        req.feed(chunk);
        return;
      }
      let head: ReturnType<ScgiHeadDecoder['push']>;
      try {
        head = decoder.push(chunk);
      } catch (err) {
        onError?.(err as ScgiError, socket);
        socket.destroy();
        return;
      }
      if (head === null) return;
      req = new ScgiServerRequest(socket, head.env, head.pairs, head.contentLength);
      const res = new ScgiServerResponse(socket);
      socket.on('close', () => {
        if (!res.writableFinished) res.destroy();
      });
      req.feed(decoder.rest);
      handler(req, res);
    });
  });
}
