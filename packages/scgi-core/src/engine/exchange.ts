/**
 * One request/response exchange with a backend, over one connection, whatever the wire protocol:
 * the protocol (engine/protocol.ts; SCGI in scgi/protocol.ts) frames the request and de-frames the
 * response, the exchange does everything else. Full duplex: the response is read while the request body is still being
 * written, so an app that streams its answer during a large upload never deadlocks (nginx
 * writes the whole body first and does).
 *
 * Failure rules (DESIGN.md "Data flow" step 8): before the response head, the promise rejects
 * with a typed error the adapter turns into 502/504/413/400; after it, the body stream is
 * destroyed with a typed error, and the adapter destroys the client connection so a truncated
 * body never looks complete.
 */
import type { OutgoingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { CgiResponseParser } from '../cgi/response-parser.js';
import {
  ConnectError,
  HeadersTimeoutError,
  IdleTimeoutError,
  KeptConnectionClosedError,
  NoSocketError,
  RequestAbortedError,
  RequestTimeoutError,
  ResponseHeaderError,
  ScgiError,
  SendTimeoutError,
  UpstreamBodyError,
  UpstreamClosedError,
  UpstreamResetError,
} from '../errors.js';
import { isPoolSize, takeBodyBuffer } from '../http/body-pool.js';
import { pumpBody } from '../http/request-body.js';
import type { SpooledBody } from '../http/spool.js';
import type { CgiResponseHead } from '../types.js';
import type { UpstreamAddress } from '../upstream/address.js';
import { bindSocket, type Connector, releaseSocket, type SocketUser } from '../upstream/connect.js';
import type { KeepAliveSet } from '../upstream/keep-alive.js';
import type { Outcome } from '../upstream/pool.js';
import { chargesBackend } from './failure-policy.js';
import type { InFlightLink } from './in-flight.js';
import type { ResolvedProxyOptions } from './options.js';
import type { ResponseDecoder, ResponseSink, WireProtocol } from './protocol.js';
import {
  EMPTY,
  markBodyPooled,
  Response,
  type ScgiResponse,
  type ScgiTimings,
  UpstreamBody,
} from './response.js';

export type { ScgiResponse, ScgiTimings } from './response.js';

/** What the exchange sends after the head. */
export type ExchangeBody =
  | { readonly kind: 'none' }
  | { readonly kind: 'buffer'; readonly data: Buffer }
  | { readonly kind: 'stream'; readonly stream: Readable; readonly length: number }
  | { readonly kind: 'spooled'; readonly spool: SpooledBody };

enum State {
  Connecting = 0,
  AwaitHead = 1,
  /** Head parsed; collecting a small body whole before the response is handed on. */
  Buffering = 2,
  Body = 3,
  /**
   * The response is complete by its Content-Length (or has no body) and handed on, but the
   * protocol's end (FastCGI END_REQUEST) has not come yet: the connection is read up to it,
   * the extra bytes dropped, and only then kept for the next request.
   */
  Draining = 4,
  Done = 5,
}

/** Bytes of a backend's STDERR logged per request, at most. */
const MAX_STDERR_LOGGED = 16 * 1024;

/** Read size for a streamed body, as Node's own. */
const READ_SIZE = 64 * 1024;

/** Everything one exchange needs, from the proxy. */
export interface ExchangeRequest {
  readonly options: ResolvedProxyOptions;
  readonly address: UpstreamAddress;
  readonly protocol: WireProtocol;
  /** `protocol.encodeRequestHead` of the request's CGI environment. */
  readonly requestHead: Buffer;
  readonly body: ExchangeBody;
  /** A HEAD request: the response has no body whatever its headers say. */
  readonly noResponseBody: boolean;
  /** Aborts the exchange (the caller's signal). */
  readonly signal?: AbortSignal;
  /** Sees the response when its head arrived (diagnostics), before the promise resolves. */
  readonly onHead?: (res: ScgiResponse) => void;
  /** Called once when the exchange is over, with what it means for the backend's health. */
  readonly onDone: (outcome: Outcome) => void;
  /** The caller gives a small body's buffer back (`recycleBodyBuffer`): take it from the pool. */
  readonly poolBody?: boolean;
  /**
   * The backend's idle connections (the request head asked to keep the connection): a clean
   * end puts the connection there, and a new connection first makes room among them.
   */
  readonly keepAlive?: KeepAliveSet | null;
  /**
   * May ride an idle connection: the request can be sent again if that connection turns out
   * closed (engine/proxy.ts gives only such requests a kept connection).
   */
  readonly reuse?: boolean;
}

export class Exchange implements SocketUser, InFlightLink<Exchange> {
  /** The proxy's list of exchanges in flight (engine/in-flight.ts). @internal */
  inFlightPrev: Exchange | null = null;
  /** @internal */
  inFlightNext: Exchange | null = null;
  readonly #opts: ResolvedProxyOptions;
  readonly #address: UpstreamAddress;
  readonly #onDone: (outcome: Outcome) => void;
  #error: ScgiError | undefined;
  #headReceived = false;
  /**
   * Some response byte arrived from the backend, so it ran the request: from then on only an
   * idempotent one may be sent again (engine/failure-policy.ts).
   */
  responseStarted = false;

  /** The backend address this exchange connects to (fixed for its life). */
  get address(): UpstreamAddress {
    return this.#address;
  }
  readonly #protocol: WireProtocol;
  /** The protocol sends the body as it is and reads the raw response (SCGI): the fast paths. */
  readonly #raw: boolean;
  /** De-frames the response of a framed protocol (FastCGI); null for raw ones. */
  #decoder: ResponseDecoder | null = null;
  /** The request head as the protocol framed it (SCGI netstring, FastCGI BEGIN_REQUEST+PARAMS). */
  readonly #requestHead: Buffer;
  readonly #reqBody: ExchangeBody;
  readonly #noResponseBody: boolean;
  /** The caller gives a small body's buffer back (`recycleBodyBuffer`): take it from the pool. */
  readonly #poolBody: boolean;
  readonly #signal: AbortSignal | undefined;
  readonly #keepAlive: KeepAliveSet | null;
  readonly #reuse: boolean;
  /** The connection came from the idle set (a failure before any answer is then no fault). */
  #reused = false;
  /** Requests the connection carried before this one. */
  #requests = 0;
  /** The whole request is written (its body too): only then may the connection be kept. */
  #requestSent = false;
  /** The protocol said the response is complete and the connection clean (END_REQUEST). */
  #reusable = false;
  readonly #started = performance.now();
  readonly #timings: ScgiTimings = { connect: -1, head: -1, total: -1 };
  #state = State.Connecting;
  #socket: Socket | null = null;
  #parser: CgiResponseParser;
  #body: UpstreamBody | null = null;
  #remaining = -1;
  /** The parsed response head, while a small body is collected behind it. */
  #responseHead: CgiResponseHead | null = null;
  /** The small body being collected (State.Buffering), `#filled` bytes of it so far. */
  #bodyBuf: Buffer | null = null;
  #filled = 0;
  /** The unfilled end of `#bodyBuf`: the engine's socket reads straight into it. */
  #bodyTail: Buffer | null = null;
  /** The buffer the next read of a streamed body goes into (engine's socket). */
  #streamTarget: Buffer | null = null;
  /** The last chunk's buffer, and the response it was written to (see `onRead`). */
  #spare: Buffer | null = null;
  #spareRes: OutgoingMessage | null = null;
  #headersTimer: NodeJS.Timeout | null = null;
  readonly #onHead: ((res: ScgiResponse) => void) | undefined;
  #resolve!: (res: ScgiResponse) => void;
  #reject!: (err: ScgiError) => void;
  readonly promise: Promise<ScgiResponse>;

  constructor(request: ExchangeRequest) {
    const opts = request.options;
    this.#opts = opts;
    this.#address = request.address;
    this.#onDone = request.onDone;
    this.#protocol = request.protocol;
    this.#raw = request.protocol.raw;
    this.#requestHead = request.requestHead;
    this.#reqBody = request.body;
    this.#noResponseBody = request.noResponseBody;
    this.#signal = request.signal;
    this.#onHead = request.onHead;
    this.#poolBody = request.poolBody === true;
    this.#keepAlive = request.keepAlive ?? null;
    this.#reuse = request.reuse === true && this.#keepAlive !== null;
    this.#parser = new CgiResponseParser({
      maxHeadSize: opts.maxHeadSize,
      passHeaders: opts.passHeaders,
    });
    this.promise = new Promise<ScgiResponse>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  start(): Promise<ScgiResponse> {
    // Destroyed before it started (its client went away meanwhile): never connect.
    if (this.#state === State.Done) return this.promise;
    if (this.#signal?.aborted) {
      this.#fail(new RequestAbortedError('aborted before connect'));
      return this.promise;
    }
    this.#signal?.addEventListener('abort', this.#onAbort, { once: true });
    const keep = this.#keepAlive;
    if (keep !== null) {
      const kept = this.#reuse ? keep.take() : null;
      if (kept !== null) {
        this.#reused = true;
        this.#requests = kept.requests;
        this.#connected(kept.socket);
        return this.promise;
      }
      // A new connection: idle ones make way first if it would pass maxConnections.
      keep.makeRoom();
    }
    let cancel: ReturnType<Connector>;
    try {
      cancel = this.#opts.connector(
        this.#address,
        { timeout: this.#opts.connectTimeout },
        (err, socket) => {
          this.#cancelConnect = null;
          if (this.#state === State.Done) {
            socket?.destroy();
            return;
          }
          if (err !== null || socket === null) {
            // A custom connector's own error is a failure to connect, as the default one's are.
            const e = err ?? new UpstreamResetError('no socket');
            this.#fail(e instanceof ScgiError ? e : new ConnectError({ cause: e }));
            return;
          }
          this.#connected(socket);
        },
      );
    } catch (thrown) {
      // A connector that throws is a fault of this process, not of the backend (not charged);
      // the exchange ends as any other, so its pool slot comes back.
      this.#fail(new NoSocketError('the connector threw', { cause: thrown }));
      return this.promise;
    }
    // Unless it already called back (a connector may, synchronously).
    if (typeof cancel === 'function' && this.#state === State.Connecting)
      this.#cancelConnect = cancel;
    return this.promise;
  }

  /** Abandons a connection attempt still under way (see `Connector`). */
  #cancelConnect: (() => void) | null = null;

  #connected(socket: Socket): void {
    this.#timings.connect = performance.now() - this.#started;
    this.#socket = socket;
    this.#state = State.AwaitHead;
    bindSocket(socket, this);
    // A kept connection has the timer already (keep-alive.ts `onTimeout`): the write below
    // restarts it. Node's setTimeout makes a new timer and a bound function at every call. A new
    // connection always sets it: a Socket object connected again (connect.ts) may still say
    // `timeout` after its timer died with the previous connection.
    const idle = this.#opts.idleTimeout;
    if (this.#reused ? socket.timeout !== idle : idle > 0) socket.setTimeout(idle);

    if (!this.#raw) this.#decoder = this.#protocol.createDecoder(this.#sink);
    const body = this.#reqBody;
    if (body.kind === 'none') {
      // One write: corking it would only add Node's buffering round for nothing.
      socket.write(this.#requestHead);
      this.#sent();
      return;
    }
    socket.cork();
    socket.write(this.#requestHead);
    switch (body.kind) {
      case 'buffer':
        this.#writeBody(socket, body.data);
        this.#endBody(socket);
        socket.uncork();
        this.#sent();
        break;
      case 'spooled':
        if (body.spool.chunks !== null) {
          for (const c of body.spool.chunks) this.#writeBody(socket, c);
          this.#endBody(socket);
          socket.uncork();
          this.#sent();
        } else {
          this.#pump(body.spool.openStream(), body.spool.length, false);
        }
        break;
      case 'stream':
        this.#pump(body.stream, body.length, true);
        break;
    }
  }

  /** Writes body bytes held in memory, framed by the protocol unless it is raw. */
  #writeBody(socket: Socket, data: Buffer): void {
    if (this.#raw) socket.write(data);
    else for (const frame of this.#protocol.frameBody(data)) socket.write(frame);
  }

  /** Ends a non-empty body the protocol's way (FastCGI: the empty STDIN record). */
  #endBody(socket: Socket): void {
    const end = this.#protocol.bodyEnd;
    if (end !== null) socket.write(end);
  }

  /** The client's body while it is being sent (not a spooled one). */
  #clientBody: Readable | null = null;

  #pump(source: Readable, length: number, fromClient: boolean): void {
    if (fromClient) this.#clientBody = source;
    const framing = this.#raw ? null : this.#protocol;
    this.#detachSource = pumpBody(this.#socket!, source, length, fromClient, framing, {
      fail: (err) => this.#failAny(err),
      sent: () => this.#sent(),
    });
  }

  #detachSource: (() => void) | null = null;

  /** The whole request is written: the response head timer starts now (as undici's headersTimeout). */
  #sent(): void {
    this.#clientBody = null;
    this.#requestSent = true;
    if (this.#state === State.AwaitHead && this.#opts.headersTimeout > 0) {
      this.#headersTimer = setTimeout(Exchange.#onHeadersTimeout, this.#opts.headersTimeout, this);
    }
  }

  static #onHeadersTimeout(exchange: Exchange): void {
    exchange.#headersTimer = null;
    exchange.#fail(new HeadersTimeoutError(exchange.#opts.headersTimeout));
  }

  // The socket's events (SocketUser), forwarded by the listeners bindSocket attached.

  /** @internal */
  onTimeout(): void {
    if (this.#state === State.Draining) {
      this.#drainFailed();
      return;
    }
    // idleTimeout ends the exchange in every state: no branch re-arms it, or a client and a
    // backend that both stop could hold two sockets for good (issue 12 §2).
    // The socket is paused only for a client that does not take the body: taking any of it
    // resumes the socket (`resumeSocket`), and a read refreshes the timer. So the client took
    // nothing for idleTimeout: its connection is cut, as nginx's send_timeout does, and the
    // backend is charged no failure (the head came).
    if (this.#state === State.Body && this.#socket?.isPaused()) {
      this.#failBody(new SendTimeoutError(this.#opts.idleTimeout));
      return;
    }
    // Nor is a client that stops sending its body: the pump waits for it (not paused for the
    // backend's sake, and all it got is written out). 408, as nginx's client_body_timeout, and
    // no failure charged to the backend.
    const upload = this.#clientBody;
    if (
      upload !== null &&
      !upload.isPaused() &&
      !upload.readableEnded &&
      this.#socket?.writableLength === 0
    ) {
      this.#failAny(new RequestTimeoutError(this.#opts.idleTimeout));
      return;
    }
    this.#failAny(new IdleTimeoutError(this.#opts.idleTimeout));
  }

  readonly #onAbort = () => {
    this.#failAny(new RequestAbortedError('the client went away'));
  };

  /** @internal A chunk of our own (a socket from a custom connector). */
  onData(chunk: Buffer): void {
    if (this.#raw) this.#input(chunk, false);
    else this.#decoder?.push(chunk, false);
  }

  /** What a framed protocol's decoder delivers (ResponseSink). */
  readonly #sink: ResponseSink = {
    data: (chunk, lent) => this.#input(chunk, lent),
    stderr: (chunk) => this.#stderr(chunk),
    complete: (reusable) => {
      this.#reusable = reusable;
      this.#complete();
    },
    error: (err) => this.#failAny(err),
  };

  /** Bytes of the application's STDERR logged for this request so far. */
  #stderrLogged = 0;

  /**
   * The application's diagnostics (FastCGI STDERR) go to the logger tagged with the backend, as
   * nginx logs them, bounded per request so a chatty or hostile backend cannot flood the log.
   */
  #stderr(chunk: Buffer): void {
    const logger = this.#opts.logger;
    if (logger === null || this.#stderrLogged >= MAX_STDERR_LOGGED) return;
    const room = MAX_STDERR_LOGGED - this.#stderrLogged;
    const text = chunk.subarray(0, room).toString('utf8');
    this.#stderrLogged += Math.min(chunk.length, room);
    logger.warn({ upstream: this.#address.label, stderr: text }, 'backend stderr');
  }

  /**
   * @internal Where the engine's socket (`lendingConnector`) reads next: the rest of a small body goes
   * straight into its final buffer, a streamed body into buffers handed on whole. The head and
   * anything after the end go to the shared scratch buffer (null).
   */
  readTarget(): Buffer | null {
    // A framed protocol's reads are de-framed from the scratch buffer: records interleave.
    if (!this.#raw) return null;
    if (this.#state === State.Buffering) return this.#bodyTail;
    if (this.#state === State.Body) {
      if (this.#streamTarget === null) {
        const size =
          this.#remaining >= 0 && this.#remaining < READ_SIZE ? this.#remaining : READ_SIZE;
        if (size > 0) this.#streamTarget = Buffer.allocUnsafeSlow(size);
      }
      return this.#streamTarget;
    }
    return null;
  }

  /** @internal `n` bytes read into `buf`: a buffer `readTarget()` gave, or the lent scratch. */
  onRead(n: number, buf: Buffer): void {
    if (!this.#raw) {
      this.#decoder?.push(buf.subarray(0, n), true);
      return;
    }
    if (buf === this.#bodyTail && this.#state === State.Buffering) {
      // Read in place: the bytes are already where they belong.
      this.#filledBy(n);
      return;
    }
    if (buf === this.#streamTarget) {
      // A read that filled most of the buffer is handed on as it is; a short one is copied out so
      // a few bytes do not pin a 64 KiB buffer while they wait in the stream, and the buffer
      // takes the next read.
      if (n >= buf.length / 2) {
        // The chunk before this one went into a response that has written everything out since:
        // its buffer takes the next read. A long body that the client keeps up with then runs on
        // two buffers instead of a new one per read, which V8 counts as external memory.
        let reuse: Buffer | null = null;
        const spareRes = this.#spareRes;
        if (spareRes !== null && spareRes.writableLength === 0 && spareRes.writableCorked === 0) {
          reuse = this.#spare;
        }
        this.#spare = null;
        this.#spareRes = null;
        this.#streamTarget = null;
        this.#input(n === buf.length ? buf : buf.subarray(0, n), false);
        if (this.#state === State.Body) {
          this.#spareRes = this.#body!.pipedToResponse();
          if (this.#spareRes !== null) this.#spare = buf;
          this.#streamTarget = reuse;
        }
      } else {
        this.#input(buf.subarray(0, n), true);
      }
      return;
    }
    this.#input(buf.subarray(0, n), true);
  }

  /** Response bytes; `lent` ones are only valid until this returns: what is kept is copied. */
  #input(chunk: Buffer, lent: boolean): void {
    this.responseStarted = true;
    if (this.#state === State.AwaitHead) {
      let head: CgiResponseHead | null;
      try {
        head = this.#parser.push(chunk);
      } catch (err) {
        this.#fail(err as ScgiError);
        return;
      }
      if (head !== null) this.#gotHead(head, lent);
      return;
    }
    if (this.#state === State.Body) this.#pushBody(chunk, lent);
    else if (this.#state === State.Buffering) this.#collect(chunk);
    // State.Done: bytes past a Content-Length or after a no-body response are dropped.
  }

  #gotHead(head: CgiResponseHead, lent: boolean): void {
    if (this.#headersTimer !== null) {
      clearTimeout(this.#headersTimer);
      this.#headersTimer = null;
    }
    this.#timings.head = performance.now() - this.#started;
    this.#headReceived = true;
    const status = head.statusCode;
    const noBody = this.#noResponseBody || status === 204 || status === 304 || status === 205;
    // RFC 9110: no Content-Length on a 204 (§8.6), and no content in a 205 (§15.3.6), whose
    // length is then 0 whatever the backend announced.
    if (status === 204) delete head.headers['content-length'];
    else if (status === 205) head.headers['content-length'] = '0';
    const cl = head.headers['content-length'];
    if (head.hopByHop.includes('transfer-encoding')) {
      // A CGI body is raw bytes up to the close; PEP 3333 forbids hop-by-hop headers in WSGI.
      // Forwarding a chunk-encoded body with the header stripped would corrupt it: refuse.
      this.#fail(new ResponseHeaderError('Transfer-Encoding is not allowed in a CGI response'));
      return;
    }
    if (noBody) {
      this.#remaining = 0;
    } else if (typeof cl === 'string') {
      this.#remaining = Number(cl);
    }
    if (this.#remaining >= 0 && this.#remaining <= this.#opts.maxBufferedBody) {
      // A small body with a known length (or none): collect it whole and hand on one buffer,
      // as nginx's scgi_buffering does. One write to the client instead of a stream, and a
      // backend that fails before the end is still a clean 502 rather than a cut connection.
      this.#responseHead = head;
      this.#state = State.Buffering;
      const rest = this.#parser.rest;
      if (rest.length >= this.#remaining) {
        // The whole body came with the head.
        const data = rest.subarray(0, this.#remaining);
        this.#remaining = 0;
        this.#buffered(data.length === 0 ? EMPTY : lent ? this.#copyBody(data) : data);
        return;
      }
      this.#bodyBuf = this.#newBodyBuffer(this.#remaining);
      this.#filled = 0;
      this.#collect(rest);
      return;
    }
    const body = new UpstreamBody(this);
    this.#body = body;
    this.#state = State.Body;
    const response = new Response(head, this.#address.label, this.#timings, null, body);
    // Before the body may end below (a whole small body, or none, can finish the exchange in
    // this very call): observers see the head before the end.
    this.#onHead?.(response);
    this.#resolve(response);
    const rest = this.#parser.rest;
    if (this.#remaining === 0) {
      this.#finishBody();
    } else if (rest.length > 0) {
      this.#pushBody(rest, lent);
    }
  }

  /** A small body's buffer: from the pool when the caller gives it back, else a plain one. */
  #newBodyBuffer(size: number): Buffer {
    return this.#poolBody ? takeBodyBuffer(size) : Buffer.allocUnsafe(size);
  }

  #copyBody(data: Buffer): Buffer {
    const buf = this.#newBodyBuffer(data.length);
    data.copy(buf);
    return buf;
  }

  /** Copies a chunk of a small body into its buffer (the engine's socket reads land there). */
  #collect(chunk: Buffer): void {
    const buf = this.#bodyBuf!;
    const n = Math.min(chunk.length, buf.length - this.#filled);
    if (n > 0) chunk.copy(buf, this.#filled, 0, n);
    this.#filledBy(n);
  }

  /** `n` more bytes of the small body are in its buffer: the rest is read next, or it is done. */
  #filledBy(n: number): void {
    const buf = this.#bodyBuf!;
    this.#filled += n;
    if (this.#filled < buf.length) {
      this.#bodyTail = buf.subarray(this.#filled);
      return;
    }
    this.#bodyTail = null;
    this.#buffered(buf);
  }

  /** The small body is complete: the exchange is over, the response goes out as one buffer. */
  #buffered(data: Buffer): void {
    this.#remaining = 0;
    this.#bodyBuf = null;
    this.#bodyTail = null;
    this.#state = State.Done;
    this.#timings.total = performance.now() - this.#started;
    const response = new Response(
      this.#responseHead!,
      this.#address.label,
      this.#timings,
      data,
      null,
    );
    if (this.#poolBody && isPoolSize(data.length)) markBodyPooled(response);
    this.#onHead?.(response);
    this.#responseDone();
    this.#resolve(response);
  }

  #pushBody(chunk: Buffer, lent: boolean): void {
    const body = this.#body!;
    let done = false;
    if (this.#remaining >= 0) {
      if (chunk.length >= this.#remaining) {
        // Bytes past the backend's Content-Length are dropped (DESIGN.md, Response rules).
        chunk = chunk.subarray(0, this.#remaining);
        this.#remaining = 0;
        done = true;
      } else {
        this.#remaining -= chunk.length;
      }
    }
    if (chunk.length > 0 && !body.push(lent ? Buffer.from(chunk) : chunk)) this.#socket?.pause();
    if (done) this.#finishBody();
  }

  #finishBody(): void {
    this.#state = State.Done;
    this.#body!.push(null);
    this.#timings.total = performance.now() - this.#started;
    this.#responseDone();
  }

  /**
   * The client's response is complete. With a connection to keep whose protocol has not said
   * its last word yet (FastCGI: STDOUT past Content-Length, then END_REQUEST), the connection is
   * read on to that end (State.Draining, bounded by the idle timer) while the client already has
   * its answer; otherwise everything is released now.
   */
  #responseDone(): void {
    const socket = this.#socket;
    if (
      this.#keepAlive === null ||
      this.#reusable ||
      !this.#requestSent ||
      socket === null ||
      this.#raw
    ) {
      this.#release();
      return;
    }
    this.#state = State.Draining;
    if (this.#headersTimer !== null) {
      clearTimeout(this.#headersTimer);
      this.#headersTimer = null;
    }
    // Paused for a slow client earlier: what is left to read is the protocol's end alone.
    socket.resume();
    // Bounded by the idle timer, which the last read restarted; without one, by the keep-alive
    // idleTimeout (#connected takes that timer off again if the connection is kept).
    if (this.#opts.idleTimeout === 0) socket.setTimeout(this.#keepAlive.options.idleTimeout);
  }

  /** Draining failed (close, error, timeout, a protocol error): the connection is not kept. */
  #drainFailed(): void {
    if (this.#state !== State.Draining) return;
    this.#state = State.Done;
    this.#reusable = false;
    this.#release();
  }

  /** Ends the exchange now, whatever its state (graceful shutdown past its grace period). */
  destroy(err: ScgiError): void {
    this.#failAny(err);
  }

  resumeSocket(): void {
    if (this.#state === State.Body) this.#socket?.resume();
  }

  /** The consumer destroyed the body (client gone, or done with it): drop the backend at once. */
  bodyDestroyed(): void {
    if (this.#state === State.Draining) {
      // The client has the whole body: its going away does not concern the connection.
      return;
    }
    if (this.#state !== State.Done) {
      // Mid-response: the backend connection closes (PHP-FPM ignores FCGI_ABORT_REQUEST), and
      // is never kept: #reusable is false until END_REQUEST.
      this.#state = State.Done;
      this.#reusable = false;
      this.#release();
    }
  }

  // While collecting a small body nothing has reached the client yet, so a failure still
  // rejects (#failAny picks #fail); once the body streams, it errors the stream instead.
  /** @internal The backend closed its side: for SCGI the end of the response. */
  onEnd(): void {
    if (this.#raw) this.#complete();
    else this.#incomplete();
  }

  /**
   * A kept connection failed before any answer: the backend had closed it between requests.
   * Its own error, so the proxy sends the request again on a new connection (failure-policy).
   */
  #keptConnectionFailed(reason: string, cause?: Error): boolean {
    if (!this.#reused || this.responseStarted || this.#state !== State.AwaitHead) return false;
    this.#fail(
      cause === undefined
        ? new KeptConnectionClosedError(reason)
        : new KeptConnectionClosedError(reason, { cause }),
    );
    return true;
  }

  /**
   * The connection closed before the protocol said the response was complete (FastCGI: before
   * END_REQUEST): before the head a 502, after it a cut client connection, never a body that
   * looks complete.
   */
  #incomplete(): void {
    const state = this.#state;
    if (state === State.Draining) this.#drainFailed();
    else if (this.#keptConnectionFailed('end of stream')) return;
    else if (state === State.AwaitHead) this.#fail(new UpstreamClosedError());
    else if (state === State.Buffering || state === State.Body) {
      this.#failAny(new UpstreamBodyError('connection closed before the end of the response'));
    }
  }

  /** The response is complete by the protocol's word: SCGI's close, FastCGI's END_REQUEST. */
  #complete(): void {
    const state = this.#state;
    if (state === State.Draining) {
      this.#state = State.Done;
      this.#release();
    } else if (state === State.AwaitHead) {
      this.#fail(new UpstreamClosedError());
    } else if (state === State.Buffering || (state === State.Body && this.#remaining > 0)) {
      const missing =
        state === State.Buffering ? this.#bodyBuf!.length - this.#filled : this.#remaining;
      this.#failAny(
        new UpstreamBodyError(`connection closed with ${missing} bytes of Content-Length missing`),
      );
    } else if (state === State.Body) {
      this.#finishBody();
    }
  }

  /** @internal */
  onError(err: NodeJS.ErrnoException): void {
    const state = this.#state;
    if (state === State.Draining) this.#drainFailed();
    else if (this.#keptConnectionFailed(err.code ?? err.message, err)) return;
    else if (state === State.AwaitHead) {
      this.#fail(new UpstreamResetError(err.code ?? err.message, { cause: err }));
    } else if (state === State.Buffering || state === State.Body) {
      this.#failAny(new UpstreamBodyError(err.code ?? err.message, { cause: err }));
    }
  }

  /** @internal */
  onClose(): void {
    if (this.#state === State.Draining) this.#drainFailed();
    else if (this.#keptConnectionFailed('closed')) return;
    else if (this.#state === State.AwaitHead) this.#fail(new UpstreamClosedError());
    else if (this.#state === State.Body || this.#state === State.Buffering) this.onEnd();
  }

  /** Fails in whatever state: before the head the promise rejects, after it the body errors. */
  #failAny(err: ScgiError): void {
    if (this.#state === State.Body) this.#failBody(err);
    else if (this.#state === State.Draining) this.#drainFailed();
    else this.#fail(err);
  }

  /** Failure before the head: reject the promise. */
  #fail(err: ScgiError): void {
    const state = this.#state;
    if (state === State.Done || state === State.Body || state === State.Draining) return;
    // A small body that failed while being collected never reached the client: for the pool and
    // the diagnostics this request got no answer.
    if (state === State.Buffering) this.#headReceived = false;
    this.#state = State.Done;
    err.upstream = this.#address.label;
    this.#error = err;
    this.#release();
    this.#reject(err);
  }

  /** Failure after the head: the body stream errors (the adapter destroys the client side). */
  #failBody(err: ScgiError): void {
    if (this.#state !== State.Body) return;
    this.#state = State.Done;
    err.upstream = this.#address.label;
    this.#error = err;
    this.#release();
    const body = this.#body!;
    if (body.listenerCount('error') > 0) {
      body.destroy(err);
      return;
    }
    // Nobody listens yet: the head was resolved in this very read and a framed protocol's end
    // (FastCGI's END_REQUEST before the Content-Length) came with it. destroy() emits 'error' on
    // the next tick, which runs before the promise reactions that hand the body to the adapter:
    // an uncaught exception, and a client left waiting. A microtask runs after those reactions.
    queueMicrotask(() => body.destroy(err));
  }

  /** Frees everything the exchange holds: socket, timers, listeners, spool file. */
  #release(): void {
    if (this.#headersTimer !== null) {
      clearTimeout(this.#headersTimer);
      this.#headersTimer = null;
    }
    this.#signal?.removeEventListener('abort', this.#onAbort);
    if (this.#cancelConnect !== null) {
      this.#cancelConnect();
      this.#cancelConnect = null;
    }
    if (this.#detachSource !== null) {
      this.#detachSource();
      this.#detachSource = null;
    }
    this.#clientBody = null;
    this.#spare = null;
    this.#spareRes = null;
    const socket = this.#socket;
    const err = this.#error;
    if (socket !== null) {
      // The socket may serve another exchange from now on: drop every reference to it.
      this.#socket = null;
      const clean = err === undefined && this.#streamTarget === null;
      const keep = this.#keepAlive;
      if (
        keep !== null &&
        clean &&
        this.#reusable &&
        this.#requestSent &&
        socket.readableLength === 0 &&
        socket.writableLength === 0 &&
        !socket.destroyed
      ) {
        if (socket.isPaused()) socket.resume();
        keep.put(socket, this.#requests + 1);
      } else {
        // A body that ended with the connection (no Content-Length) leaves its next read buffer
        // in the socket until the socket connects again: such a socket is not kept idle, so an
        // idle socket never holds 64 KiB.
        releaseSocket(socket, clean);
      }
      this.#streamTarget = null;
    }
    if (this.#timings.total < 0) this.#timings.total = performance.now() - this.#started;
    this.#onDone({
      ok: this.#headReceived,
      failure: !this.#headReceived && err !== undefined && chargesBackend(err),
      error: err,
      headMs: this.#headReceived ? this.#timings.head : undefined,
    });
  }
}
