/**
 * The CGI environment (RFC 3875 meta-variables + `HTTP_*`) sent as the SCGI header block.
 *
 * Options are validated and compiled once by {@link resolveCgiEnvOptions}; {@link buildCgiEnv}
 * then runs per request with one pass over `req.rawHeaders` and a cache of header names.
 */
import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import proxyAddr from 'proxy-addr';
import { BadPathError, InvalidOptionError } from '../errors.js';
import type { EnvInput, EnvPair, EnvValue } from '../types.js';
import { collectHeaders, hasCtl, isValidHost } from './headers.js';
import {
  decodeRequestPath,
  scriptNameProblem,
  splitRequestTarget,
  splitScriptName,
} from './request-path.js';

/** A request `buildCgiEnv` reads: Node's HTTP/1 or HTTP/2 compatibility request. */
export type CgiRequest = IncomingMessage | Http2ServerRequest;

/**
 * Which peers may set X-Forwarded-For / X-Forwarded-Proto, with the semantics of `proxy-addr`
 * (the same as Fastify's `trustProxy` and Express's `trust proxy`): `true` trusts every hop, a
 * number trusts that many hops from the socket, a string (comma-separated) or array lists
 * addresses, CIDRs and the names `loopback`, `linklocal`, `uniquelocal`; a function decides
 * per address and hop index (0 = the socket peer).
 */
export type TrustProxy = boolean | number | string | string[] | TrustFunction;

/** Whether to trust `addr`, the address `hop` steps from the socket (0 = the socket peer). */
export type TrustFunction = (addr: string, hop: number) => boolean;

/** Options of the CGI environment. */
export interface CgiEnvOptions {
  /**
   * The mount prefix, sent as SCRIPT_NAME, in decoded `/app` form (leading `/`, no trailing
   * `/`), or "" for the root. A request whose decoded, dot-resolved path is not the prefix or
   * below it is refused (`SCGI_ERR_BAD_PATH`), so `/app/../admin` never reaches the backend.
   * @default ""
   */
  scriptName?: string;
  /**
   * Extra variables, or a function of the request returning them. A name that is already
   * present is replaced in place (its position is kept); new names are appended at the end.
   * CONTENT_LENGTH and SCGI may not be set: flup and friends read exactly CONTENT_LENGTH body
   * bytes, so a wrong value desynchronises the stream. Static params are checked here; a
   * function's result is checked per request and a bad one throws `SCGI_ERR_INVALID_OPTION`
   * (a 500: it is a configuration bug, never silently ignored). A function also gets the
   * request's mount (`context.scriptName`: the option's, or Express's `req.baseUrl`), so a PHP
   * front controller can send SCRIPT_NAME = mount + script (see `phpFrontController`).
   * @default undefined
   */
  params?: EnvInput | ParamsFunction;
  /**
   * Trusted proxies (see {@link TrustProxy}). Only when the socket peer is trusted do
   * REMOTE_ADDR come from X-Forwarded-For and REQUEST_SCHEME / HTTPS from X-Forwarded-Proto;
   * otherwise any client could claim any address or TLS. The X-Forwarded-* headers themselves
   * are always forwarded as HTTP_X_FORWARDED_* (they are client headers, as with nginx).
   * @default false
   */
  trustProxy?: TrustProxy;
  /**
   * SERVER_NAME. Without it the Host header (HTTP/2: `:authority`) is used, minus its port
   * (an IPv6 literal keeps its brackets), else the local address; both are client-influenced,
   * so set it when the backend builds absolute URLs from SERVER_NAME.
   * @default the request's host, else the socket's local address
   */
  serverName?: string;
  /**
   * SERVER_PORT (1-65535). Set it behind a proxy that listens on another port. The default never
   * comes from the Host header, which the client controls.
   * @default the socket's local port (the scheme's default port on a Unix socket)
   */
  serverPort?: number | string;
  /**
   * SERVER_SOFTWARE. The default carries no version, so the backend cannot leak one.
   * @default "scgi-core"
   */
  serverSoftware?: string;
}

/** What a `params` function knows of the request besides the request itself. */
export interface ParamsContext {
  /** The mount prefix of this request, as sent in SCRIPT_NAME ("" at the root). */
  readonly scriptName: string;
}

/** A `params` function: the variables of one request. */
export type ParamsFunction = (req: CgiRequest, context: ParamsContext) => EnvInput;

/** Resolved, frozen options; build them once with {@link resolveCgiEnvOptions}. */
export interface ResolvedCgiEnvOptions {
  readonly scriptName: string;
  /** Static params (validated, frozen), a params function, or null. */
  readonly params: readonly EnvPair[] | ParamsFunction | null;
  /** The compiled trust function, or null when no proxy is trusted. */
  readonly trustProxy: TrustFunction | null;
  readonly serverName: string | null;
  readonly serverPort: string | null;
  readonly serverSoftware: string;
}

/** Per-request inputs that the request object does not hold. */
export interface CgiEnvRequestInfo {
  /** The original request-target when a framework rewrote `req.url` (Express: `req.originalUrl`). */
  url?: string;
  /**
   * The body length the engine will send (after spooling). `undefined` / `null`: the request's
   * Content-Length when it is decimal digits, else 0.
   */
  contentLength?: number | null;
  /**
   * The mount prefix of this request (Express: `req.baseUrl`), instead of the option's. Checked
   * like the option (results cached); an invalid one is `SCGI_ERR_BAD_PATH`, since it comes from
   * the URL. Adapters that take it from configuration should check it up front with
   * `scriptNameProblem`.
   */
  scriptName?: string;
}

/** A checked mount prefix: its bytes (compared with the decoded path) and its SCRIPT_NAME value. */
interface Prefix {
  readonly bytes: Buffer;
  readonly value: EnvValue;
  /** What a params function is told (the prefix as given). */
  readonly context: ParamsContext;
}
/** Prefix of each resolved options object; also tells resolved options from raw ones. */
const compiled = new WeakMap<ResolvedCgiEnvOptions, Prefix>();
/** Per-request prefixes already checked; mounts are few, the bound is only a guard. */
const prefixCache = new Map<string, Prefix>();

function compilePrefix(scriptName: unknown, perRequest: boolean): Prefix {
  const hit = typeof scriptName === 'string' ? prefixCache.get(scriptName) : undefined;
  if (hit !== undefined) return hit;
  const problem =
    typeof scriptName === 'string' ? scriptNameProblem(scriptName) : 'must be a string';
  if (problem !== null) {
    const reason = `${problem}, got "${String(scriptName)}"`;
    // Per request it comes from the URL (Express's `req.baseUrl`): a client error, not ours.
    throw perRequest ? new BadPathError(`scriptName ${reason}`) : bad('scriptName', reason);
  }
  const name = scriptName as string;
  const bytes = Buffer.from(name, 'utf8');
  // A non-ASCII prefix goes out as the same UTF-8 bytes that DOCUMENT_URI holds.
  const prefix = {
    bytes,
    value: bytes.length === name.length ? name : bytes,
    context: Object.freeze({ scriptName: name }),
  };
  if (prefixCache.size >= 64) prefixCache.clear();
  prefixCache.set(name, prefix);
  return prefix;
}

const bad = (option: string, reason: string, cause?: unknown) =>
  cause === undefined
    ? new InvalidOptionError(option, reason)
    : new InvalidOptionError(option, reason, { cause });

/** Validates `options` (never mutating them) and returns a new frozen, compiled object. */
export function resolveCgiEnvOptions(options: CgiEnvOptions = {}): ResolvedCgiEnvOptions {
  if (options === null || typeof options !== 'object') throw bad('options', 'must be an object');
  const scriptName = options.scriptName ?? '';
  const prefix = compilePrefix(scriptName, false);
  const { params } = options;
  let resolvedParams: ResolvedCgiEnvOptions['params'] = null;
  if (typeof params === 'function') resolvedParams = params;
  else if (params !== undefined) {
    // Copied: a Buffer the caller changes later must not change what we send.
    const copy = (v: EnvValue) => (typeof v === 'string' ? v : Buffer.from(v));
    resolvedParams = Object.freeze(
      normalizeParams(params).map(([n, v]) => Object.freeze([n, copy(v)] as const)),
    );
  }
  const resolved: ResolvedCgiEnvOptions = Object.freeze({
    scriptName,
    params: resolvedParams,
    trustProxy: compileTrust(options.trustProxy),
    serverName: textOption('serverName', options.serverName) ?? null,
    serverPort: portOption(options.serverPort),
    serverSoftware: textOption('serverSoftware', options.serverSoftware) ?? 'scgi-core',
  });
  compiled.set(resolved, prefix);
  return resolved;
}

function textOption(name: string, value: unknown): string | undefined {
  if (value !== undefined && (typeof value !== 'string' || value === '' || hasCtl(value))) {
    throw bad(name, 'must be a non-empty string without NUL, CR or LF');
  }
  return value as string | undefined;
}

function portOption(value: unknown): string | null {
  if (value === undefined) return null;
  const text = typeof value === 'number' ? String(value) : value;
  if (typeof text !== 'string' || !/^[1-9][0-9]{0,4}$/.test(text) || Number(text) > 65535) {
    throw bad('serverPort', `must be a port number 1-65535, got ${String(value)}`);
  }
  return text;
}

/** Fastify's `trustProxy` / Express's `trust proxy` compilation, on top of proxy-addr. */
function compileTrust(value: unknown): ResolvedCgiEnvOptions['trustProxy'] {
  if (value === undefined || value === false) return null;
  if (value === true) return () => true;
  if (typeof value === 'function') return value as TrustFunction;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw bad('trustProxy', `a hop count must be a non-negative integer, got ${value}`);
    }
    return (_addr, hop) => hop < value;
  }
  const list = typeof value === 'string' ? value.split(',').map((s) => s.trim()) : value;
  if (!Array.isArray(list) || !list.every((s) => typeof s === 'string')) {
    throw bad('trustProxy', 'must be a boolean, number, string, string[] or function');
  }
  try {
    return proxyAddr.compile(list.slice());
  } catch (cause) {
    throw bad('trustProxy', (cause as Error).message, cause);
  }
}

/** Checks params and returns them as pairs; throws `SCGI_ERR_INVALID_OPTION` naming `params`. */
function normalizeParams(input: EnvInput): EnvPair[] {
  if (input === null || typeof input !== 'object') {
    throw bad('params', 'must be an object, an iterable of [name, value] or a function');
  }
  const entries: Iterable<unknown> =
    typeof (input as Iterable<EnvPair>)[Symbol.iterator] === 'function'
      ? (input as Iterable<EnvPair>)
      : Object.entries(input);
  const out: EnvPair[] = [];
  for (const entry of entries) {
    if (!Array.isArray(entry) || entry.length !== 2)
      throw bad('params', 'need [name, value] pairs');
    const [name, value] = entry as [unknown, unknown];
    if (typeof name !== 'string' || name === '' || name.includes('\0')) {
      throw bad('params', `name ${String(name)} must be a non-empty string without NUL`);
    }
    if (name === 'CONTENT_LENGTH' || name === 'SCGI') {
      throw bad('params', `${name} is set by the proxy and may not be overridden`);
    }
    const ok =
      typeof value === 'string'
        ? !value.includes('\0')
        : Buffer.isBuffer(value) && !value.includes(0);
    if (!ok) {
      throw bad('params', `value of ${name} must be a string or Buffer without NUL`);
    }
    out.push([name, value as EnvValue]);
  }
  return out;
}

// --- the environment ----------------------------------------------------------------------

// Every pair of an environment is a new array literal, constants too: shared pairs would have to
// be frozen (a rewriteEnv hook may change a pair in place), and frozen arrays have another map,
// which makes the encoders' `pair[0]` / `pair[1]` loads polymorphic: that doubled the time to
// encode a head (SCGI and FastCGI alike) for the cost of five small arrays.

/**
 * Builds the CGI environment of `req`, in this order: CONTENT_LENGTH, SCGI, REQUEST_METHOD,
 * REQUEST_URI, QUERY_STRING, CONTENT_TYPE, DOCUMENT_URI, SCRIPT_NAME, PATH_INFO,
 * SERVER_PROTOCOL, REQUEST_SCHEME, HTTPS (only when the scheme is https, then "on"; otherwise
 * the variable is absent, as with nginx), REMOTE_ADDR, REMOTE_PORT, SERVER_ADDR, SERVER_NAME,
 * SERVER_PORT, SERVER_SOFTWARE, GATEWAY_INTERFACE, the HTTP_* variables in order of first
 * appearance, then params (which replace existing names in place).
 *
 * DOCUMENT_URI and PATH_INFO are Buffers: percent-decoded bytes need not be UTF-8. Addresses
 * are shown as Node gives them, except that IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is shown as
 * plain IPv4, as nginx shows IPv4 clients.
 *
 * @param options resolved options (fast), or raw options, resolved on each call (slow)
 * @param perRequest the original URL and the body length, when they differ from `req`'s
 * @throws `SCGI_ERR_BAD_PATH`, `SCGI_ERR_PATH_NUL`, `SCGI_ERR_BAD_REQUEST_HEADER` (400s);
 *   `SCGI_ERR_INVALID_OPTION` for a bad `contentLength` or a params function's bad result
 */
export function buildCgiEnv(
  req: CgiRequest,
  options: ResolvedCgiEnvOptions | CgiEnvOptions,
  perRequest?: CgiEnvRequestInfo,
): EnvPair[] {
  let resolved = options as ResolvedCgiEnvOptions;
  let prefix = compiled.get(resolved);
  if (prefix === undefined) {
    resolved = resolveCgiEnvOptions(options as CgiEnvOptions);
    prefix = compiled.get(resolved)!;
  }
  if (perRequest?.scriptName !== undefined) prefix = compilePrefix(perRequest.scriptName, true);
  const target = splitRequestTarget(perRequest?.url ?? req.url ?? '');
  if (hasCtl(target.uri)) throw new BadPathError('the request-target contains NUL, CR or LF');
  const documentUri = decodeRequestPath(target.path);
  const pathInfo = splitScriptName(documentUri, prefix.bytes);
  const h = collectHeaders(req.rawHeaders);
  let host = h.host;
  if (target.authority !== undefined) {
    // RFC 9112 §3.2.2: with an absolute-form target the server uses its authority and ignores
    // Host, so the app sees the host the request was sent to (HTTP_HOST, SERVER_NAME).
    host = target.authority;
    if (!isValidHost(host)) throw new BadPathError('the request-target authority is not a host');
    const at = h.headers.findIndex((pair) => pair[0] === 'HTTP_HOST');
    if (at === -1) h.headers.unshift(['HTTP_HOST', host]);
    else h.headers[at]![1] = host;
  }

  const socket = req.socket as Partial<TLSSocket> | null | undefined;
  const peer = socket?.remoteAddress;
  let remoteAddr = peer;
  let https = socket?.encrypted === true;
  const trust = resolved.trustProxy;
  if (trust !== null && peer !== undefined) {
    const addrs = proxyAddr.all(req as IncomingMessage, trust);
    remoteAddr = addrs[addrs.length - 1] ?? peer;
    if (trust(peer, 0)) {
      const proto = forwardedProto(h.headers, addrs.length);
      if (proto !== null) https = proto === 'https';
    }
  }
  const localAddr = plainAddress(socket?.localAddress);
  const localPort = socket?.localPort;

  const env: EnvPair[] = [
    ['CONTENT_LENGTH', contentLengthValue(perRequest?.contentLength, h.contentLength)],
    ['SCGI', '1'],
    ['REQUEST_METHOD', req.method ?? 'GET'],
    ['REQUEST_URI', target.uri],
    ['QUERY_STRING', target.query],
    ['CONTENT_TYPE', h.contentType ?? ''],
    ['DOCUMENT_URI', documentUri],
    ['SCRIPT_NAME', prefix.value],
    ['PATH_INFO', pathInfo],
    ['SERVER_PROTOCOL', `HTTP/${req.httpVersion}`],
    ['REQUEST_SCHEME', https ? 'https' : 'http'],
  ];
  if (https) env.push(['HTTPS', 'on']);
  env.push(
    ['REMOTE_ADDR', plainAddress(remoteAddr)],
    ['REMOTE_PORT', socket?.remotePort === undefined ? '' : String(socket.remotePort)],
    ['SERVER_ADDR', localAddr],
    ['SERVER_NAME', resolved.serverName ?? hostName(host) ?? bracketed(localAddr)],
    [
      'SERVER_PORT',
      resolved.serverPort ?? (localPort === undefined ? (https ? '443' : '80') : String(localPort)),
    ],
    ['SERVER_SOFTWARE', resolved.serverSoftware],
    ['GATEWAY_INTERFACE', 'CGI/1.1'],
  );
  for (const pair of h.headers) env.push(pair);
  const { params } = resolved;
  if (typeof params === 'function') applyParams(env, normalizeParams(params(req, prefix.context)));
  else if (params !== null) applyParams(env, params.map(copyPair));
  return env;
}

function contentLengthValue(given: number | null | undefined, header: string | undefined): string {
  if (given !== undefined && given !== null) {
    if (typeof given !== 'number' || !Number.isSafeInteger(given) || given < 0) {
      throw bad('contentLength', `must be a non-negative integer, got ${String(given)}`);
    }
    return String(given);
  }
  // Normalised ("007" -> "7"): some servers parse CONTENT_LENGTH strictly.
  const n = header !== undefined && /^[0-9]+$/.test(header) ? Number(header) : 0;
  return Number.isSafeInteger(n) ? String(n) : '0';
}

/**
 * The scheme the outermost trusted proxy saw: the X-Forwarded-Proto entry at the same depth as
 * the address proxy-addr picked (each trusted proxy appends one entry to both lists); when the
 * list is shorter (proxies that overwrite it), its first entry. Anything but http/https: null.
 */
function forwardedProto(headers: [string, string][], hops: number): string | null {
  const pair = headers.find(([name]) => name === 'HTTP_X_FORWARDED_PROTO');
  if (pair === undefined) return null;
  const protos = pair[1].split(',').map((s) => s.trim());
  const fromEnd = Math.min(Math.max(hops - 2, 0), protos.length - 1);
  const proto = protos[protos.length - 1 - fromEnd]?.toLowerCase();
  return proto === 'http' || proto === 'https' ? proto : null;
}

/** `::ffff:1.2.3.4` -> `1.2.3.4`; undefined (a Unix socket, a closed socket) -> "". */
function plainAddress(addr: string | undefined): string {
  if (addr === undefined) return '';
  if (addr.length > 7 && addr.slice(0, 7).toLowerCase() === '::ffff:' && addr.includes('.', 7)) {
    return addr.slice(7);
  }
  return addr;
}

/** An IPv6 address as a host name, in brackets, as it would appear in a URL. */
function bracketed(addr: string): string {
  return addr.includes(':') ? `[${addr}]` : addr;
}

/** The host of a Host header without its port; `[::1]:8080` -> `[::1]`; "" -> undefined. */
function hostName(host: string | undefined): string | undefined {
  if (host === undefined) return undefined;
  let end: number;
  if (host.charCodeAt(0) === 0x5b) {
    end = host.indexOf(']') + 1;
    if (end === 0) end = host.length;
  } else {
    end = host.indexOf(':');
    if (end === -1) end = host.length;
  }
  return end === 0 ? undefined : host.slice(0, end);
}

/** A new pair of the same strings (see the note on pairs above buildCgiEnv). */
const copyPair = (pair: EnvPair): EnvPair => [pair[0], pair[1]];

/** Replaces variables in place (keeping their position) and appends new ones. */
function applyParams(env: EnvPair[], params: readonly EnvPair[]): void {
  if (params.length === 0) return;
  if (params.length <= 8) {
    // A few params (PHP's SCRIPT_FILENAME and DOCUMENT_ROOT): a scan per name costs less than
    // indexing the ~20 names of the environment in a Map on every request.
    for (const pair of params) {
      const name = pair[0];
      let at = -1;
      for (let i = 0; i < env.length; i++) {
        if (env[i]![0] === name) {
          at = i;
          break;
        }
      }
      if (at === -1) env.push(pair);
      else env[at] = pair;
    }
    return;
  }
  const index = new Map<string, number>();
  for (let i = 0; i < env.length; i++) index.set(env[i]![0], i);
  for (const pair of params) {
    const at = index.get(pair[0]);
    if (at === undefined) {
      index.set(pair[0], env.length);
      env.push(pair);
    } else {
      env[at] = pair;
    }
  }
}
