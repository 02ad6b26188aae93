/**
 * FastCGI record pieces (FastCGI Specification 1.0 §3, §5): the 8-byte header, padding, the
 * name-value pair stream of PARAMS and GET_VALUES, and the bodies of BEGIN_REQUEST and
 * END_REQUEST. The framing of whole requests is in ./encoder.ts, the parsers in ./decoder.ts
 * and ./record-reader.ts.
 */

import { isLatin1 } from '../cgi/latin1.js';
import { FastcgiPairsError, FastcgiParamError } from '../errors.js';
import type { EnvInput, EnvPair, EnvValue } from '../types.js';
import {
  BODY_LENGTH,
  FCGI_VERSION,
  HEADER_LENGTH,
  KEEP_CONN,
  MAX_PAIR_LENGTH,
  type ProtocolStatus,
  type Role,
} from './constants.js';

/**
 * Padding that ends a record of `contentLength` bytes on a multiple of 8, as the spec
 * recommends (§3.3) and as nginx and PHP-FPM write their records.
 */
export function paddingFor(contentLength: number): number {
  return -contentLength & 7;
}

/** Writes a record header at `offset`; returns the offset after it. */
export function writeHeader(
  target: Buffer,
  offset: number,
  type: number,
  requestId: number,
  contentLength: number,
  paddingLength: number,
): number {
  target[offset] = FCGI_VERSION;
  target[offset + 1] = type;
  target[offset + 2] = requestId >>> 8;
  target[offset + 3] = requestId & 0xff;
  target[offset + 4] = contentLength >>> 8;
  target[offset + 5] = contentLength & 0xff;
  target[offset + 6] = paddingLength;
  target[offset + 7] = 0;
  return offset + HEADER_LENGTH;
}

/** One record header as its own Buffer. */
export function encodeHeader(
  type: number,
  requestId: number,
  contentLength: number,
  paddingLength = 0,
): Buffer {
  const header = Buffer.allocUnsafe(HEADER_LENGTH);
  writeHeader(header, 0, type, requestId, contentLength, paddingLength);
  return header;
}

/** A whole record (header, content, zero padding to a multiple of 8) in one Buffer. */
export function encodeRecord(
  type: number,
  requestId: number,
  content: Uint8Array = EMPTY,
  pad = true,
): Buffer {
  const padding = pad ? paddingFor(content.length) : 0;
  const record = Buffer.alloc(HEADER_LENGTH + content.length + padding);
  writeHeader(record, 0, type, requestId, content.length, padding);
  record.set(content, HEADER_LENGTH);
  return record;
}

const EMPTY = Buffer.alloc(0);

// --- BEGIN_REQUEST / END_REQUEST bodies (spec §5.1, §5.5) ----------------------------------

/** Writes a BEGIN_REQUEST body {role u16, flags u8, reserved[5]} at `offset`. */
export function writeBeginRequestBody(
  target: Buffer,
  offset: number,
  role: number,
  keepConn: boolean,
): number {
  target[offset] = role >>> 8;
  target[offset + 1] = role & 0xff;
  target[offset + 2] = keepConn ? KEEP_CONN : 0;
  for (let i = 3; i < BODY_LENGTH; i++) target[offset + i] = 0;
  return offset + BODY_LENGTH;
}

/** A BEGIN_REQUEST body read from its 8 content bytes. */
export interface BeginRequestBody {
  role: Role | number;
  keepConn: boolean;
}

export function decodeBeginRequestBody(body: Buffer): BeginRequestBody {
  return { role: body.readUInt16BE(0), keepConn: (body[2]! & KEEP_CONN) !== 0 };
}

/** An END_REQUEST body: the app's exit status and whether the request was served at all. */
export interface EndRequestBody {
  appStatus: number;
  protocolStatus: ProtocolStatus | number;
}

/** Writes an END_REQUEST body {appStatus u32, protocolStatus u8, reserved[3]} at `offset`. */
export function writeEndRequestBody(
  target: Buffer,
  offset: number,
  appStatus: number,
  protocolStatus: number,
): number {
  target.writeUInt32BE(appStatus >>> 0, offset);
  target[offset + 4] = protocolStatus;
  target.fill(0, offset + 5, offset + BODY_LENGTH);
  return offset + BODY_LENGTH;
}

export function decodeEndRequestBody(body: Buffer): EndRequestBody {
  return { appStatus: body.readUInt32BE(0), protocolStatus: body[4]! };
}

// --- name-value pairs (spec §3.4) -----------------------------------------------------------

/** A pair ready to be written: its strings with the encoding each needs, and their sizes. */
interface PreparedPair {
  name: string | Uint8Array;
  nameUtf8: boolean;
  nameLength: number;
  value: string | Uint8Array;
  valueUtf8: boolean;
  valueLength: number;
}

/** Name-value pairs measured once, written by {@link writePairs}. */
export interface PreparedPairs {
  readonly pairs: readonly PreparedPair[];
  /** Bytes of the whole name-value stream. */
  readonly length: number;
}

function lengthSize(n: number): number {
  return n < 128 ? 1 : 4;
}

function toList(env: EnvInput): readonly EnvPair[] {
  if (Array.isArray(env)) return env as readonly EnvPair[];
  if (typeof (env as Iterable<EnvPair>)[Symbol.iterator] === 'function') {
    return Array.from(env as Iterable<EnvPair>);
  }
  return Object.entries(env as Readonly<Record<string, EnvValue>>);
}

/**
 * Measures pairs for {@link writePairs}. Strings follow the SCGI encoder's rule
 * (src/scgi/head.ts): latin1 when every char code is below 256 (so `buf.toString('latin1')`
 * round-trips to the same bytes), else UTF-8; Buffers are sent as they are. Unlike SCGI, NUL
 * bytes are fine: FastCGI strings are length-prefixed.
 *
 * @throws FastcgiParamError for an empty name, a value that is neither a string nor bytes, or a
 *   name or value longer than 2^31-1 bytes (the 31-bit length of §3.4)
 */
export function preparePairs(env: EnvInput): PreparedPairs {
  const list = toList(env);
  const pairs: PreparedPair[] = new Array(list.length);
  let length = 0;
  for (let i = 0; i < list.length; i++) {
    const [name, value] = list[i]! as readonly [unknown, unknown];
    if (typeof name !== 'string' || name.length === 0) {
      throw new FastcgiParamError(
        JSON.stringify(String(name)),
        'the name must be a non-empty string',
      );
    }
    const nameUtf8 = !isLatin1(name);
    const nameLength = nameUtf8 ? Buffer.byteLength(name, 'utf8') : name.length;
    let valueUtf8 = false;
    let valueLength: number;
    if (typeof value === 'string') {
      valueUtf8 = !isLatin1(value);
      valueLength = valueUtf8 ? Buffer.byteLength(value, 'utf8') : value.length;
    } else if (value instanceof Uint8Array) {
      valueLength = value.length;
    } else {
      throw new FastcgiParamError(name, 'the value is not a string or Buffer');
    }
    if (nameLength > MAX_PAIR_LENGTH || valueLength > MAX_PAIR_LENGTH) {
      throw new FastcgiParamError(name, 'a name or value is longer than 2^31-1 bytes');
    }
    pairs[i] = { name, nameUtf8, nameLength, value, valueUtf8, valueLength };
    length += lengthSize(nameLength) + lengthSize(valueLength) + nameLength + valueLength;
  }
  return { pairs, length };
}

/** Writes a name-value length (§3.4: 1 byte below 128, else 4 with the top bit set). */
export function writeLength(target: Buffer, offset: number, n: number): number {
  if (n < 128) {
    target[offset] = n;
    return offset + 1;
  }
  target.writeUInt32BE((n | 0x80000000) >>> 0, offset);
  return offset + 4;
}

function writeString(
  target: Buffer,
  offset: number,
  s: string | Uint8Array,
  utf8: boolean,
  n: number,
): number {
  if (typeof s !== 'string') target.set(s, offset);
  else if (n > 0) target.write(s, offset, n, utf8 ? 'utf8' : 'latin1');
  return offset + n;
}

/** Bytes of pair `i` of `prepared` in the name-value stream. */
export function pairSize(prepared: PreparedPairs, i: number): number {
  const p = prepared.pairs[i]!;
  return lengthSize(p.nameLength) + lengthSize(p.valueLength) + p.nameLength + p.valueLength;
}

/**
 * Writes pairs `start` to `end` (exclusive; default: all) of `prepared` at `offset`; returns
 * the offset after them.
 */
export function writePairs(
  target: Buffer,
  offset: number,
  prepared: PreparedPairs,
  start = 0,
  end = prepared.pairs.length,
): number {
  for (let i = start; i < end; i++) {
    const p = prepared.pairs[i]!;
    offset = writeLength(target, offset, p.nameLength);
    offset = writeLength(target, offset, p.valueLength);
    offset = writeString(target, offset, p.name, p.nameUtf8, p.nameLength);
    offset = writeString(target, offset, p.value, p.valueUtf8, p.valueLength);
  }
  return offset;
}

/** The name-value stream of `env` as one Buffer (the content of PARAMS or GET_VALUES records). */
export function encodePairs(env: EnvInput): Buffer {
  const prepared = preparePairs(env);
  const out = Buffer.allocUnsafe(prepared.length);
  writePairs(out, 0, prepared);
  return out;
}

export interface DecodePairsOptions {
  /**
   * Largest name or value accepted, in bytes; a length over it is refused before anything is
   * read or allocated.
   * @default 2^31-1 (no limit beyond the stream itself)
   */
  maxLength?: number;
}

/**
 * Decodes a complete name-value stream. Names are latin1 strings (PEP 3333's rule, as the SCGI
 * server does); values are views into `stream`, not copies.
 *
 * @throws FastcgiPairsError when a length is cut off, a length is over `maxLength`, or a pair
 *   runs past the end of the stream
 */
export function decodePairs(
  stream: Buffer,
  options: DecodePairsOptions = {},
): Array<[name: string, value: Buffer]> {
  const maxLength = options.maxLength ?? MAX_PAIR_LENGTH;
  const out: Array<[string, Buffer]> = [];
  const end = stream.length;
  let i = 0;
  const readLength = (what: string, at: number): number => {
    if (i >= end) throw new FastcgiPairsError(`the ${what} length of pair ${at} is missing`);
    const first = stream[i]!;
    if (first < 128) {
      i += 1;
      return first;
    }
    if (i + 4 > end) {
      throw new FastcgiPairsError(
        `the ${what} length of pair ${at} is cut off after ${end - i} of 4 bytes`,
      );
    }
    const n = stream.readUInt32BE(i) & MAX_PAIR_LENGTH;
    i += 4;
    if (n > maxLength) {
      throw new FastcgiPairsError(
        `the ${what} of pair ${at} is ${n} bytes, over the limit of ${maxLength}`,
      );
    }
    return n;
  };
  while (i < end) {
    const at = out.length;
    const nameLength = readLength('name', at);
    const valueLength = readLength('value', at);
    if (nameLength + valueLength > end - i) {
      throw new FastcgiPairsError(
        `pair ${at} needs ${nameLength + valueLength} bytes but only ${end - i} remain`,
      );
    }
    const name = stream.toString('latin1', i, i + nameLength);
    i += nameLength;
    out.push([name, stream.subarray(i, i + valueLength)]);
    i += valueLength;
  }
  return out;
}
