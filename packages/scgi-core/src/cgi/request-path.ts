/**
 * The request path as the SCGI backend sees it: split off the query and fragment, percent-decode
 * to bytes, resolve dot-segments, then split at the mount prefix (SCRIPT_NAME / PATH_INFO).
 *
 * Dot-segments are resolved on the decoded bytes, so `%2e%2e` and `..%2f` are caught like a plain
 * `..`, and only then is the prefix checked: a path that escapes the mount is never forwarded.
 * This is what nginx does for `$document_uri` (decode, then merge), except that repeated slashes
 * are kept as sent (nginx `merge_slashes off`): they are the application's business.
 */
import { BadPathError, PathNulError } from '../errors.js';

const SLASH = 0x2f;
const DOT = 0x2e;
const PERCENT = 0x25;
const QUESTION = 0x3f;
const HASH = 0x23;

/** Hex digit value by byte, -1 for a non-hex byte. */
const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++) HEX[0x30 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX[0x41 + i] = 10 + i;
  HEX[0x61 + i] = 10 + i;
}

/** A request-target split into the parts CGI needs. */
export interface RequestTarget {
  /** REQUEST_URI: origin-form path and query, raw, without `#fragment`. */
  readonly uri: string;
  /** The raw (still percent-encoded) path. */
  readonly path: string;
  /** QUERY_STRING: raw text after the first `?`, "" when there is none. */
  readonly query: string;
  /** The authority of an absolute-form target (`http://host:port/...`), as sent. */
  readonly authority?: string;
}

/**
 * Splits a request-target (RFC 9112 §3.2). The fragment is dropped (Node keeps it in `req.url`;
 * it never belongs to the request). An absolute-form target `http://host/p?q` is reduced to its
 * origin form `/p?q`, as nginx does for `$request_uri`; with no path its path is `/`. Other forms
 * (asterisk-form `*`, authority-form `host:port`) are returned as they are and refused later by
 * {@link decodeRequestPath}, because a path must start with `/`.
 */
export function splitRequestTarget(target: string): RequestTarget {
  const hash = target.indexOf('#');
  let uri = hash === -1 ? target : target.slice(0, hash);
  let authority: string | undefined;
  if (uri.charCodeAt(0) !== SLASH) {
    const authorityStart = schemeEnd(uri);
    if (authorityStart !== -1) {
      let pathStart = authorityStart;
      while (pathStart < uri.length) {
        const c = uri.charCodeAt(pathStart);
        if (c === SLASH || c === QUESTION) break;
        pathStart++;
      }
      authority = uri.slice(authorityStart, pathStart);
      const rest = uri.slice(pathStart);
      uri = rest.charCodeAt(0) === SLASH ? rest : `/${rest}`;
    }
  }
  const q = uri.indexOf('?');
  const path = q === -1 ? uri : uri.slice(0, q);
  const query = q === -1 ? '' : uri.slice(q + 1);
  return authority === undefined ? { uri, path, query } : { uri, path, query, authority };
}

/** Index just past `scheme://` when `s` starts with one (RFC 3986 §3.1), else -1. */
function schemeEnd(s: string): number {
  const first = s.charCodeAt(0) | 0x20;
  if (first < 0x61 || first > 0x7a) return -1;
  for (let i = 1; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x3a) return s.startsWith('//', i + 1) ? i + 3 : -1;
    const lower = c | 0x20;
    const ok = (lower >= 0x61 && lower <= 0x7a) || (c >= 0x30 && c <= 0x39);
    if (!ok && c !== 0x2b && c !== 0x2d && c !== DOT) return -1;
  }
  return -1;
}

/**
 * Percent-decodes a raw request path to bytes and removes its dot-segments.
 *
 * - The path must start with `/` (else `SCGI_ERR_BAD_PATH`): this refuses `*` and authority-form.
 * - Characters are taken as bytes the way Node's parser produced them (latin1); a string with
 *   code points above U+00FF (a rewritten `req.url`) is taken as UTF-8.
 * - `%XY` becomes one byte, which need not be valid UTF-8 (`%E9` -> 0xE9); an invalid escape
 *   such as `%zz` or a trailing `%` stays literal, like nginx.
 * - A NUL byte, literal or `%00`, is refused (`SCGI_ERR_PATH_NUL`): CGI variables cannot hold it.
 * - Dot-segments are removed per RFC 3986 §5.2.4 after decoding, so `%2e%2e` and `..%2f` count;
 *   `..` never climbs above the root (`/../a` -> `/a`). Empty segments (`//`) are kept.
 *
 * @returns a new Buffer holding the decoded, dot-free path (always starts with `/`)
 */
export function decodeRequestPath(rawPath: string): Buffer {
  if (rawPath.charCodeAt(0) !== SLASH) throw new BadPathError('the path must start with "/"');
  // One scan decides the work: most paths have no escape and no dot-segment.
  let wide = false;
  let percent = false;
  let dot = false;
  for (let i = 0; i < rawPath.length; i++) {
    const c = rawPath.charCodeAt(i);
    if (c === PERCENT) percent = true;
    else if (c === DOT) dot ||= rawPath.charCodeAt(i - 1) === SLASH;
    else if (c === 0) throw new PathNulError();
    else if (c > 0xff) wide = true;
  }
  const buf = Buffer.from(rawPath, wide ? 'utf8' : 'latin1');
  if (!percent) return dot ? removeDotSegments(buf) : buf;
  // Decode in place: the output never outruns the input.
  let w = 0;
  for (let r = 0; r < buf.length; r++) {
    let b = buf[r]!;
    if (b === PERCENT && r + 2 < buf.length) {
      const hi = HEX[buf[r + 1]!]!;
      const lo = HEX[buf[r + 2]!]!;
      if (hi >= 0 && lo >= 0) {
        b = (hi << 4) | lo;
        if (b === 0) throw new PathNulError();
        r += 2;
      }
    }
    buf[w++] = b;
  }
  return removeDotSegments(buf.subarray(0, w));
}

/**
 * RFC 3986 §5.2.4 `remove_dot_segments` for a path that starts with `/`, done in place on `path`
 * (the output is never longer than what was read). Empty segments are kept as they are.
 * Plain loops rather than `indexOf` / `copyWithin`: paths are short, native calls cost more.
 *
 * @returns a view of `path` holding the result
 */
export function removeDotSegments(path: Buffer): Buffer {
  const len = path.length;
  let w = 0;
  let i = 0; // path[i] is the "/" that starts the current segment
  while (i < len) {
    let end = i + 1;
    while (end < len && path[end] !== SLASH) end++;
    const segLen = end - i - 1;
    const dot = segLen === 1 && path[i + 1] === DOT;
    const dotDot = segLen === 2 && path[i + 1] === DOT && path[i + 2] === DOT;
    if (dot || dotDot) {
      // "..": drop the last output segment with its "/" (nothing to drop at the root).
      if (dotDot && w > 0) {
        w--;
        while (w > 0 && path[w] !== SLASH) w--;
      }
      // A final "." or ".." leaves the path ending in "/" (RFC 3986 §5.2.4 steps B and C).
      if (end === len) path[w++] = SLASH;
    } else if (w === i) {
      w = end;
    } else {
      for (let k = i; k < end; k++) path[w++] = path[k]!;
    }
    i = end;
  }
  return w === len ? path : path.subarray(0, w);
}

/**
 * Splits the decoded path at the mount prefix and returns PATH_INFO.
 *
 * The path must equal `scriptName` or continue it with `/`; anything else (including `/app2`
 * under `/app`, or a path whose dot-segments climbed out of the mount) is refused with
 * `SCGI_ERR_BAD_PATH`, so the backend never sees a request outside its mount. The comparison is
 * byte for byte and case-sensitive; a string `scriptName` is taken as UTF-8.
 *
 * @param decoded the result of {@link decodeRequestPath}
 * @param scriptName the mount prefix in `/app` form, or "" for the root
 * @returns PATH_INFO: a view of `decoded` after the prefix ("" when the path equals the prefix)
 */
export function splitScriptName(decoded: Buffer, scriptName: string | Buffer): Buffer {
  if (scriptName.length === 0) return decoded;
  const prefix = typeof scriptName === 'string' ? Buffer.from(scriptName, 'utf8') : scriptName;
  const n = prefix.length;
  let inside = decoded.length === n || decoded[n] === SLASH;
  for (let i = 0; inside && i < n; i++) inside = decoded[i] === prefix[i];
  if (!inside) throw new BadPathError('the path is outside the mount prefix');
  return decoded.subarray(n);
}

/**
 * Checks a mount prefix: "" (root) or `/seg[/seg...]` with no trailing `/`, no empty, `.` or `..`
 * segment, no NUL, CR or LF, `?` or `#`. It is compared with the decoded path, so it is written
 * decoded (`/café`, not `/caf%C3%A9`).
 *
 * @returns why `scriptName` is invalid, or `null` when it is valid
 */
export function scriptNameProblem(scriptName: string): string | null {
  if (scriptName === '') return null;
  if (scriptName === '/') return 'must be "" for the root, not "/"';
  if (scriptName.charCodeAt(0) !== SLASH) return 'must start with "/"';
  if (scriptName.endsWith('/')) return 'must not end with "/"';
  for (let i = 0; i < scriptName.length; i++) {
    const c = scriptName.charCodeAt(i);
    if (c === 0 || c === 10 || c === 13 || c === QUESTION || c === HASH) {
      return 'must not contain NUL, CR, LF, "?" or "#"';
    }
  }
  for (const segment of scriptName.slice(1).split('/')) {
    if (segment === '' || segment === '.' || segment === '..') {
      return 'must not contain empty, "." or ".." segments';
    }
  }
  return null;
}
