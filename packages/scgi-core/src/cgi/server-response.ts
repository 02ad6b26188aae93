/**
 * The response object of the Node CGI-style servers (SCGI in ./server.ts, FastCGI in
 * ./fastcgi/server.ts): the app calls `writeHead()` / `setHeader()` then `write()` / `end()`,
 * and it goes out as a CGI response (`Status: NNN reason` + headers + blank line + raw body).
 * Subclasses only say how bytes reach the peer: raw on the socket (SCGI) or as records (FastCGI).
 */
import type { Socket } from 'node:net';
import { Writable } from 'node:stream';

/**
 * The response side: `writeHead()` / `setHeader()` then `write()` / `end()`, written as a CGI
 * response (`Status: NNN reason` + headers + blank line + raw body). It is a Writable, so
 * `pipeline(source, res)` works.
 */
export abstract class CgiServerResponse extends Writable {
  readonly socket: Socket;
  statusCode = 200;
  statusMessage = '';
  #headers = new Map<string, [string, string | string[]]>();
  #headSent = false;

  constructor(socket: Socket) {
    super({ highWaterMark: 64 * 1024 });
    this.socket = socket;
  }

  /**
   * Sends response bytes (the head and/or a body chunk, in order, to be written together);
   * `cb` runs once the transport took them (Writable backpressure) or failed.
   */
  protected abstract output(data: Buffer[], cb?: (err?: Error | null) => void): void;
  /** Ends the response on the wire once everything before is written. */
  protected abstract finish(cb: (err?: Error | null) => void): void;
  /** The app failed mid-response: cut the transport so the peer never sees a complete answer. */
  protected abstract abort(): void;

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
    if (!this.#headSent) this.output([this.#head()]);
  }

  /** True once a write failed because the peer went away (EPIPE, ECONNRESET). */
  #peerGone = false;

  /** Wraps a transport callback: its error means the connection failed, not the app. */
  #onSocket(cb: (err?: Error | null) => void): (err?: Error | null) => void {
    return (err) => {
      if (err) this.#peerGone = true;
      cb(err);
    };
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.output(this.#headSent ? [chunk] : [this.#head(), chunk], this.#onSocket(cb));
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (!this.#headSent) this.output([this.#head()]);
    this.finish(this.#onSocket(cb));
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (err) this.abort();
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
