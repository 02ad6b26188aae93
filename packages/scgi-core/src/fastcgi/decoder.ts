/**
 * The client side's response de-framing (FastCGI Specification 1.0 §5.3, §5.5): STDOUT and
 * STDERR content, then END_REQUEST, for one request on one connection. Input may be split at
 * any offset; STDOUT content comes out as views into the pushed chunks.
 *
 * Everything the application may not send is a hard error (502), never skipped: a wrong
 * version, an unknown or client-only record type, a record for another request id, a
 * management record nobody asked for, anything after END_REQUEST, an END_REQUEST whose body is
 * not 8 bytes. A connection is reusable (FCGI_KEEP_CONN) only when END_REQUEST was the last
 * byte received and nothing failed.
 */
import { FastcgiRecordError, FastcgiTruncatedError } from '../errors.js';
import {
  BODY_LENGTH,
  MAX_KNOWN_TYPE,
  NULL_REQUEST_ID,
  RecordType,
  recordTypeName,
} from './constants.js';
import { RecordReader } from './record-reader.js';
import { decodeEndRequestBody, type EndRequestBody } from './records.js';

export interface FastcgiResponseHandlers {
  /** STDOUT content (the CGI response), in order; a view into the pushed chunk. */
  onStdout(content: Buffer): void;
  /** STDERR content (the application's log); a view into the pushed chunk. Ignored when absent. */
  onStderr?(content: Buffer): void;
  /** END_REQUEST: the response is complete (its record fully read, padding included). */
  onEnd(end: EndRequestBody): void;
  /**
   * A whole management record (request id 0: GET_VALUES_RESULT, UNKNOWN_TYPE). Without this
   * handler a management record is a protocol error: only a client that sent GET_VALUES
   * expects one.
   */
  onManagement?(type: number, content: Buffer): void;
}

enum Kind {
  Skip,
  Stdout,
  Stderr,
  End,
  Management,
}

/**
 * One request's response decoder. `push()` each chunk the connection reads, `end()` when the
 * connection ends; both throw typed errors (`SCGI_ERR_FASTCGI_*`, status 502).
 */
export class FastcgiResponseDecoder {
  readonly #handlers: FastcgiResponseHandlers;
  readonly #reader: RecordReader;
  #requestId: number;
  #kind = Kind.Skip;
  #type = 0;
  #stdoutClosed = false;
  #ended = false;
  #failed = false;
  #error: unknown = null;
  /** Content of a record read whole (END_REQUEST, management), across chunks. */
  #parts: Buffer[] = [];
  #partsLength = 0;

  constructor(handlers: FastcgiResponseHandlers, requestId = 1) {
    this.#handlers = handlers;
    this.#requestId = requestId;
    this.#reader = new RecordReader({
      onHeader: (type, id, length) => this.#onHeader(type, id, length),
      onContent: (content) => this.#onContent(content),
      onRecordEnd: () => this.#onRecordEnd(),
    });
  }

  /** True once END_REQUEST was read. */
  get ended(): boolean {
    return this.#ended;
  }

  /**
   * True when the connection may carry another request: END_REQUEST was read, no byte followed
   * it and nothing failed. A byte after END_REQUEST makes `push` throw and this false.
   */
  get reusable(): boolean {
    return this.#ended && !this.#failed && this.#reader.atBoundary;
  }

  /** Readies the decoder for the next request on a reusable connection. */
  reset(requestId = this.#requestId): void {
    if (!this.reusable && this.#ended) {
      throw new FastcgiRecordError('reset() of a connection that is not reusable');
    }
    this.#requestId = requestId;
    this.#stdoutClosed = false;
    this.#ended = false;
  }

  /** Parses a chunk; throws the typed error of the first violation (and again on every later call). */
  push(chunk: Buffer): void {
    if (this.#failed) throw this.#error;
    try {
      this.#reader.push(chunk);
    } catch (err) {
      this.#fail(err);
    }
  }

  #fail(err: unknown): never {
    this.#failed = true;
    this.#error = err;
    throw err;
  }

  /**
   * The connection ended (EOF or close). Throws FastcgiTruncatedError unless END_REQUEST was
   * read: without it the response may be cut short, so it must not pass for a complete one.
   */
  end(): void {
    if (this.#ended) return;
    if (this.#failed) throw this.#error;
    try {
      this.#reader.assertBoundary();
    } catch (err) {
      this.#fail(err);
    }
    this.#fail(new FastcgiTruncatedError('before END_REQUEST'));
  }

  #onHeader(type: number, id: number, length: number): void {
    this.#type = type;
    if (this.#ended) {
      throw new FastcgiRecordError(`${recordTypeName(type)} after END_REQUEST`);
    }
    if (type > MAX_KNOWN_TYPE || type === 0) {
      throw new FastcgiRecordError(`unknown record type ${type}`);
    }
    if (id === NULL_REQUEST_ID) {
      if (this.#handlers.onManagement === undefined) {
        throw new FastcgiRecordError(
          `${recordTypeName(type)} management record while none was asked for`,
        );
      }
      if (type !== RecordType.GET_VALUES_RESULT && type !== RecordType.UNKNOWN_TYPE) {
        throw new FastcgiRecordError(`${recordTypeName(type)} as a management record`);
      }
      this.#kind = Kind.Management;
      return;
    }
    if (id !== this.#requestId) {
      throw new FastcgiRecordError(
        `${recordTypeName(type)} for request id ${id}, but the request is ${this.#requestId}`,
      );
    }
    switch (type) {
      case RecordType.STDOUT:
        if (this.#stdoutClosed && length > 0) {
          throw new FastcgiRecordError('STDOUT content after the end of the STDOUT stream');
        }
        if (length === 0) this.#stdoutClosed = true;
        this.#kind = Kind.Stdout;
        return;
      case RecordType.STDERR:
        this.#kind = Kind.Stderr;
        return;
      case RecordType.END_REQUEST:
        if (length !== BODY_LENGTH) {
          throw new FastcgiRecordError(`END_REQUEST with a body of ${length} bytes instead of 8`);
        }
        this.#kind = Kind.End;
        return;
      default:
        throw new FastcgiRecordError(`${recordTypeName(type)} from the application`);
    }
  }

  #onContent(content: Buffer): void {
    switch (this.#kind) {
      case Kind.Stdout:
        this.#handlers.onStdout(content);
        return;
      case Kind.Stderr:
        this.#handlers.onStderr?.(content);
        return;
      case Kind.End:
      case Kind.Management:
        this.#parts.push(content);
        this.#partsLength += content.length;
        return;
      default:
        return;
    }
  }

  #onRecordEnd(): void {
    const kind = this.#kind;
    this.#kind = Kind.Skip;
    if (kind !== Kind.End && kind !== Kind.Management) return;
    const content =
      this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts, this.#partsLength);
    this.#parts = [];
    this.#partsLength = 0;
    if (kind === Kind.End) {
      this.#ended = true;
      this.#handlers.onEnd(decodeEndRequestBody(content));
    } else {
      this.#handlers.onManagement!(this.#type, content);
    }
  }
}
