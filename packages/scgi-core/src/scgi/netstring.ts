/**
 * Netstrings (https://cr.yp.to/proto/netstrings.txt): `<decimal length>:<payload>,`.
 *
 * SCGI frames its header block as one netstring, and the request body follows the comma
 * directly, so the decoder keeps whatever came after the comma in `rest`.
 */
import {
  HeadMalformedError,
  InvalidOptionError,
  NetstringCommaError,
  NetstringLeadingZeroError,
  NetstringLengthError,
  NetstringTooLongError,
} from '../errors.js';

/** Default limit on the payload length of a decoded netstring, in bytes. */
export const DEFAULT_NETSTRING_MAX_LENGTH = 65536;

const COLON = 0x3a;
const COMMA = 0x2c;
const ZERO = 0x30;
const NINE = 0x39;

/**
 * Encodes `payload` as a netstring. Strings are encoded as UTF-8.
 *
 * @returns a new Buffer `<len>:<payload>,`
 */
export function encodeNetstring(payload: Buffer | string): Buffer {
  const len = typeof payload === 'string' ? Buffer.byteLength(payload, 'utf8') : payload.length;
  const prefix = `${len}:`;
  const out = Buffer.allocUnsafe(prefix.length + len + 1);
  out.write(prefix, 0, 'latin1');
  if (typeof payload === 'string') out.write(payload, prefix.length, 'utf8');
  else out.set(payload, prefix.length);
  out[out.length - 1] = COMMA;
  return out;
}

/** Options of {@link NetstringDecoder}. */
export interface NetstringDecoderOptions {
  /**
   * Largest payload length accepted, in bytes. A longer netstring is refused as soon as its
   * length digits exceed the limit, before any payload is buffered, so a peer cannot make us
   * buffer (or read digits) without bound.
   * @default 65536
   */
  maxLength?: number;
}

/** Validates the `maxLength` option shared by the netstring and SCGI head decoders. */
function resolveMaxLength(maxLength: number | undefined): number {
  const value = maxLength ?? DEFAULT_NETSTRING_MAX_LENGTH;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidOptionError('maxLength', `must be a non-negative safe integer, got ${value}`);
  }
  return value;
}

// Decoder states (plain numbers: no enum, so the file stays erasable TypeScript).
const State = { Length: 0, Payload: 1, Comma: 2, Done: 3, Failed: 4 } as const;
type State = (typeof State)[keyof typeof State];

/**
 * Incremental netstring decoder: feed it bytes split at any offset with {@link push}.
 *
 * A small state machine with hard limits (after ws's `Receiver`): length digits, payload,
 * comma. Errors are thrown at the byte that proves the input wrong, whatever the chunking,
 * and the decoder stays failed: every later `push` throws the same error.
 *
 * The payload and `rest` are views into the pushed chunks when possible (no copy): a
 * netstring that arrives in one chunk is returned with `subarray`; one that spans chunks is
 * assembled with a single `Buffer.concat`. Do not reuse pushed buffers while you hold them.
 */
export class NetstringDecoder {
  readonly #maxLength: number;
  #state: State = State.Length;
  #length = 0;
  #digits = 0;
  #remaining = 0;
  #chunks: Buffer[] = [];
  #payload: Buffer | null = null;
  #rest: Buffer = Buffer.alloc(0);
  #error: unknown = null;

  constructor(options: NetstringDecoderOptions = {}) {
    this.#maxLength = resolveMaxLength(options.maxLength);
  }

  /** True once a complete netstring (comma included) has been decoded. */
  get done(): boolean {
    return this.#state === State.Done;
  }

  /** The decoded payload once {@link done}, else null. */
  get payload(): Buffer | null {
    return this.#payload;
  }

  /** Bytes received after the comma (for SCGI: the start of the body); empty until {@link done}. */
  get rest(): Buffer {
    return this.#rest;
  }

  /**
   * Feeds the next bytes.
   *
   * @returns the payload on the call that completes the netstring, else null. After that,
   *   further pushes return null and their bytes are appended to {@link rest} (this copies;
   *   callers normally switch to reading the body directly once done).
   * @throws NetstringLeadingZeroError, NetstringLengthError, NetstringTooLongError,
   *   NetstringCommaError
   */
  push(chunk: Buffer): Buffer | null {
    if (this.#state === State.Failed) throw this.#error;
    if (this.#state === State.Done) {
      if (chunk.length > 0) {
        this.#rest = this.#rest.length === 0 ? chunk : Buffer.concat([this.#rest, chunk]);
      }
      return null;
    }
    try {
      return this.#consume(chunk);
    } catch (err) {
      this.#state = State.Failed;
      this.#error = err;
      this.#chunks = [];
      throw err;
    }
  }

  #consume(chunk: Buffer): Buffer | null {
    const n = chunk.length;
    let i = 0;
    if (this.#state === State.Length) {
      for (; i < n; i++) {
        const c = chunk[i]!;
        if (c === COLON) {
          if (this.#digits === 0) throw new NetstringLengthError('empty length');
          this.#state = State.Payload;
          this.#remaining = this.#length;
          i++;
          break;
        }
        if (c < ZERO || c > NINE) {
          throw new NetstringLengthError(
            `unexpected byte 0x${c.toString(16).padStart(2, '0')} at offset ${this.#digits}`,
          );
        }
        // "0:" is the empty netstring, but "01:" is refused by the spec ("leading zeros are
        // prohibited") so that every length has exactly one spelling.
        if (this.#digits === 1 && this.#length === 0) throw new NetstringLeadingZeroError();
        this.#length = this.#length * 10 + (c - ZERO);
        this.#digits++;
        // Checked per digit: the length only grows, so this also bounds the number of digits
        // (at most one more than maxLength has) and keeps #length a safe integer.
        if (this.#length > this.#maxLength) {
          throw new NetstringTooLongError(this.#length, this.#maxLength);
        }
      }
      if (this.#state === State.Length) return null;
    }

    if (this.#state === State.Payload) {
      const available = n - i;
      if (available < this.#remaining) {
        if (available > 0) this.#chunks.push(chunk.subarray(i));
        this.#remaining -= available;
        return null;
      }
      const end = i + this.#remaining;
      if (this.#chunks.length === 0) {
        this.#payload = chunk.subarray(i, end);
      } else {
        this.#chunks.push(chunk.subarray(i, end));
        this.#payload = Buffer.concat(this.#chunks, this.#length);
        this.#chunks = [];
      }
      this.#remaining = 0;
      this.#state = State.Comma;
      i = end;
    }

    // State.Comma
    if (i >= n) return null;
    if (chunk[i] !== COMMA) throw new NetstringCommaError();
    this.#state = State.Done;
    this.#rest = chunk.subarray(i + 1);
    return this.#payload;
  }
}

/** Result of {@link decodeNetstring}. */
export interface DecodedNetstring {
  /** The payload (a view into the input). */
  payload: Buffer;
  /** Bytes after the comma (a view into the input). */
  rest: Buffer;
}

/**
 * Decodes one netstring at the start of `buf`.
 *
 * @param maxLength largest payload length accepted, in bytes
 * @throws HeadMalformedError('incomplete netstring') when `buf` ends before the comma, plus
 *   the errors of {@link NetstringDecoder.push}
 */
export function decodeNetstring(
  buf: Buffer,
  maxLength: number = DEFAULT_NETSTRING_MAX_LENGTH,
): DecodedNetstring {
  const decoder = new NetstringDecoder({ maxLength });
  const payload = decoder.push(buf);
  if (payload === null) throw new HeadMalformedError('incomplete netstring');
  return { payload, rest: decoder.rest };
}
