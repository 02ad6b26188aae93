/**
 * Incremental parser for the head of a CGI response, as an SCGI backend writes it (RFC 3875 §6):
 * CGI header lines (`Status:`, `Location:`, ...) or an NPH `HTTP/1.x NNN` status line, ended by
 * the first empty line. We hold to what nginx and Apache accept, minus their leniencies that a
 * proxy should not pass on (obs-fold, control characters, whitespace before the colon).
 *
 * It runs on every proxied response: bytes are checked in place against 256-entry tables, the
 * head is decoded once as latin1 (1 byte = 1 char, so string offsets are byte offsets), names and
 * values are slices of that string, and the scan offset survives chunk boundaries (only the
 * unfinished line is kept), so any split costs one pass.
 */
import {
  InvalidOptionError,
  ResponseHeaderError,
  ResponseHeadTooLargeError,
  ResponseStatusError,
  type ScgiError,
} from '../errors.js';
import type { CgiResponseHead, ResponseHeaders } from '../types.js';
import { connectionOptions, HOP_BY_HOP_HEADERS } from './hop-by-hop.js';

/** Options of {@link CgiResponseParser} and {@link parseCgiResponseHead}. */
export interface CgiResponseParserOptions {
  /**
   * Largest response head accepted, in bytes, counting every header line and the empty line that
   * ends the head. Past it the parser fails with `SCGI_ERR_RESPONSE_HEAD_TOO_LARGE` (502) as soon
   * as the buffered bytes prove the head cannot fit, so a backend cannot make the proxy buffer
   * without bound (nginx: `scgi_buffer_size`, Apache: `LimitRequestFieldSize`).
   * @default 65536
   */
  maxHeadSize?: number;
  /**
   * Lower-case names of {@link isInternalResponseHeader internal headers} to pass to the client
   * anyway (nginx `scgi_pass_header`). Every other internal header is left out of `headers`.
   * @default none
   */
  passHeaders?: ReadonlySet<string> | readonly string[];
}

/**
 * Response headers meant for the front server, never for the client: `X-Sendfile` (Apache
 * mod_xsendfile, lighttpd), `X-Lighttpd-Send-File` and `X-Lighttpd-Sendfile` (lighttpd
 * mod_fastcgi / mod_scgi), and every `X-Accel-*` (nginx: `X-Accel-Redirect`, `-Buffering`,
 * `-Charset`, `-Expires`, `-Limit-Rate`, which nginx hides by default). They carry paths on the
 * backend's disk and tuning for a server that is not there; `X-Accel-*` is matched as a prefix.
 */
const INTERNAL_HEADERS: ReadonlySet<string> = new Set([
  'x-sendfile',
  'x-lighttpd-send-file',
  'x-lighttpd-sendfile',
]);
const INTERNAL_PREFIX = 'x-accel-';

/** True for a lower-case response header name that is hidden from the client by default. */
export function isInternalResponseHeader(name: string): boolean {
  return INTERNAL_HEADERS.has(name) || name.startsWith(INTERNAL_PREFIX);
}

const DEFAULT_MAX_HEAD_SIZE = 65536;
const EMPTY = Buffer.alloc(0);
/** Bytes decoded first; most heads fit, and the window doubles while none is found. */
const FIRST_WINDOW = 1024;
const HTAB = 0x09;
const CR = 0x0d;
const SP = 0x20;
const COLON = 0x3a;

// Fields that need more than "store, or join with the previous value": one hash lookup per field.
const STATUS = 1;
const SET_COOKIE = 2;
const CONTENT_LENGTH = 3;
const LOCATION = 4;
const CONNECTION = 5;
const HOP_BY_HOP = 6;
const INTERNAL = 7;
const KIND = new Map<string, number>([
  ...[...HOP_BY_HOP_HEADERS].map((name): [string, number] => [name, HOP_BY_HOP]),
  ...[...INTERNAL_HEADERS].map((name): [string, number] => [name, INTERNAL]),
  ['status', STATUS],
  ['set-cookie', SET_COOKIE],
  ['content-length', CONTENT_LENGTH],
  ['location', LOCATION],
  ['connection', CONNECTION],
]);

/**
 * `headers` objects: their prototype is an empty object with a null prototype, so a backend field
 * named `__proto__` or `constructor` is a plain own key and nothing is inherited, while the
 * object stays in V8's fast mode (`Object.create(null)` objects are dictionaries, several times
 * slower to fill). Node's querystring used the same trick.
 */
const HeadersObject = function HeadersObject() {} as unknown as new () => ResponseHeaders;
HeadersObject.prototype = Object.create(null);

const table = (ok: (c: number) => boolean) => Uint8Array.from({ length: 256 }, (_, c) => +ok(c));
/** `tchar` of RFC 9110 §5.6.2: the bytes allowed in a field name. */
const TCHAR = table(
  (c) =>
    (c >= 0x30 && c <= 0x39) ||
    ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a) ||
    "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c)),
);
/** `field-content` of RFC 9110 §5.5: HTAB, SP, VCHAR, obs-text; no other CTL (NUL, CR, DEL...). */
const FIELD_CHAR = table((c) => c === HTAB || (c >= 0x20 && c !== 0x7f));

/**
 * Common response field names (only `[a-z0-9-]`), by length. A name found here is matched on its
 * bytes and used as an interned constant: no slice, no `toLowerCase`, and a fast property key.
 * undici keeps a tree of well-known header names for the same reason.
 */
const KNOWN_NAMES: (string[] | undefined)[] = [];
for (const name of [
  ...KIND.keys(),
  ...`content-type cache-control date server vary etag expires last-modified x-frame-options pragma
    content-encoding content-disposition content-language age accept-ranges link www-authenticate
    x-content-type-options access-control-allow-origin strict-transport-security x-powered-by
    content-security-policy referrer-policy`.split(/\s+/),
]) {
  const list = KNOWN_NAMES[name.length];
  if (list === undefined) KNOWN_NAMES[name.length] = [name];
  else list.push(name);
}

function knownName(bytes: Buffer, start: number, end: number): string | undefined {
  const names = KNOWN_NAMES[end - start];
  if (names === undefined) return undefined;
  next: for (const name of names) {
    for (let i = 0; i < name.length; i++) {
      // `| 0x20` lower-cases a letter; the bytes are tchar, so no other byte can match `[a-z0-9-]`.
      if ((bytes[start + i]! | 0x20) !== name.charCodeAt(i)) continue next;
    }
    return name;
  }
  return undefined;
}

const isOws = (c: number): boolean => c === SP || c === HTAB;
// Regexes only for what comes once per response, never per line.
const STATUS_VALUE = /^[0-9]{3}(?:[ \t]|$)/;
const LEADING_OWS = /^[ \t]+/;
/** `1*DIGIT` (RFC 9110 §8.6), at most 15 digits so the number stays a safe integer. */
const CONTENT_LENGTH_VALUE = /^[0-9]{1,15}$/;

/** A short, escaped excerpt of backend text for an error message (never raw bytes into logs). */
function quote(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}...` : text);
}

/**
 * Parses a CGI response head pushed in chunks split at any byte.
 *
 * - Lines end in CRLF or a bare LF, mixed freely; the head ends at the first empty line.
 * - An NPH first line `HTTP/1.0 NNN reason` or `HTTP/1.1 NNN reason` sets the status (`nph: true`).
 *   Otherwise `Status: NNN [reason]` does, and is not forwarded; a bare `Location` gives
 *   302 `Found` (RFC 3875 §6.2.3; like nginx, a local `/path` is not redirected internally);
 *   neither gives 200 with an empty `statusMessage`, so the adapter lets Node fill the default.
 * - The status must be exactly three digits in 200..599 (`SCGI_ERR_RESPONSE_STATUS`): a 1xx is not
 *   a final response, and a 101 would hand the client connection to the backend. A second
 *   `Status`, or a `Status` after an NPH line, is the same error: two sources of truth.
 * - Field names must be tokens and values `field-content` (RFC 9110 §5.1, §5.5); obs-fold
 *   (RFC 9112 §5.2), a line without a colon and whitespace before the colon (RFC 9112 §5.1) are
 *   refused (`SCGI_ERR_RESPONSE_HEADER`). Values are decoded as latin1, OWS trimmed.
 * - `Content-Length` must be decimal digits; repeats must be identical and are kept once
 *   (RFC 9110 §8.6).
 * - Hop-by-hop fields ({@link HOP_BY_HOP_HEADERS} and the names a `Connection` value lists,
 *   RFC 9110 §7.6.1) are left out of `headers` and named in `hopByHop`.
 * - `set-cookie` is always an array (RFC 6265 §3: never joined); other repeats are joined with ", ".
 * - Headers for a front server ({@link isInternalResponseHeader}: `X-Sendfile`, `X-Accel-*`...)
 *   are left out, as nginx hides `X-Accel-*`, unless named in `passHeaders`.
 *
 * A malformed head throws a typed {@link ScgiError}; the parser then stays failed and rethrows it.
 */
export class CgiResponseParser {
  readonly #maxHeadSize: number;
  /** Bytes of the head in complete lines so far: the offset of the current line's start. */
  #consumed = 0;
  /** The current line's bytes from earlier chunks, as latin1 text. */
  #partial = '';
  #lineNo = 0;
  #statusCode = 0;
  #statusMessage = '';
  #nph = false;
  #hasStatus = false;
  #hasLocation = false;
  #contentLength: string | undefined = undefined;
  #connection: string | undefined = undefined;
  #headers: ResponseHeaders = new HeadersObject();
  #hopByHop: string[] = [];
  #head: CgiResponseHead | null = null;
  #rest: Buffer = EMPTY;
  #error: unknown = null;
  /** Internal headers to pass anyway; null when none (the common case: no lookup). */
  readonly #pass: ReadonlySet<string> | null;

  constructor(options?: CgiResponseParserOptions) {
    const max = options?.maxHeadSize ?? DEFAULT_MAX_HEAD_SIZE;
    if (typeof max !== 'number' || !Number.isSafeInteger(max) || max <= 0) {
      throw new InvalidOptionError('maxHeadSize', `must be a positive safe integer, got ${max}`);
    }
    this.#maxHeadSize = max;
    const pass = options?.passHeaders;
    // A Set is used as given: the engine resolves it once, not per response.
    const set = pass === undefined ? null : pass instanceof Set ? pass : new Set(pass);
    this.#pass = set === null || set.size === 0 ? null : set;
  }

  /** The bytes that followed the head in the chunk that completed it: the start of the body. Empty until {@link done}. */
  get rest(): Buffer {
    return this.#rest;
  }

  /** True once the head is complete; later bytes are body and must not be pushed. */
  get done(): boolean {
    return this.#head !== null;
  }

  /**
   * Feeds bytes. Returns the head once complete (then {@link rest} holds the body bytes that came
   * with it), else null. Throws a typed `ScgiError` on malformed input or an oversized head.
   */
  push(chunk: Buffer): CgiResponseHead | null {
    if (this.#error !== null) throw this.#error;
    if (this.#head !== null) {
      // Misuse, not bad input: the caller should stream these bytes as body.
      throw new Error('CgiResponseParser: the head is already complete; push body bytes elsewhere');
    }
    try {
      return this.#scan(chunk);
    } catch (err) {
      this.#error = err;
      throw err;
    }
  }

  #scan(chunk: Buffer): CgiResponseHead | null {
    const len = chunk.length;
    const max = this.#maxHeadSize;
    let window = FIRST_WINDOW;
    let pos = 0;
    while (pos < len) {
      // Decode a window that grows while no terminator shows up: a typical head costs one decode,
      // and body bytes that arrived with the head are never decoded. Never past `maxHeadSize`.
      const room = max - this.#consumed - this.#partial.length;
      const stop = Math.min(len, pos + window, pos + room);
      const text = chunk.toString('latin1', pos, stop);
      let from = 0;
      for (let lf = text.indexOf('\n'); lf !== -1; lf = text.indexOf('\n', from)) {
        const partial = this.#partial;
        this.#consumed += partial.length + lf + 1 - from;
        if (partial === '') {
          const end = lf > from && text.charCodeAt(lf - 1) === CR ? lf - 1 : lf;
          if (end === from) return this.#finish(chunk.subarray(pos + lf + 1));
          this.#line(chunk, pos + from, pos + end, text, pos);
        } else {
          // A line that began in an earlier window: join it once, now that it is complete.
          this.#partial = '';
          let line = partial + text.slice(from, lf);
          if (line.charCodeAt(line.length - 1) === CR) line = line.slice(0, -1);
          if (line === '') return this.#finish(chunk.subarray(pos + lf + 1));
          this.#line(Buffer.from(line, 'latin1'), 0, line.length, line, 0);
        }
        from = lf + 1;
      }
      // Keep the unfinished line; string concatenation makes a rope, so no byte is copied twice.
      if (from < text.length) this.#partial += from === 0 ? text : text.slice(from);
      // The head still needs an LF, so this many bytes without one can never fit.
      if (this.#consumed + this.#partial.length >= max) throw new ResponseHeadTooLargeError(max);
      pos = stop;
      window *= 2;
    }
    return null;
  }

  /**
   * Parses one header line: `bytes[start, end)`, line ending excluded, whose latin1 text is
   * `text[start - shift, end - shift)`. Bytes are checked in the buffer; strings are only sliced.
   */
  #line(bytes: Buffer, start: number, end: number, text: string, shift: number): void {
    const lineNo = ++this.#lineNo;
    const c0 = bytes[start]!;
    if (isOws(c0)) {
      throw new ResponseHeaderError(`line ${lineNo} is an obs-fold continuation (RFC 9112 §5.2)`);
    }
    if (lineNo === 1 && c0 === 0x48 && text.startsWith('HTTP/', start - shift)) {
      this.#statusLine(text.slice(start - shift, end - shift));
      return;
    }
    let colon = start;
    while (colon < end && TCHAR[bytes[colon]!] === 1) colon++;
    if (colon === end || bytes[colon] !== COLON) throw nameError(bytes, colon, end, lineNo);
    if (colon === start) throw new ResponseHeaderError(`line ${lineNo} has an empty field name`);
    let from = colon + 1;
    for (let i = from; i < end; i++) {
      if (FIELD_CHAR[bytes[i]!] !== 1) {
        throw new ResponseHeaderError(
          `line ${lineNo}: byte 0x${hex(bytes[i]!)} is not allowed in a value`,
        );
      }
    }
    while (from < end && isOws(bytes[from]!)) from++;
    while (end > from && isOws(bytes[end - 1]!)) end--;
    const name =
      knownName(bytes, start, colon) ?? text.slice(start - shift, colon - shift).toLowerCase();
    this.#field(name, text.slice(from - shift, end - shift));
  }

  #field(name: string, value: string): void {
    const headers = this.#headers;
    switch (KIND.get(name)) {
      case undefined:
        // `X-Accel-*`: a prefix, so not in KIND; `x` first keeps the test off most names.
        if (name.charCodeAt(0) === 0x78 && name.startsWith(INTERNAL_PREFIX) && !this.#passes(name))
          return;
        break;
      case INTERNAL:
        if (!this.#passes(name)) return;
        break;
      case STATUS:
        if (this.#nph) throw new ResponseStatusError('Status header after an NPH status line');
        if (this.#hasStatus) throw new ResponseStatusError('duplicate Status header');
        this.#hasStatus = true;
        this.#status(value, 'Status');
        return;
      case SET_COOKIE: {
        const prev = headers['set-cookie'];
        if (prev === undefined) headers['set-cookie'] = [value];
        else (prev as string[]).push(value);
        return;
      }
      case CONTENT_LENGTH:
        if (!CONTENT_LENGTH_VALUE.test(value)) {
          throw new ResponseHeaderError(`Content-Length ${quote(value)} is not a decimal number`);
        }
        if (this.#contentLength !== undefined) {
          if (value !== this.#contentLength) {
            throw new ResponseHeaderError('Content-Length values differ (RFC 9110 §8.6)');
          }
          return;
        }
        this.#contentLength = value;
        break;
      case LOCATION:
        this.#hasLocation = true;
        break;
      case CONNECTION:
        this.#connection = this.#connection === undefined ? value : `${this.#connection},${value}`;
        this.#dropHopByHop(name);
        return;
      default:
        this.#dropHopByHop(name);
        return;
    }
    const prev = headers[name];
    headers[name] = prev === undefined ? value : `${prev as string}, ${value}`;
  }

  #passes(name: string): boolean {
    return this.#pass?.has(name) === true;
  }

  #dropHopByHop(name: string): void {
    if (!this.#hopByHop.includes(name)) this.#hopByHop.push(name);
  }

  /** `HTTP-version SP status-code SP [reason-phrase]` (RFC 9112 §4); only HTTP/1.0 and 1.1. */
  #statusLine(line: string): void {
    for (let i = 0; i < line.length; i++) {
      const c = line.charCodeAt(i);
      if (FIELD_CHAR[c] !== 1) {
        throw new ResponseStatusError(`byte 0x${hex(c)} in the NPH status line`);
      }
    }
    if (!line.startsWith('HTTP/1.1 ') && !line.startsWith('HTTP/1.0 ')) {
      throw new ResponseStatusError(`unsupported NPH status line ${quote(line)}`);
    }
    let stop = line.length;
    while (stop > 9 && isOws(line.charCodeAt(stop - 1))) stop--;
    this.#nph = true;
    this.#status(line.slice(9, stop), 'NPH status');
  }

  /** Exactly three digits in 200..599, then nothing or whitespace and a reason phrase. */
  #status(text: string, source: string): void {
    if (!STATUS_VALUE.test(text)) {
      throw new ResponseStatusError(`${source} ${quote(text)} is not a 3-digit code`);
    }
    const code = Number(text.slice(0, 3));
    if (code < 200 || code > 599) {
      throw new ResponseStatusError(`${source} ${code} is not a final status (200..599)`);
    }
    this.#statusCode = code;
    this.#statusMessage = text.slice(3).replace(LEADING_OWS, '');
  }

  #finish(rest: Buffer): CgiResponseHead {
    this.#rest = rest.length === 0 ? EMPTY : rest;
    const headers = this.#headers;
    const hopByHop = this.#hopByHop;
    if (this.#connection !== undefined) {
      for (const name of connectionOptions(this.#connection)) {
        if (Object.hasOwn(headers, name)) {
          delete headers[name];
          if (!hopByHop.includes(name)) hopByHop.push(name);
        }
      }
    }
    let statusCode = this.#statusCode;
    let statusMessage = this.#statusMessage;
    if (statusCode === 0) {
      statusCode = this.#hasLocation ? 302 : 200;
      statusMessage = this.#hasLocation ? 'Found' : '';
    }
    const head: CgiResponseHead = { statusCode, statusMessage, headers, hopByHop, nph: this.#nph };
    this.#head = head;
    return head;
  }
}

/** Why the name scan stopped at `bytes[i]`: no colon at all, whitespace before it, or a bad byte. */
function nameError(bytes: Buffer, i: number, end: number, lineNo: number): ScgiError {
  let j = i;
  while (j < end && isOws(bytes[j]!)) j++;
  if (j > i && j < end && bytes[j] === COLON) {
    return new ResponseHeaderError(`line ${lineNo}: whitespace before the colon (RFC 9112 §5.1)`);
  }
  const colon = bytes.indexOf(COLON, i);
  if (i === end || colon === -1 || colon >= end) {
    return new ResponseHeaderError(`line ${lineNo} has no colon`);
  }
  return new ResponseHeaderError(`line ${lineNo}: byte 0x${hex(bytes[i]!)} in a field name`);
}

function hex(c: number): string {
  return c.toString(16).padStart(2, '0');
}

/**
 * One-shot form of {@link CgiResponseParser}: parses the head at the start of `buf`.
 * Returns the head and the bytes after it, or null when `buf` holds no complete head yet.
 * Throws like {@link CgiResponseParser.push}.
 */
export function parseCgiResponseHead(
  buf: Buffer,
  options?: CgiResponseParserOptions,
): { head: CgiResponseHead; rest: Buffer } | null {
  const parser = new CgiResponseParser(options);
  const head = parser.push(buf);
  return head === null ? null : { head, rest: parser.rest };
}
