/**
 * A Node SCGI server: the other end of the protocol, so SCGI apps can run in Node and tests can
 * run a backend whose every byte they control. Like flup and Python's `scgi`, a malformed head
 * closes the connection without an answer (there is no protocol to answer it with).
 */
import { createServer, type Server, type ServerOpts, type Socket } from 'node:net';
import { Readable, Writable } from 'node:stream';
import { InvalidOptionError, type ScgiError, UpstreamBodyError } from './errors.js';
import { ScgiHeadDecoder } from './scgi-head.js';

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
 * The response side: `writeHead()` / `setHeader()` then `write()` / `end()`, written as a CGI
 * response (`Status: NNN reason` + headers + blank line + raw body). It is a Writable, so
 * `pipeline(source, res)` works.
 */
export class ScgiServerResponse extends Writable {
  readonly socket: Socket;
  statusCode = 200;
  statusMessage = '';
  #headers = new Map<string, [string, string | string[]]>();
  #headSent = false;

  constructor(socket: Socket) {
    super({ highWaterMark: 64 * 1024 });
    this.socket = socket;
  }

  get headersSent(): boolean {
    return this.#headSent;
  }

  setHeader(name: string, value: string | number | readonly string[]): this {
    if (this.#headSent) throw new Error('headers already sent');
    const v = Array.isArray(value) ? value.map(String) : String(value);
    checkHeader(name, v);
    this.#headers.set(name.toLowerCase(), [name, v]);
    return this;
  }

  getHeader(name: string): string | string[] | undefined {
    return this.#headers.get(name.toLowerCase())?.[1];
  }

  removeHeader(name: string): void {
    this.#headers.delete(name.toLowerCase());
  }

  writeHead(
    statusCode: number,
    reason?: string | Record<string, string | number | readonly string[]>,
    headers?: Record<string, string | number | readonly string[]>,
  ): this {
    if (typeof reason === 'object') {
      headers = reason;
      reason = undefined;
    }
    if (!Number.isInteger(statusCode) || statusCode < 100 || statusCode > 999) {
      throw new RangeError(`invalid status code ${statusCode}`);
    }
    this.statusCode = statusCode;
    if (reason !== undefined) this.statusMessage = reason;
    for (const [k, v] of Object.entries(headers ?? {})) this.setHeader(k, v);
    return this;
  }

  /** Builds the head once, as a single buffer. */
  #head(): Buffer {
    this.#headSent = true;
    const reason = (this.statusMessage || REASONS[this.statusCode] || 'Unknown').replace(
      /[\r\n]/g,
      ' ',
    );
    let text = `Status: ${this.statusCode} ${reason}\r\n`;
    for (const [name, value] of this.#headers.values()) {
      if (Array.isArray(value)) for (const v of value) text += `${name}: ${v}\r\n`;
      else text += `${name}: ${value}\r\n`;
    }
    return Buffer.from(`${text}\r\n`, 'latin1');
  }

  /** Sends the head now, before any body byte (for streaming responses). */
  flushHeaders(): void {
    if (!this.#headSent) this.socket.write(this.#head());
  }

  /** True once a write failed because the peer went away (EPIPE, ECONNRESET). */
  #peerGone = false;

  /** Wraps a socket callback: its error means the connection failed, not the app. */
  #onSocket(cb: (err?: Error | null) => void): (err?: Error | null) => void {
    return (err) => {
      if (err) this.#peerGone = true;
      cb(err);
    };
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (!this.#headSent) {
      this.socket.cork();
      this.socket.write(this.#head());
      this.socket.write(chunk, this.#onSocket(cb));
      this.socket.uncork();
    } else {
      this.socket.write(chunk, this.#onSocket(cb));
    }
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (!this.#headSent) this.socket.write(this.#head());
    this.socket.end(this.#onSocket(cb));
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (err) this.socket.destroy();
    // A peer that went away (the proxy dropped the request) ends the response like a 'close' of
    // http.ServerResponse: an 'error' only for an app that listens, never an uncaught one that
    // crashes the server. Errors of the app's own making (write after end) still surface.
    cb(this.#peerGone && this.listenerCount('error') === 0 ? null : err);
  }
}

function checkHeader(name: string, value: string | string[]): void {
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name))
    throw new TypeError(`invalid header name ${JSON.stringify(name)}`);
  for (const v of Array.isArray(value) ? value : [value]) {
    if (/[\0\r\n]/.test(v)) throw new TypeError(`invalid value for header ${name}`);
  }
}

const REASONS: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  204: 'No Content',
  301: 'Moved Permanently',
  302: 'Found',
  303: 'See Other',
  304: 'Not Modified',
  307: 'Temporary Redirect',
  308: 'Permanent Redirect',
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  413: 'Content Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
};

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
