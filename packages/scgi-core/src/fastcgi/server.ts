/**
 * A Node FastCGI responder (FastCGI Specification 1.0 §6.2): the application side, so Node apps
 * can run behind nginx `fastcgi_pass` and tests can run a FastCGI backend whose every byte they
 * control. It mirrors `createScgiServer` (src/scgi/server.ts): same handler signature, request and
 * response objects, and a malformed stream closes the connection (there is nothing to answer).
 *
 * One request per connection at a time (FCGI_MPXS_CONNS=0, like PHP-FPM and flup): a second
 * BEGIN_REQUEST while one is active gets END_REQUEST CANT_MPX_CONN. FCGI_KEEP_CONN keeps the
 * connection for the next request; without it the server closes after END_REQUEST.
 */
import { createServer, type Server, type ServerOpts, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { CgiServerResponse } from '../cgi/server-response.js';
import { checkKnownKeys, intOption } from '../engine/option-checks.js';
import {
  FastcgiPairsError,
  FastcgiRecordError,
  FastcgiTruncatedError,
  InvalidOptionError,
  RequestAbortedError,
  UpstreamBodyError,
} from '../errors.js';
import {
  BODY_LENGTH,
  FCGI_MAX_CONNS,
  FCGI_MAX_REQS,
  FCGI_MPXS_CONNS,
  HEADER_LENGTH,
  MAX_KNOWN_TYPE,
  NULL_REQUEST_ID,
  ProtocolStatus,
  RecordType,
  Role,
  recordTypeName,
} from './constants.js';
import { encodeStreamChunk } from './encoder.js';
import { RecordReader } from './record-reader.js';
import {
  decodeBeginRequestBody,
  decodePairs,
  encodePairs,
  encodeRecord,
  writeEndRequestBody,
  writeHeader,
} from './records.js';

export interface FastcgiServerOptions {
  /**
   * Largest PARAMS stream (all CGI variables of a request) in bytes; a longer one closes the
   * connection. The FastCGI counterpart of `maxHeadSize` of the SCGI server.
   * @default 65536
   */
  maxParamsSize?: number;
  /**
   * Connections served at once (`server.maxConnections`), reported to GET_VALUES as
   * FCGI_MAX_CONNS and FCGI_MAX_REQS (one request per connection).
   * @default 1024
   */
  maxConnections?: number;
  /** Called with each connection-level failure (malformed records, socket errors); defaults to ignoring them. */
  onError?: (err: Error, socket: Socket) => void;
  /** Passed to `net.createServer`. */
  serverOptions?: ServerOpts;
}

const OPTION_KEYS: ReadonlySet<string> = new Set([
  'maxParamsSize',
  'maxConnections',
  'onError',
  'serverOptions',
]);

/** The request side of one FastCGI request: its environment and its STDIN stream as the body. */
export class FastcgiServerRequest extends Readable {
  /** Variables decoded as latin1 (PEP 3333's rule), in arrival order. */
  readonly env: Readonly<Record<string, string>>;
  /** Raw variable bytes, for values that are not text (PATH_INFO). */
  readonly pairs: ReadonlyArray<readonly [string, Buffer]>;
  /** CONTENT_LENGTH when it is a decimal number, else null (the body ends with its empty STDIN record anyway). */
  readonly contentLength: number | null;
  readonly requestId: number;
  /** FCGI_KEEP_CONN: the connection serves another request after this one. */
  readonly keepConn: boolean;
  readonly socket: Socket;
  #complete = false;
  readonly #resume: () => void;

  constructor(
    socket: Socket,
    requestId: number,
    keepConn: boolean,
    pairs: Array<[string, Buffer]>,
    resume: () => void,
  ) {
    super({ highWaterMark: 64 * 1024 });
    this.socket = socket;
    this.requestId = requestId;
    this.keepConn = keepConn;
    this.pairs = pairs;
    const env: Record<string, string> = {};
    for (const [name, value] of pairs) env[name] = value.toString('latin1');
    this.env = env;
    const cl = env.CONTENT_LENGTH;
    this.contentLength = cl !== undefined && /^\d{1,15}$/.test(cl) ? Number(cl) : null;
    this.#resume = resume;
  }

  get method(): string {
    return this.env.REQUEST_METHOD ?? 'GET';
  }
  get url(): string {
    return this.env.REQUEST_URI ?? '/';
  }
  /** True once the empty STDIN record came. */
  get complete(): boolean {
    return this.#complete;
  }

  /**
   * @internal STDIN content (a view of the socket's chunk: net.Socket never reuses one, so no
   * copy); false when the reader wants no more for now (backpressure).
   */
  feed(content: Buffer): boolean {
    return this.destroyed ? true : this.push(content);
  }

  /** @internal the empty STDIN record. */
  finishBody(): void {
    this.#complete = true;
    if (!this.destroyed) this.push(null);
  }

  /** @internal the connection or the request ended before the body did. */
  cut(err: Error): void {
    if (!this.#complete && !this.destroyed) this.destroy(err);
  }

  override _read(): void {
    this.#resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // As the SCGI server and Node's http.IncomingMessage: an 'error' only for an app that listens.
    cb(this.listenerCount('error') > 0 ? err : null);
  }
}

/** What a response needs from its connection. */
interface ResponseLink {
  write(data: Buffer[], cb?: (err?: Error | null) => void): void;
  complete(cb: (err?: Error | null) => void): void;
}

/**
 * The response side: the same API as the SCGI server's response (src/cgi/server-response.ts);
 * the CGI response goes out as STDOUT records, then the empty STDOUT record and END_REQUEST.
 */
export class FastcgiServerResponse extends CgiServerResponse {
  readonly requestId: number;
  readonly #link: ResponseLink;

  /** @internal made by the server for each request. */
  constructor(socket: Socket, requestId: number, link: ResponseLink) {
    super(socket);
    this.requestId = requestId;
    this.#link = link;
  }

  protected override output(data: Buffer[], cb?: (err?: Error | null) => void): void {
    const content = data.length === 1 ? data[0]! : Buffer.concat(data);
    this.#link.write(encodeStreamChunk(RecordType.STDOUT, this.requestId, content), cb);
  }

  protected override finish(cb: (err?: Error | null) => void): void {
    this.#link.complete(cb);
  }

  protected override abort(): void {
    this.socket.destroy();
  }
}

export type FastcgiHandler = (req: FastcgiServerRequest, res: FastcgiServerResponse) => void;

/** The empty STDOUT record and END_REQUEST, written together. */
function endOfRequest(
  id: number,
  appStatus: number,
  protocolStatus: number,
  stdout: boolean,
): Buffer {
  const out = Buffer.allocUnsafe((stdout ? HEADER_LENGTH : 0) + HEADER_LENGTH + BODY_LENGTH);
  let offset = stdout ? writeHeader(out, 0, RecordType.STDOUT, id, 0, 0) : 0;
  offset = writeHeader(out, offset, RecordType.END_REQUEST, id, BODY_LENGTH, 0);
  writeEndRequestBody(out, offset, appStatus, protocolStatus);
  return out;
}

/**
 * Creates a FastCGI server (a `net.Server`: call `listen()` with a port or a Unix socket path).
 * The handler gets one request and one response per FastCGI request.
 *
 * @throws InvalidOptionError for a bad or unknown option (naming the closest known one)
 */
export function createFastcgiServer(
  handler: FastcgiHandler,
  options: FastcgiServerOptions = {},
): Server {
  if (typeof handler !== 'function') throw new InvalidOptionError('handler', 'must be a function');
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionError('options', 'must be an object');
  }
  checkKnownKeys(options, OPTION_KEYS);
  const maxParamsSize = intOption('maxParamsSize', options.maxParamsSize, 65536, 1);
  const maxConnections = intOption('maxConnections', options.maxConnections, 1024, 1);
  if (options.onError !== undefined && typeof options.onError !== 'function') {
    throw new InvalidOptionError('onError', 'must be a function');
  }
  const settings = Object.freeze({
    handler,
    maxParamsSize,
    onError: options.onError,
    values: encodePairs([
      [FCGI_MAX_CONNS, String(maxConnections)],
      [FCGI_MAX_REQS, String(maxConnections)],
      [FCGI_MPXS_CONNS, '0'],
    ]),
  });
  // allowHalfOpen: a client that shuts down its sending side after the request still gets its answer.
  const server = createServer({ allowHalfOpen: true, ...options.serverOptions }, (socket) =>
    serveConnection(socket, settings),
  );
  server.maxConnections = maxConnections;
  return server;
}

interface Settings {
  readonly handler: FastcgiHandler;
  readonly maxParamsSize: number;
  readonly onError: ((err: Error, socket: Socket) => void) | undefined;
  /** The GET_VALUES_RESULT pairs of every variable we know. */
  readonly values: Buffer;
}

interface Active {
  readonly id: number;
  readonly keepConn: boolean;
  /** PARAMS stream so far (until its empty record). */
  params: Buffer[] | null;
  paramsLength: number;
  req: FastcgiServerRequest | null;
  res: FastcgiServerResponse | null;
}

enum Kind {
  Ignore,
  Whole,
  Params,
  Stdin,
}

function serveConnection(socket: Socket, settings: Settings): void {
  let active: Active | null = null;
  /** Set once the connection is to close after what is written (no KEEP_CONN, or an error). */
  let closing = false;
  let kind = Kind.Ignore;
  let type = 0;
  let recordId = 0;
  /** Content length of the current record: an empty PARAMS or STDIN record ends its stream. */
  let recordLength = 0;
  let whole: Buffer[] = [];

  const fail = (err: Error) => {
    if (socket.destroyed) return;
    settings.onError?.(err, socket);
    socket.destroy();
  };

  const send = (data: Buffer | Buffer[], cb?: (err?: Error | null) => void) => {
    if (socket.destroyed || socket.writableEnded) {
      if (cb) process.nextTick(cb);
      return;
    }
    if (!Array.isArray(data)) {
      socket.write(data, cb);
      return;
    }
    if (data.length === 0) {
      if (cb) process.nextTick(cb);
      return;
    }
    socket.cork();
    for (let i = 0; i < data.length - 1; i++) socket.write(data[i]!);
    socket.write(data[data.length - 1]!, cb);
    socket.uncork();
  };

  /** The active request is over (response complete or aborted): next request, or close. */
  const release = (done: Active) => {
    if (active !== done) return;
    active = null;
    done.req?.cut(new UpstreamBodyError('the response ended before the request body'));
    if (done.keepConn) socket.resume();
    else {
      closing = true;
      socket.end();
    }
  };

  const startRequest = (current: Active, pairs: Array<[string, Buffer]>) => {
    const req = new FastcgiServerRequest(socket, current.id, current.keepConn, pairs, () => {
      if (active === current) socket.resume();
    });
    const res = new FastcgiServerResponse(socket, current.id, {
      write: (data, cb) => {
        if (active === current) send(data, cb);
        else if (cb) process.nextTick(cb);
      },
      complete: (cb) => {
        if (active !== current) return process.nextTick(cb);
        send(endOfRequest(current.id, 0, ProtocolStatus.REQUEST_COMPLETE, true), cb);
        release(current);
      },
    });
    current.req = req;
    current.res = res;
    try {
      settings.handler(req, res);
    } catch (err) {
      fail(err as Error);
    }
  };

  const onWhole = (content: Buffer) => {
    if (recordId === NULL_REQUEST_ID) {
      if (type === RecordType.GET_VALUES) {
        const asked = new Set(decodePairs(content).map(([name]) => name));
        const known = decodePairs(settings.values).filter(([name]) => asked.has(name));
        send(encodeRecord(RecordType.GET_VALUES_RESULT, 0, encodePairs(known)));
      } else {
        // Spec §4.2: a management record of a type we do not know gets UNKNOWN_TYPE.
        const body = Buffer.alloc(BODY_LENGTH);
        body[0] = type;
        send(encodeRecord(RecordType.UNKNOWN_TYPE, 0, body));
      }
      return;
    }
    if (type === RecordType.ABORT_REQUEST) {
      const current = active!;
      current.req?.cut(new RequestAbortedError('FCGI_ABORT_REQUEST'));
      current.res?.destroy();
      // Spec §5.4: the application answers an abort with END_REQUEST; appStatus 1 says the
      // request did not run to its end. Output already framed before it stays in order.
      send(endOfRequest(current.id, 1, ProtocolStatus.REQUEST_COMPLETE, true));
      release(current);
      return;
    }
    // BEGIN_REQUEST
    const { role, keepConn } = decodeBeginRequestBody(content);
    if (active !== null) {
      if (active.id === recordId) {
        throw new FastcgiRecordError(`BEGIN_REQUEST for request ${recordId}, which is active`);
      }
      send(endOfRequest(recordId, 0, ProtocolStatus.CANT_MPX_CONN, false));
      return;
    }
    if (role !== Role.RESPONDER) {
      send(endOfRequest(recordId, 0, ProtocolStatus.UNKNOWN_ROLE, false));
      if (!keepConn) {
        closing = true;
        socket.end();
      }
      return;
    }
    active = { id: recordId, keepConn, params: [], paramsLength: 0, req: null, res: null };
  };

  const reader = new RecordReader({
    onHeader(t, id, length) {
      type = t;
      recordId = id;
      recordLength = length;
      kind = Kind.Ignore;
      whole = [];
      if (id === NULL_REQUEST_ID) {
        kind = Kind.Whole; // a management record: GET_VALUES, or one we answer with UNKNOWN_TYPE
        return;
      }
      const mine = active !== null && active.id === id;
      switch (t) {
        case RecordType.BEGIN_REQUEST:
          if (length !== BODY_LENGTH) {
            throw new FastcgiRecordError(
              `BEGIN_REQUEST with a body of ${length} bytes instead of 8`,
            );
          }
          kind = Kind.Whole;
          return;
        case RecordType.ABORT_REQUEST:
          if (mine) kind = Kind.Whole;
          return;
        case RecordType.PARAMS:
          if (!mine) return; // spec §3.3: records of a request id not in use are ignored
          if (active!.params === null) {
            throw new FastcgiRecordError('PARAMS after the end of the PARAMS stream');
          }
          if (active!.paramsLength + length > settings.maxParamsSize) {
            throw new FastcgiPairsError(
              `the PARAMS stream is over the limit of ${settings.maxParamsSize} bytes`,
            );
          }
          kind = Kind.Params;
          return;
        case RecordType.STDIN:
          if (!mine) return;
          if (active!.params !== null) {
            throw new FastcgiRecordError('STDIN before the end of the PARAMS stream');
          }
          if (active!.req!.complete && length > 0) {
            throw new FastcgiRecordError('STDIN content after the end of the STDIN stream');
          }
          kind = Kind.Stdin;
          return;
        case RecordType.DATA:
          return; // the FILTER role's stream: a responder has no use for it
        default:
          throw new FastcgiRecordError(
            t > MAX_KNOWN_TYPE || t === 0
              ? `unknown record type ${t}`
              : `${recordTypeName(t)} from the web server`,
          );
      }
    },
    onContent(content) {
      switch (kind) {
        case Kind.Whole:
          whole.push(content);
          return;
        case Kind.Params:
          active!.params!.push(content);
          active!.paramsLength += content.length;
          return;
        case Kind.Stdin:
          if (!active!.req!.feed(content)) socket.pause();
          return;
        default:
          return;
      }
    },
    onRecordEnd() {
      if (kind === Kind.Whole) {
        onWhole(whole.length === 1 ? whole[0]! : Buffer.concat(whole));
        whole = [];
      } else if (kind === Kind.Params && type === RecordType.PARAMS) {
        const current = active!;
        // The empty PARAMS record ends the stream: decode the whole of it now (a pair may span records).
        if (current.params !== null && recordLength === 0) {
          const stream = Buffer.concat(current.params, current.paramsLength);
          current.params = null;
          startRequest(current, decodePairs(stream, { maxLength: settings.maxParamsSize }));
        }
      } else if (kind === Kind.Stdin && recordLength === 0) {
        active!.req!.finishBody();
      }
    },
  });

  socket.on('data', (chunk: Buffer) => {
    if (closing) return; // after our last END_REQUEST nothing more is read
    try {
      reader.push(chunk);
    } catch (err) {
      fail(err as Error);
    }
  });
  socket.on('error', (err) => {
    settings.onError?.(err, socket);
  });
  socket.on('end', () => {
    // A web server that shuts down its side mid-record or mid-request will never read an
    // answer to it: close (allowHalfOpen would keep the socket open for good). One whose
    // request is complete still gets the response.
    if (closing) return;
    if (!reader.atBoundary) {
      fail(new FastcgiTruncatedError(reader.describe()));
      return;
    }
    // Idle (between KEEP_CONN requests): end our side too, after what is still being written.
    if (active === null) socket.end();
    else if (!active.req?.complete) socket.destroy();
  });
  socket.on('close', () => {
    const current = active;
    active = null;
    if (current === null) return;
    current.req?.cut(new UpstreamBodyError('the connection closed before the request body ended'));
    if (current.res !== null && !current.res.writableFinished) current.res.destroy();
  });
}
