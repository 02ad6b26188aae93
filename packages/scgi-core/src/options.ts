/**
 * Proxy options: validated once, resolved into a new frozen object (the caller's object is
 * never touched). Defaults use `??` so an explicit 0 survives where 0 means "off".
 */
import { tmpdir } from 'node:os';
import { parseAddress, type UpstreamAddress } from './address.js';
import { type CgiEnvOptions, type ResolvedCgiEnvOptions, resolveCgiEnvOptions } from './cgi-env.js';
import { type Connector, defaultConnector } from './connect.js';
import { InvalidOptionError } from './errors.js';

export interface ScgiProxyOptions extends CgiEnvOptions {
  /**
   * The SCGI backend: `unix:/run/app.sock`, `/run/app.sock`, `host:port` or `[::1]:port`.
   * Prefer a Unix socket: SCGI opens one connection per request, and over TCP the closed
   * connections pile up in TIME_WAIT under load.
   */
  upstream: string;
  /**
   * Milliseconds to wait for the connection to the backend; 0 disables.
   * @default 10000
   */
  connectTimeout?: number;
  /**
   * Milliseconds to wait for the response head once the request is fully sent (nginx's
   * `scgi_read_timeout` default is 60 s); answered with 504. 0 disables.
   * @default 60000
   */
  headersTimeout?: number;
  /**
   * Milliseconds without any traffic in either direction on the backend connection, not counting
   * time the client spends not reading. Before the head: 504; after: the client connection is
   * destroyed. 0 disables.
   * @default 60000
   */
  idleTimeout?: number;
  /**
   * Largest request body in bytes; a larger one is answered 413 without reaching the backend
   * (the Content-Length is checked up front; a chunked body while it is read).
   * @default 1073741824 (1 GiB)
   */
  maxBodySize?: number;
  /**
   * Bytes of a body of unknown length (chunked) kept in memory before it moves to a private
   * temp file. Bounds the memory one upload can take.
   * @default 1048576 (1 MiB)
   */
  spoolMemory?: number;
  /**
   * Folder for spooled request bodies (files are created 0600 and always removed).
   * @default os.tmpdir()
   */
  tmpDir?: string;
  /**
   * Largest CGI response head in bytes; larger is a 502 (a runaway or hostile backend cannot
   * make the proxy buffer without bound).
   * @default 65536
   */
  maxHeadSize?: number;
  /** Replaces how sockets to the backend are opened (undici-style connector). */
  connector?: Connector;
}

export interface ResolvedProxyOptions {
  readonly upstream: UpstreamAddress;
  readonly connectTimeout: number;
  readonly headersTimeout: number;
  readonly idleTimeout: number;
  readonly maxBodySize: number;
  readonly spoolMemory: number;
  readonly tmpDir: string;
  readonly maxHeadSize: number;
  readonly connector: Connector;
  readonly env: ResolvedCgiEnvOptions;
}

function nonNegativeInt(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidOptionError(name, `must be a non-negative integer, got ${String(value)}`);
  }
  return value;
}

function positiveInt(name: string, value: unknown, fallback: number): number {
  const n = nonNegativeInt(name, value, fallback);
  if (n === 0) throw new InvalidOptionError(name, 'must be greater than 0');
  return n;
}

const PROXY_KEYS = new Set([
  'upstream',
  'connectTimeout',
  'headersTimeout',
  'idleTimeout',
  'maxBodySize',
  'spoolMemory',
  'tmpDir',
  'maxHeadSize',
  'connector',
]);

/** Validates and resolves proxy options. Throws `SCGI_ERR_INVALID_OPTION` naming the option. */
export function resolveProxyOptions(options: ScgiProxyOptions): ResolvedProxyOptions {
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionError('options', 'must be an object');
  }
  if (options.upstream === undefined) throw new InvalidOptionError('upstream', 'is required');
  if (typeof options.upstream !== 'string') {
    throw new InvalidOptionError(
      'upstream',
      'must be a string such as unix:/run/app.sock or 127.0.0.1:9000',
    );
  }
  if (options.connector !== undefined && typeof options.connector !== 'function') {
    throw new InvalidOptionError('connector', 'must be a function');
  }
  if (
    options.tmpDir !== undefined &&
    (typeof options.tmpDir !== 'string' || options.tmpDir === '')
  ) {
    throw new InvalidOptionError('tmpDir', 'must be a non-empty string');
  }
  const envOptions: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) {
    if (!PROXY_KEYS.has(key)) envOptions[key] = value;
  }
  return Object.freeze({
    upstream: parseAddress(options.upstream),
    connectTimeout: nonNegativeInt('connectTimeout', options.connectTimeout, 10_000),
    headersTimeout: nonNegativeInt('headersTimeout', options.headersTimeout, 60_000),
    idleTimeout: nonNegativeInt('idleTimeout', options.idleTimeout, 60_000),
    maxBodySize: nonNegativeInt('maxBodySize', options.maxBodySize, 1024 * 1024 * 1024),
    spoolMemory: nonNegativeInt('spoolMemory', options.spoolMemory, 1024 * 1024),
    tmpDir: options.tmpDir ?? tmpdir(),
    maxHeadSize: positiveInt('maxHeadSize', options.maxHeadSize, 64 * 1024),
    connector: options.connector ?? defaultConnector,
    env: resolveCgiEnvOptions(envOptions as CgiEnvOptions),
  });
}
