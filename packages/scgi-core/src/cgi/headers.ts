/**
 * Request headers -> `HTTP_*` variables: one pass over `req.rawHeaders` (full fidelity: Node's
 * `req.headers` drops duplicates of some headers), a cache of converted names, and the security
 * rules of DESIGN.md (httpoxy, underscore names, hop-by-hop and framing headers).
 */
import { BadRequestHeaderError } from '../errors.js';
import { connectionOptions, HOP_BY_HOP_HEADERS } from './hop-by-hop.js';

/** True when a value holds a control character other than HTAB (CR, LF, NUL...). */
export function hasCtl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0 || c === 10 || c === 13) return true;
  }
  return false;
}
// --- request headers ----------------------------------------------------------------------

enum Kind {
  Plain,
  Cookie,
  Host,
  Drop,
  Connection,
  ContentLength,
  ContentType,
  Authority,
}
interface HeaderName {
  readonly cgi: string;
  readonly kind: Kind;
}

/**
 * Request headers never forwarded as HTTP_*: `Proxy` (httpoxy: CGI code reads HTTP_PROXY as a
 * proxy setting), Expect (answered by this proxy), and the hop-by-hop fields, which include
 * Transfer-Encoding (the body goes de-chunked with CONTENT_LENGTH). `classify` checks
 * Content-Length, Content-Type and Connection first: they are handled apart.
 */
const DROPPED: ReadonlySet<string> = new Set([...HOP_BY_HOP_HEADERS, 'proxy', 'expect']);

const PLAIN_CONNECTION = new Set(['keep-alive', 'Keep-Alive', 'close', 'Close']);

/** CGI spelling by char code of the allowed header-name characters [A-Za-z0-9-]; 0 = refused. */
const CGI_CHAR = new Uint8Array(128);
for (let c = 0x30; c <= 0x39; c++) CGI_CHAR[c] = c;
for (let c = 0x41; c <= 0x5a; c++) CGI_CHAR[c] = c;
for (let c = 0x61; c <= 0x7a; c++) CGI_CHAR[c] = c - 0x20;
CGI_CHAR[0x2d] = 0x5f;

/** Raw header name -> classification. Bounded: cleared when full, so odd names cannot grow it. */
const nameCache = new Map<string, HeaderName>();
const NAME_CACHE_MAX = 1024;

function headerName(raw: string): HeaderName {
  let entry = nameCache.get(raw);
  if (entry === undefined) {
    entry = classify(raw);
    if (nameCache.size >= NAME_CACHE_MAX) nameCache.clear();
    nameCache.set(raw, entry);
  }
  return entry;
}

function classify(raw: string): HeaderName {
  if (raw === ':authority') return { cgi: 'HTTP_HOST', kind: Kind.Authority };
  let cgi = 'HTTP_';
  for (let i = 0; i < raw.length; i++) {
    // `_` and anything else outside [A-Za-z0-9-] is dropped: `X_Forwarded_For` would otherwise
    // spoof HTTP_X_FORWARDED_FOR. HTTP/2 pseudo-headers (`:path`...) fall out here too.
    const out = CGI_CHAR[raw.charCodeAt(i)] ?? 0;
    if (out === 0) return { cgi: '', kind: Kind.Drop };
    cgi += String.fromCharCode(out);
  }
  if (raw === '') return { cgi: '', kind: Kind.Drop };
  const lower = raw.toLowerCase();
  if (lower === 'cookie') return { cgi, kind: Kind.Cookie };
  if (lower === 'host') return { cgi, kind: Kind.Host };
  if (lower === 'connection') return { cgi, kind: Kind.Connection };
  if (lower === 'content-length') return { cgi, kind: Kind.ContentLength };
  if (lower === 'content-type') return { cgi, kind: Kind.ContentType };
  return { cgi, kind: DROPPED.has(lower) ? Kind.Drop : Kind.Plain };
}

export interface CollectedHeaders {
  readonly headers: [string, string][];
  readonly contentLength: string | undefined;
  readonly contentType: string | undefined;
  readonly host: string | undefined;
}

/**
 * Host (RFC 9110 §7.2, RFC 3986 §3.2.2): `uri-host [ ":" port ]`, where uri-host is an
 * IP-literal in brackets or a reg-name / IPv4 address (unreserved, pct-encoded, sub-delims);
 * may be empty. An empty host with a port (`:8080`) is refused, as nginx does.
 */
const HOST = /^(?:\[[0-9A-Za-z:._~!$&'()*+,;=-]+\]|[0-9A-Za-z._~!$&'()*+,;=%-]+)(?::[0-9]*)?$|^$/;

/** A Host value (or the authority of an absolute-form target) as RFC 9110 §7.2 allows it. */
export const isValidHost = (value: string): boolean => HOST.test(value);

/** Node's parsers refuse these, but `rawHeaders` can be written by other code: check anyway. */
function checkValue(name: string, value: string): void {
  if (hasCtl(value)) throw new BadRequestHeaderError(name);
}

/** One pass over `rawHeaders`: HTTP_* pairs in order of first appearance, duplicates joined. */
export function collectHeaders(raw: readonly string[]): CollectedHeaders {
  const headers: [string, string][] = [];
  const index = new Map<string, number>();
  let contentLength: string | undefined;
  let contentType: string | undefined;
  let host: string | undefined;
  let authority: string | undefined;
  let authorityAt = 0;
  let connection: string | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const rawName = raw[i]!;
    const value = raw[i + 1]!;
    const name = headerName(rawName);
    switch (name.kind) {
      case Kind.Drop:
        continue;
      case Kind.ContentLength:
        contentLength ??= value;
        continue;
      case Kind.ContentType:
        // The first one, as Node's `req.headers` keeps it.
        checkValue(rawName, value);
        contentType ??= value;
        continue;
      case Kind.Connection:
        // `keep-alive` / `close` name no field: skip the token work for nearly every request.
        if (!PLAIN_CONNECTION.has(value)) {
          connection = connection === undefined ? value : `${connection},${value}`;
        }
        continue;
      case Kind.Authority:
        if (!isValidHost(value)) throw new BadRequestHeaderError(rawName);
        authority ??= value;
        authorityAt = headers.length;
        continue;
      case Kind.Host:
        // RFC 9112 §3.2: a request with more than one Host is invalid; the app and the
        // framework must not be able to disagree on the host.
        if (host !== undefined) throw new BadRequestHeaderError(rawName);
        // §3.2 too: an invalid Host is a 400. The app builds URLs from it (and SERVER_NAME).
        if (!isValidHost(value)) throw new BadRequestHeaderError(rawName);
        host = value;
        break;
    }
    checkValue(rawName, value);
    const at = index.get(name.cgi);
    if (at === undefined) {
      index.set(name.cgi, headers.length);
      headers.push([name.cgi, value]);
    } else {
      const pair = headers[at]!;
      // RFC 9110 §5.3 list join; Cookie crumbs are joined with "; " (RFC 9113 §8.2.3), and an
      // empty one adds nothing (no "; a=1").
      if (name.kind !== Kind.Cookie) pair[1] += `, ${value}`;
      else if (pair[1] === '') pair[1] = value;
      else if (value !== '') pair[1] += `; ${value}`;
    }
  }
  if (host === undefined && authority !== undefined) {
    headers.splice(authorityAt, 0, ['HTTP_HOST', authority]);
    host = authority;
  }
  if (connection !== undefined) {
    // RFC 9110 §7.6.1: fields named in Connection are hop-by-hop too.
    const named = new Set<string>();
    for (const option of connectionOptions(connection)) {
      const name = headerName(option);
      if (name.kind !== Kind.Drop) named.add(name.cgi);
    }
    const kept = named.size === 0 ? headers : headers.filter(([cgi]) => !named.has(cgi));
    return { headers: kept, contentLength, contentType, host };
  }
  return { headers, contentLength, contentType, host };
}
