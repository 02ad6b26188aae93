/**
 * The SCGI request head (https://python.ca/scgi/protocol.txt): one netstring holding
 * NUL-terminated name/value strings. CONTENT_LENGTH comes first (also when "0"), SCGI is "1",
 * no name appears twice. Strict servers (flup, Perl's SCGI) close without answering when these
 * rules are broken, so the encoder enforces them instead of trusting the caller.
 */

import { isLatin1, putLatin1, putPairs } from '../cgi/latin1.js';
import {
  HeadContentLengthError,
  HeadDuplicateError,
  HeadEmptyNameError,
  HeadMalformedError,
  HeadNulError,
} from '../errors.js';
import type { EnvInput, EnvPair, EnvValue } from '../types.js';
import { NetstringDecoder, type NetstringDecoderOptions } from './netstring.js';

const CONTENT_LENGTH = 'CONTENT_LENGTH';
const SCGI = 'SCGI';
const SCGI_PAIR = 'SCGI\x001\x00';
/**
 * Up to this many names, duplicates are found with a small open-addressing table of indexes
 * (below) instead of a Set: no allocation per head, and a name is compared in full only with
 * the few names of the same length that hash alike. A nested loop over all earlier names was
 * 0.8 µs of a 22-variable head; a Set per head allocates more than the head itself.
 */
const SMALL_ENV = 32;
/** Table slots: a power of two, at least twice SMALL_ENV. */
const SLOTS = 64;
/** `slotIndex[h]` holds an index into the pair list when `slotRound[h] === round`. */
const slotRound = new Int32Array(SLOTS);
const slotIndex = new Int32Array(SLOTS);
let round = 0;

/** A slot for a non-empty name: its length and two of its chars. */
function slotOf(name: string): number {
  const n = name.length;
  return (n * 37 + name.charCodeAt(n >> 1) * 7 + name.charCodeAt(n - 1)) & (SLOTS - 1);
}

/**
 * Parses a CONTENT_LENGTH value: `0` or a decimal without leading zeros, sign or spaces, and
 * at most Number.MAX_SAFE_INTEGER. Returns -1 when invalid.
 */
function parseContentLength(value: EnvValue | Uint8Array): number {
  const n = value.length;
  // 16 digits hold MAX_SAFE_INTEGER; longer cannot be a safe integer (no leading zeros).
  if (n === 0 || n > 16) return -1;
  const str = typeof value === 'string';
  let result = 0;
  for (let i = 0; i < n; i++) {
    const c = str ? value.charCodeAt(i) : (value as Uint8Array)[i]!;
    if (c < 0x30 || c > 0x39 || (i === 1 && result === 0)) return -1;
    result = result * 10 + (c - 0x30);
  }
  return Number.isSafeInteger(result) ? result : -1;
}

function show(value: EnvValue | Uint8Array): string {
  return JSON.stringify(
    typeof value === 'string' ? value : Buffer.from(value as Uint8Array).toString('latin1'),
  );
}

function latin1(bytes: Uint8Array): string {
  return (
    Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)
  ).toString('latin1');
}

function toList(env: EnvInput): readonly EnvPair[] {
  if (Array.isArray(env)) return env as readonly EnvPair[];
  if (typeof (env as Iterable<EnvPair>)[Symbol.iterator] === 'function') {
    return Array.from(env as Iterable<EnvPair>);
  }
  return Object.entries(env as Readonly<Record<string, EnvValue>>);
}

/**
 * Encodes a CGI environment as an SCGI head: ONE Buffer holding the netstring
 * `<len>:NAME\0value\0...,`, ready to be written before the body.
 *
 * - CONTENT_LENGTH is required and written first, wherever it is in `env`.
 * - `SCGI=1` is inserted right after it when absent; a present SCGI must be "1" and keeps its place.
 * - Other pairs keep their order (for a plain object: `Object.entries` order, so integer-like
 *   names come first).
 *
 * String encoding (names and values): a string whose every char code is below 256 is written
 * as latin1, one byte per char, so a string made with `buf.toString('latin1')` round-trips to
 * the exact original bytes; any other string is written as UTF-8. Pass a Buffer to send raw
 * bytes (e.g. a percent-decoded PATH_INFO that is not valid UTF-8).
 *
 * @throws HeadEmptyNameError for an empty name; HeadNulError for a NUL byte in a name or value
 *   (never truncated: a NUL would end the string early on the backend); HeadDuplicateError for
 *   a repeated name; HeadContentLengthError when CONTENT_LENGTH is missing or not a decimal
 *   integer without leading zeros, sign or spaces (at most 2^53-1); HeadMalformedError when SCGI
 *   is not "1" or a value is neither a string nor a Buffer.
 */
export function encodeScgiHead(env: EnvInput): Buffer {
  const list = toList(env);
  const n = list.length;
  let clIndex = -1;
  let scgiIndex = -1;
  // Bytes after CONTENT_LENGTH's pair, counting every string as latin1 (one byte per char);
  // a char above 0xff sends the whole head to the UTF-8 path.
  let size = 0;
  const seen = n > SMALL_ENV ? new Set<string>() : null;
  if (seen === null) {
    round = (round + 1) | 0;
    if (round === 0) {
      // Wrapped after 2^32 heads: no slot may look filled by an old head.
      slotRound.fill(0);
      round = 1;
    }
  }

  for (let i = 0; i < n; i++) {
    const pair = list[i]!;
    const name = pair[0];
    const value = pair[1] as EnvValue | Uint8Array;
    if (name.length === 0) throw new HeadEmptyNameError();
    if (name.indexOf('\0') !== -1) throw new HeadNulError(JSON.stringify(name));
    if (seen !== null) {
      if (seen.has(name)) throw new HeadDuplicateError(name);
      seen.add(name);
    } else {
      let h = slotOf(name);
      while (slotRound[h] === round) {
        if (list[slotIndex[h]!]![0] === name) throw new HeadDuplicateError(name);
        h = (h + 1) & (SLOTS - 1);
      }
      slotRound[h] = round;
      slotIndex[h] = i;
    }
    if (typeof value === 'string') {
      if (value.indexOf('\0') !== -1) throw new HeadNulError(name);
    } else if (value instanceof Uint8Array) {
      if (value.indexOf(0) !== -1) throw new HeadNulError(name);
    } else {
      throw new HeadMalformedError(`value of ${name} is not a string or Buffer`);
    }
    if (name === CONTENT_LENGTH) {
      clIndex = i;
      continue;
    }
    if (name === SCGI) scgiIndex = i;
    size += name.length + value.length + 2;
  }

  if (clIndex === -1) throw new HeadContentLengthError('missing');
  const clValue = list[clIndex]![1] as EnvValue | Uint8Array;
  const contentLength = parseContentLength(clValue);
  if (contentLength === -1) throw new HeadContentLengthError(show(clValue));
  if (scgiIndex !== -1) {
    const v = list[scgiIndex]![1] as EnvValue | Uint8Array;
    if (!(v.length === 1 && (typeof v === 'string' ? v === '1' : v[0] === 0x31))) {
      throw new HeadMalformedError(`SCGI must be "1", got ${show(v)}`);
    }
  }
  // Digits are ASCII: written as a string whatever type the caller used.
  const head = `${CONTENT_LENGTH}\0${contentLength}\0${scgiIndex === -1 ? SCGI_PAIR : ''}`;
  const payload = head.length + size;
  const prefix = `${payload}:`;
  // One exact buffer, the strings copied in char by char: no string is built per request. The
  // concatenated strings were the largest allocation of a small exchange, and under load young
  // garbage brings on full GCs (docs/tuning.md).
  const out = Buffer.allocUnsafe(prefix.length + payload + 1);
  const off = putPairs(out, putLatin1(out, putLatin1(out, 0, prefix), head), list, clIndex);
  if (off === -1) return encodeMixed(list, clIndex, head);
  out[off] = 0x2c;
  return out;
}

/** Slow path: some string needs UTF-8. Still one exact allocation, each string checked once. */
function encodeMixed(list: readonly EnvPair[], clIndex: number, head: string): Buffer {
  // Runs of latin1 text (even indexes) alternate with strings to write as UTF-8 (odd indexes).
  const segments: string[] = [];
  let run = head;
  let len = 0;
  const add = (s: string): void => {
    if (isLatin1(s)) {
      run += s;
    } else {
      segments.push(run, s);
      len += run.length + Buffer.byteLength(s, 'utf8');
      run = '';
    }
    run += '\0';
  };
  for (let i = 0; i < list.length; i++) {
    if (i === clIndex) continue;
    const [name, value] = list[i]!;
    add(name);
    add(typeof value === 'string' ? value : latin1(value));
  }
  segments.push(run);
  len += run.length;
  const prefix = `${len}:`;
  const out = Buffer.allocUnsafe(prefix.length + len + 1);
  let off = out.write(prefix, 0, 'latin1');
  for (let k = 0; k < segments.length; k++) {
    off += out.write(segments[k]!, off, k % 2 === 0 ? 'latin1' : 'utf8');
  }
  out[off] = 0x2c;
  return out;
}

/** A decoded SCGI head. */
export interface ScgiHead {
  /** Every pair in wire order; values are raw bytes, views into the received data (no copy). */
  pairs: Array<[name: string, value: Buffer]>;
  /**
   * The same pairs as latin1 strings (each byte one char, so no byte is lost; re-decode a
   * value from {@link pairs} as UTF-8 where the application expects text). Null prototype:
   * a name such as `__proto__` is an ordinary key.
   */
  env: Record<string, string>;
  /** CONTENT_LENGTH as a number: exactly this many body bytes follow the head. */
  contentLength: number;
}

/** A decoded SCGI head with the bytes that followed it. */
export interface DecodedScgiHead extends ScgiHead {
  /** Bytes after the netstring's comma: the start of the body (a view into the input). */
  rest: Buffer;
}

/** Options of {@link ScgiHeadDecoder} and {@link decodeScgiHead}. */
export type ScgiHeadDecoderOptions = NetstringDecoderOptions;

/** Splits and checks a netstring payload; see {@link ScgiHeadDecoder.push} for the rules. */
function parseHeadPayload(payload: Buffer): ScgiHead {
  const n = payload.length;
  if (n > 0 && payload[n - 1] !== 0) {
    throw new HeadMalformedError('the last string is not NUL-terminated');
  }
  const pairs: Array<[string, Buffer]> = [];
  const env: Record<string, string> = Object.create(null);
  let pos = 0;
  while (pos < n) {
    const nameEnd = payload.indexOf(0, pos);
    const valueEnd = payload.indexOf(0, nameEnd + 1);
    if (valueEnd === -1) throw new HeadMalformedError('odd number of strings');
    // Names are read as latin1: one char per byte, so any byte is kept and comparable.
    const name = payload.toString('latin1', pos, nameEnd);
    const value = payload.subarray(nameEnd + 1, valueEnd);
    if (name.length === 0) throw new HeadEmptyNameError();
    if (pairs.length === 0 && name !== CONTENT_LENGTH) {
      throw new HeadMalformedError('CONTENT_LENGTH is not first');
    }
    if (Object.hasOwn(env, name)) throw new HeadDuplicateError(name);
    pairs.push([name, value]);
    env[name] = value.toString('latin1');
    pos = valueEnd + 1;
  }
  if (pairs.length === 0) throw new HeadMalformedError('CONTENT_LENGTH is not first');
  const clValue = pairs[0]![1];
  const contentLength = parseContentLength(clValue);
  if (contentLength === -1) throw new HeadContentLengthError(show(clValue));
  const scgi = env[SCGI];
  if (scgi === undefined) throw new HeadMalformedError('SCGI is missing');
  if (scgi !== '1') throw new HeadMalformedError(`SCGI must be "1", got ${JSON.stringify(scgi)}`);
  return { pairs, env, contentLength };
}

/**
 * Incremental SCGI head decoder for the server side: feed it the connection's bytes, split
 * anywhere, until {@link push} returns the head; the body starts with {@link rest}.
 *
 * Errors are thrown by `push` and the decoder stays failed. Netstring framing errors come from
 * {@link NetstringDecoder} (a head longer than `maxLength` is refused from its length digits).
 */
export class ScgiHeadDecoder {
  readonly #netstring: NetstringDecoder;
  #head: ScgiHead | null = null;
  #error: unknown = null;

  /** @param options.maxLength largest head (netstring payload) accepted, in bytes; @default 65536 */
  constructor(options: ScgiHeadDecoderOptions = {}) {
    this.#netstring = new NetstringDecoder({ maxLength: options.maxLength });
  }

  /** True once the head is decoded. */
  get done(): boolean {
    return this.#head !== null;
  }

  /** The decoded head once {@link done}, else null. */
  get head(): ScgiHead | null {
    return this.#head;
  }

  /** Body bytes received after the head; empty until {@link done}. */
  get rest(): Buffer {
    return this.#netstring.rest;
  }

  /**
   * Feeds the next bytes.
   *
   * @returns the head on the call that completes it, else null. Later pushes return null and
   *   append their bytes to {@link rest}.
   * @throws the netstring errors; HeadMalformedError when the block is not an even number of
   *   NUL-terminated strings, CONTENT_LENGTH is not first, or SCGI is missing or not "1";
   *   HeadContentLengthError, HeadDuplicateError, HeadEmptyNameError
   */
  push(chunk: Buffer): ScgiHead | null {
    if (this.#error !== null) throw this.#error;
    try {
      const payload = this.#netstring.push(chunk);
      if (payload === null) return null;
      this.#head = parseHeadPayload(payload);
      return this.#head;
    } catch (err) {
      this.#error = err;
      throw err;
    }
  }
}

/**
 * Decodes the SCGI head at the start of `buf`.
 *
 * @throws HeadMalformedError('incomplete netstring') when `buf` ends before the head does,
 *   plus the errors of {@link ScgiHeadDecoder.push}
 */
export function decodeScgiHead(buf: Buffer, options: ScgiHeadDecoderOptions = {}): DecodedScgiHead {
  const decoder = new ScgiHeadDecoder(options);
  const head = decoder.push(buf);
  if (head === null) throw new HeadMalformedError('incomplete netstring');
  return { ...head, rest: decoder.rest };
}
