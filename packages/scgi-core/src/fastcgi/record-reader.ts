/**
 * The byte-level FastCGI record parser both sides share (the client's response decoder in
 * ./decoder.ts and the application side in ./server.ts): a small state machine in the style of
 * ws `lib/receiver.js`. Chunks may split a record at any offset, the header included; content
 * reaches the handler as views into the chunks (never copied here), and padding is skipped
 * wherever it falls.
 */
import { FastcgiTruncatedError, FastcgiVersionError } from '../errors.js';
import { FCGI_VERSION, HEADER_LENGTH, recordTypeName } from './constants.js';

/** What a {@link RecordReader} reports, record by record. Any method may throw to stop parsing. */
export interface RecordHandler {
  /** A header was read (version already checked). */
  onHeader(type: number, requestId: number, contentLength: number): void;
  /** Part of the current record's content: a view into the pushed chunk, not a copy. */
  onContent(content: Buffer): void;
  /** The current record is complete: its content and its padding were read. */
  onRecordEnd(): void;
}

enum State {
  Header,
  Content,
  Padding,
  Failed,
}

export class RecordReader {
  readonly #handler: RecordHandler;
  /** A header split across chunks is gathered here (made on the first such split). */
  #header: Buffer | null = null;
  #have = 0;
  #state = State.Header;
  #remaining = 0;
  #padding = 0;
  #type = 0;
  #error: unknown = null;

  constructor(handler: RecordHandler) {
    this.#handler = handler;
  }

  /** True between records, i.e. the byte stream could end here without cutting a record. */
  get atBoundary(): boolean {
    return this.#state === State.Header && this.#have === 0;
  }

  /**
   * Parses `chunk`. Throws FastcgiVersionError for a header whose version is not 1, and
   * whatever the handler throws; after a throw every later push throws the same error.
   */
  push(chunk: Buffer): void {
    if (this.#state === State.Failed) throw this.#error;
    try {
      this.#consume(chunk);
    } catch (err) {
      this.#state = State.Failed;
      this.#error = err;
      throw err;
    }
  }

  /** Where the byte stream stands, for a truncation message: `inside a STDOUT record`... */
  describe(): string {
    if (this.#state === State.Header) {
      return this.#have === 0
        ? 'between records'
        : `inside a record header (${this.#have} of ${HEADER_LENGTH} bytes)`;
    }
    const what = recordTypeName(this.#type);
    return this.#state === State.Content
      ? `inside a ${what} record (${this.#remaining} content bytes missing)`
      : `inside the padding of a ${what} record (${this.#padding} bytes missing)`;
  }

  /** Throws FastcgiTruncatedError unless the stream is between records. */
  assertBoundary(): void {
    if (this.#state === State.Failed) throw this.#error;
    if (!this.atBoundary) throw new FastcgiTruncatedError(this.describe());
  }

  #consume(chunk: Buffer): void {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      switch (this.#state) {
        case State.Header: {
          // The header's fields are read where they are: in the chunk when all 8 bytes are
          // there (nearly always), else in #header once the split one is gathered.
          let h = chunk;
          let at = i;
          if (this.#have === 0 && n - i >= HEADER_LENGTH) {
            i += HEADER_LENGTH;
          } else {
            if (this.#header === null) this.#header = Buffer.allocUnsafe(HEADER_LENGTH);
            h = this.#header;
            at = 0;
            const take = Math.min(HEADER_LENGTH - this.#have, n - i);
            chunk.copy(h, this.#have, i, i + take);
            this.#have += take;
            i += take;
            if (this.#have < HEADER_LENGTH) return;
            this.#have = 0;
          }
          if (h[at] !== FCGI_VERSION) throw new FastcgiVersionError(h[at]!);
          this.#type = h[at + 1]!;
          this.#remaining = (h[at + 4]! << 8) | h[at + 5]!;
          this.#padding = h[at + 6]!;
          this.#state = State.Content;
          this.#handler.onHeader(this.#type, (h[at + 2]! << 8) | h[at + 3]!, this.#remaining);
          this.#afterContent();
          break;
        }
        case State.Content: {
          const take = Math.min(this.#remaining, n - i);
          this.#remaining -= take;
          const piece = chunk.subarray(i, i + take);
          i += take;
          this.#handler.onContent(piece);
          this.#afterContent();
          break;
        }
        case State.Padding: {
          const take = Math.min(this.#padding, n - i);
          this.#padding -= take;
          i += take;
          this.#afterContent();
          break;
        }
      }
    }
  }

  /** Moves on from content to padding to the next header, ending the record when both are read. */
  #afterContent(): void {
    if (this.#state === State.Content && this.#remaining === 0) this.#state = State.Padding;
    if (this.#state === State.Padding && this.#padding === 0) {
      this.#state = State.Header;
      this.#handler.onRecordEnd();
    }
  }
}
