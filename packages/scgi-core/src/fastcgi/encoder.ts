/**
 * The client side's request framing (FastCGI Specification 1.0 §5.1-§5.3, §6.2): BEGIN_REQUEST,
 * the PARAMS stream, the STDIN stream. Like the SCGI head (src/scgi/head.ts), a small request
 * is ONE Buffer: BEGIN_REQUEST, every PARAMS record, the empty PARAMS record and, when the body
 * is given, its STDIN records and the empty STDIN record, so it goes out in one write.
 */
import { putLatin1 } from '../cgi/latin1.js';
import { FastcgiParamError, InvalidOptionError } from '../errors.js';
import type { EnvInput, EnvPair } from '../types.js';
import {
  BODY_LENGTH,
  HEADER_LENGTH,
  MAX_CONTENT_LENGTH,
  MAX_REQUEST_ID,
  RecordType,
  Role,
} from './constants.js';
import {
  encodeHeader,
  type PreparedPairs,
  paddingFor,
  pairSize,
  preparePairs,
  writeBeginRequestBody,
  writeHeader,
  writeLength,
  writePairs,
} from './records.js';

/**
 * Bodies up to this size fit in the request's one Buffer ({@link encodeRequest}): copying them
 * costs less than a second write. Larger bodies stream through {@link encodeStdin}.
 */
export const INLINE_BODY_LIMIT = 16 * 1024;
/** Stream chunks up to this size are copied into one Buffer with their header; larger ones go out as views (writev). */
const COPY_LIMIT = 4096;
/** Zeros for padding; views into it are shared, never written. */
const ZEROS = Buffer.alloc(8);

function checkRequestId(id: number): void {
  if (!Number.isInteger(id) || id < 1 || id > MAX_REQUEST_ID) {
    throw new InvalidOptionError('requestId', `must be an integer from 1 to 65535, got ${id}`);
  }
}

/** BEGIN_REQUEST as one 16-byte Buffer. */
export function encodeBeginRequest(
  id: number,
  role: number = Role.RESPONDER,
  keepConn = false,
): Buffer {
  checkRequestId(id);
  const out = Buffer.allocUnsafe(HEADER_LENGTH + BODY_LENGTH);
  writeHeader(out, 0, RecordType.BEGIN_REQUEST, id, BODY_LENGTH, 0);
  writeBeginRequestBody(out, HEADER_LENGTH, role, keepConn);
  return out;
}

/** Bytes of the records holding a stream of `n` content bytes, including the empty end record when `end`. */
function streamSize(n: number, pad: boolean, end: boolean): number {
  const full = Math.floor(n / MAX_CONTENT_LENGTH);
  const rest = n - full * MAX_CONTENT_LENGTH;
  let size =
    full * (HEADER_LENGTH + MAX_CONTENT_LENGTH + (pad ? paddingFor(MAX_CONTENT_LENGTH) : 0));
  if (rest > 0) size += HEADER_LENGTH + rest + (pad ? paddingFor(rest) : 0);
  return end ? size + HEADER_LENGTH : size;
}

/**
 * Writes `content` as records of `type` (each at most 65,535 content bytes, padded to a
 * multiple of 8 when `pad`), then the empty record when `end`. Returns the offset after them.
 */
function writeStream(
  target: Buffer,
  offset: number,
  type: number,
  id: number,
  content: Uint8Array,
  pad: boolean,
  end: boolean,
): number {
  for (let i = 0; i < content.length; i += MAX_CONTENT_LENGTH) {
    const n = Math.min(MAX_CONTENT_LENGTH, content.length - i);
    const padding = pad ? paddingFor(n) : 0;
    offset = writeHeader(target, offset, type, id, n, padding);
    target.set(content.subarray(i, i + n), offset);
    offset += n;
    target.fill(0, offset, offset + padding);
    offset += padding;
  }
  return end ? writeHeader(target, offset, type, id, 0, 0) : offset;
}

export interface EncodeRequestOptions {
  /** @default Role.RESPONDER */
  role?: number;
  /** Set FCGI_KEEP_CONN: the application keeps the connection open after END_REQUEST. @default false */
  keepConn?: boolean;
  /**
   * The whole request body: its STDIN records and the empty STDIN record are appended, and the
   * request is complete in this one Buffer (use it up to {@link INLINE_BODY_LIMIT}). Leave it out
   * to stream the body with {@link encodeStdin} and {@link encodeStdinEnd}.
   */
  body?: Uint8Array;
  /** Pad records to a multiple of 8 bytes (spec §3.3 recommends it; nginx does it). @default true */
  pad?: boolean;
}

/**
 * BEGIN_REQUEST + PARAMS records + the empty PARAMS record (+ the body's STDIN records + the
 * empty STDIN record), as ONE Buffer. PARAMS records end at pair boundaries (see groupPairs).
 *
 * @throws FastcgiParamError for a pair that cannot be encoded; InvalidOptionError for a request
 *   id outside 1..65535
 */
export function encodeRequest(
  id: number,
  params: EnvInput,
  options: EncodeRequestOptions = {},
): Buffer {
  checkRequestId(id);
  const pad = options.pad ?? true;
  const body = options.body;
  if (Array.isArray(params) && (body === undefined || body.length === 0)) {
    const out = encodeCommonRequest(
      id,
      params as readonly EnvPair[],
      options.role ?? Role.RESPONDER,
      options.keepConn ?? false,
      pad,
      body !== undefined,
    );
    if (out !== null) return out;
  }
  const prepared = preparePairs(params);
  const groups = groupPairs(prepared);
  const size =
    HEADER_LENGTH +
    BODY_LENGTH +
    paramsSize(groups, pad) +
    (body === undefined ? 0 : streamSize(body.length, pad, true));
  const out = Buffer.allocUnsafe(size);
  let offset = writeHeader(out, 0, RecordType.BEGIN_REQUEST, id, BODY_LENGTH, 0);
  offset = writeBeginRequestBody(
    out,
    offset,
    options.role ?? Role.RESPONDER,
    options.keepConn ?? false,
  );
  offset = writeParams(out, offset, id, prepared, groups, pad);
  if (body !== undefined) offset = writeStream(out, offset, RecordType.STDIN, id, body, pad, true);
  return out;
}

/**
 * The request of (nearly) every proxied exchange in one pass and one exact Buffer: the pairs as
 * an array, every string latin1 (char by char, no native call per string: the per-pair measuring
 * and writing of the general path was the largest cost of encoding, see bench/README.md), the
 * name-value stream within one PARAMS record, no body or an empty one (`endStdin`: the empty
 * STDIN record follows). Null when any of that does not hold: the general path then measures and
 * checks everything, and throws what it must.
 */
function encodeCommonRequest(
  id: number,
  list: readonly EnvPair[],
  role: number,
  keepConn: boolean,
  pad: boolean,
  endStdin: boolean,
): Buffer | null {
  let bytes = 0;
  for (let i = 0; i < list.length; i++) {
    const pair = list[i]!;
    const name = pair[0] as unknown;
    const value = pair[1] as unknown;
    if (typeof name !== 'string' || name.length === 0) return null;
    if (typeof value !== 'string' && !(value instanceof Uint8Array)) return null;
    const n = name.length;
    const v = value.length;
    bytes += (n < 128 ? 1 : 4) + (v < 128 ? 1 : 4) + n + v;
  }
  if (bytes > MAX_CONTENT_LENGTH) return null;
  const padding = pad ? paddingFor(bytes) : 0;
  const out = Buffer.allocUnsafe(
    HEADER_LENGTH +
      BODY_LENGTH +
      (bytes > 0 ? HEADER_LENGTH + bytes + padding : 0) +
      HEADER_LENGTH +
      (endStdin ? HEADER_LENGTH : 0),
  );
  let off = writeHeader(out, 0, RecordType.BEGIN_REQUEST, id, BODY_LENGTH, 0);
  off = writeBeginRequestBody(out, off, role, keepConn);
  if (bytes > 0) {
    off = writeHeader(out, off, RecordType.PARAMS, id, bytes, padding);
    for (let i = 0; i < list.length; i++) {
      const pair = list[i]!;
      const name = pair[0];
      const value = pair[1] as string | Uint8Array;
      off = writeLength(out, off, name.length);
      off = writeLength(out, off, value.length);
      off = putLatin1(out, off, name);
      if (off === -1) return null;
      if (typeof value === 'string') {
        off = putLatin1(out, off, value);
        if (off === -1) return null;
      } else {
        out.set(value, off);
        off += value.length;
      }
    }
    for (let i = 0; i < padding; i++) out[off++] = 0;
  }
  off = writeHeader(out, off, RecordType.PARAMS, id, 0, 0);
  if (endStdin) writeHeader(out, off, RecordType.STDIN, id, 0, 0);
  return out;
}

/** The PARAMS records of `params` and the empty PARAMS record, as one Buffer. */
export function encodeParams(id: number, params: EnvInput, pad = true): Buffer {
  checkRequestId(id);
  const prepared = preparePairs(params);
  const groups = groupPairs(prepared);
  const out = Buffer.allocUnsafe(paramsSize(groups, pad));
  writeParams(out, 0, id, prepared, groups, pad);
  return out;
}

/**
 * Which pairs share a PARAMS record: consecutive pairs, as many as fit in 65,535 bytes, so no
 * pair straddles two records. The stream is a byte stream (spec §3.3), but PHP-FPM and php-cgi
 * decode each PARAMS record on its own and close the connection on a pair cut by a record end
 * (measured: test/fastcgi-php.test.ts). Only a pair larger than a record is split, which
 * spec-following applications (flup, our server) accept and PHP refuses.
 * Returns [start, end, bytes] triples.
 */
function groupPairs(prepared: PreparedPairs): Array<[number, number, number]> {
  const groups: Array<[number, number, number]> = [];
  if (prepared.length <= MAX_CONTENT_LENGTH) {
    // The common case: every pair in one record.
    if (prepared.length > 0) groups.push([0, prepared.pairs.length, prepared.length]);
    return groups;
  }
  let start = 0;
  let bytes = 0;
  for (let i = 0; i < prepared.pairs.length; i++) {
    const n = pairSize(prepared, i);
    if (bytes + n > MAX_CONTENT_LENGTH && i > start) {
      groups.push([start, i, bytes]);
      start = i;
      bytes = 0;
    }
    bytes += n;
  }
  if (bytes > 0) groups.push([start, prepared.pairs.length, bytes]);
  return groups;
}

/** Bytes of the PARAMS records of `groups` and the empty PARAMS record. */
function paramsSize(groups: Array<[number, number, number]>, pad: boolean): number {
  let size = HEADER_LENGTH;
  for (const [, , bytes] of groups) size += streamSize(bytes, pad, false);
  return size;
}

function writeParams(
  out: Buffer,
  offset: number,
  id: number,
  prepared: PreparedPairs,
  groups: Array<[number, number, number]>,
  pad: boolean,
): number {
  for (const [start, end, bytes] of groups) {
    if (bytes <= MAX_CONTENT_LENGTH) {
      // Pairs go straight into their record, no intermediate copy.
      const padding = pad ? paddingFor(bytes) : 0;
      offset = writeHeader(out, offset, RecordType.PARAMS, id, bytes, padding);
      offset = writePairs(out, offset, prepared, start, end);
      out.fill(0, offset, offset + padding);
      offset += padding;
    } else {
      const stream = Buffer.allocUnsafe(bytes);
      writePairs(stream, 0, prepared, start, end);
      offset = writeStream(out, offset, RecordType.PARAMS, id, stream, pad, false);
    }
  }
  return writeHeader(out, offset, RecordType.PARAMS, id, 0, 0);
}

/**
 * Frames one chunk of a stream (STDIN on the client side, STDOUT or STDERR on the application
 * side) as records of at most 65,535 content bytes. A small chunk comes back as one Buffer; a
 * large one as headers and views of `chunk` (no copy), to be written together (cork/writev).
 * An empty chunk gives no records: an empty record would end the stream.
 */
export function encodeStreamChunk(
  type: number,
  id: number,
  chunk: Uint8Array,
  pad = true,
): Buffer[] {
  if (chunk.length === 0) return [];
  if (chunk.length <= COPY_LIMIT) {
    const out = Buffer.allocUnsafe(streamSize(chunk.length, pad, false));
    writeStream(out, 0, type, id, chunk, pad, false);
    return [out];
  }
  const view = Buffer.isBuffer(chunk)
    ? chunk
    : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
  const out: Buffer[] = [];
  for (let i = 0; i < view.length; i += MAX_CONTENT_LENGTH) {
    const n = Math.min(MAX_CONTENT_LENGTH, view.length - i);
    const padding = pad ? paddingFor(n) : 0;
    out.push(encodeHeader(type, id, n, padding), view.subarray(i, i + n));
    if (padding > 0) out.push(ZEROS.subarray(0, padding));
  }
  return out;
}

/** The STDIN records of one body chunk (see {@link encodeStreamChunk}). */
export function encodeStdin(id: number, chunk: Uint8Array, pad = true): Buffer[] {
  return encodeStreamChunk(RecordType.STDIN, id, chunk, pad);
}

/** The empty STDIN record: the end of the request body. */
export function encodeStdinEnd(id: number): Buffer {
  return encodeHeader(RecordType.STDIN, id, 0, 0);
}

/** ABORT_REQUEST for `id` (spec §5.4). */
export function encodeAbortRequest(id: number): Buffer {
  return encodeHeader(RecordType.ABORT_REQUEST, id, 0, 0);
}

/** GET_VALUES asking for `names` (spec §4.1): a management record, request id 0. */
export function encodeGetValues(names: readonly string[], pad = true): Buffer {
  const prepared = preparePairs(names.map((n) => [n, ''] as const));
  const padding = pad ? paddingFor(prepared.length) : 0;
  if (prepared.length > MAX_CONTENT_LENGTH) {
    throw new FastcgiParamError('GET_VALUES', 'the names do not fit in one record');
  }
  const out = Buffer.alloc(HEADER_LENGTH + prepared.length + padding);
  writeHeader(out, 0, RecordType.GET_VALUES, 0, prepared.length, padding);
  writePairs(out, HEADER_LENGTH, prepared);
  return out;
}
