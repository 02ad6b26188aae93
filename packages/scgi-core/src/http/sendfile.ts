/**
 * X-Sendfile and X-Accel-Redirect: the backend answers with a header naming a file and no body,
 * and the proxy serves the file itself, as lighttpd's `x-sendfile` with `x-sendfile-docroot`,
 * Apache's mod_xsendfile (`ProxySCGISendfile`) and nginx's `X-Accel-Redirect` do. The app keeps
 * the access decision; the bytes never pass through its workers.
 *
 * Off by default; then the parser hides both headers from the client (cgi/response-parser.ts),
 * so a path on the backend's disk never leaks. On, only files under `root` are served: the
 * target and the root are both resolved with realpath (symlinks followed) and compared, so
 * neither `..` nor a symlink pointing out of the root escapes it (403).
 *
 * Serving goes through `@fastify/send` (the maintained fork of `send`, which Express's
 * `res.sendFile` uses): Range (206/416), conditional requests (304/412), HEAD, ETag and
 * Last-Modified, Content-Length, a streamed body. Its promise API hands back status, headers and
 * a stream without touching the response, so the engine keeps returning one `ScgiResponse` and
 * both adapters write it as any other.
 */
import { statSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import send from '@fastify/send';
import {
  InvalidOptionError,
  type ScgiError,
  SendfileForbiddenError,
  SendfileNotFoundError,
  SendfilePathError,
} from '../errors.js';
import type { ResponseHeaders } from '../types.js';

/** The `sendfile` option. */
export interface SendfileOptions {
  /**
   * The folder the backend may name files in (lighttpd `x-sendfile-docroot`). Resolved with
   * realpath on every request, so a `current` symlink switched by a deploy is followed; a file
   * whose real path is not under the root's real path gets 403 `SCGI_ERR_SENDFILE_FORBIDDEN`.
   */
  root: string;
  /**
   * The response header the backend names the file in:
   * - `X-Sendfile` (Apache, lighttpd): a filesystem path, absolute (it must lie under `root`) or
   *   relative to `root`.
   * - `X-Accel-Redirect` (nginx): a URI path starting with `/`, percent-decoded and served from
   *   `root` (as an nginx `internal` location with `root <root>`); a query string is ignored.
   * @default 'X-Sendfile'
   */
  header?: 'X-Sendfile' | 'X-Accel-Redirect';
}

export interface ResolvedSendfile {
  /** Absolute, not yet realpath'd (that happens per request). */
  readonly root: string;
  /** Lower-case header name. */
  readonly header: 'x-sendfile' | 'x-accel-redirect';
  /** The header as the user spelt it, for error messages. */
  readonly headerName: string;
}

const SENDFILE_KEYS = new Set(['root', 'header']);

/** Validates the `sendfile` option: off (`undefined`/`false`) or `{ root, header }`. */
export function resolveSendfile(value: unknown): ResolvedSendfile | null {
  if (value === undefined || value === false) return null;
  if (value === null || typeof value !== 'object') {
    throw new InvalidOptionError('sendfile', 'must be false or { root, header }');
  }
  const v = value as Record<string, unknown>;
  for (const key of Object.keys(v)) {
    if (!SENDFILE_KEYS.has(key)) {
      throw new InvalidOptionError(`sendfile.${key}`, 'is not an option (root, header)');
    }
  }
  if (typeof v.root !== 'string' || v.root === '') {
    throw new InvalidOptionError('sendfile.root', 'must be a non-empty path');
  }
  const root = resolve(v.root);
  let isDir = false;
  try {
    isDir = statSync(root).isDirectory();
  } catch {}
  // Fail at creation on a typo, not with a 404 on every request.
  if (!isDir) throw new InvalidOptionError('sendfile.root', `${root} is not a directory`);
  const given = v.header ?? 'X-Sendfile';
  const header = typeof given === 'string' ? given.toLowerCase() : '';
  if (header !== 'x-sendfile' && header !== 'x-accel-redirect') {
    throw new InvalidOptionError('sendfile.header', "must be 'X-Sendfile' or 'X-Accel-Redirect'");
  }
  return Object.freeze({
    root,
    header,
    headerName: header === 'x-sendfile' ? 'X-Sendfile' : 'X-Accel-Redirect',
  });
}

/**
 * Backend headers that describe the backend's own (empty) body: the file's take their place.
 * Everything else the backend sent stays (Content-Type, Content-Disposition, Cache-Control,
 * Set-Cookie, Vary, a Content-Encoding for a file stored compressed...): the app decides how the file is labelled and cached, as nginx keeps
 * Content-Type, Set-Cookie, Content-Disposition, Cache-Control and Expires on X-Accel-Redirect.
 */
const ENTITY_HEADERS = [
  'content-length',
  'content-range',
  'accept-ranges',
  'etag',
  'last-modified',
];

/** What {@link serveSendfile} needs of the response it may replace. */
export interface SendfileSource {
  readonly headers: ResponseHeaders;
  readonly bodyBuffer: Buffer | null;
  readonly body: Readable;
}

/** The file's answer: its status, the merged headers, the file stream. */
export interface SendfileAnswer {
  readonly statusCode: number;
  readonly headers: ResponseHeaders;
  readonly body: Readable;
}

/** The request as `@fastify/send` reads it (method and the conditional and Range headers). */
type SendRequest = Parameters<typeof send>[0];

/**
 * Serves the file a response names, or returns null when it names none. Rejects with
 * `SCGI_ERR_SENDFILE_PATH` (502), `SCGI_ERR_SENDFILE_FORBIDDEN` (403) or
 * `SCGI_ERR_SENDFILE_NOT_FOUND` (404); the backend's own body is dropped in every case.
 */
export async function serveSendfile(
  req: { readonly method?: string; readonly headers: object },
  response: SendfileSource,
  cfg: ResolvedSendfile,
): Promise<SendfileAnswer | null> {
  const value = response.headers[cfg.header];
  if (value === undefined) return null;
  // The file replaces the body: stop reading the backend now (nginx ends the upstream request on
  // X-Accel-Redirect). Dropping a body is not a backend failure (engine/exchange.ts).
  if (response.bodyBuffer === null) response.body.destroy();
  const target = Array.isArray(value) ? value[0]! : value;
  const wanted = targetPath(target, cfg);
  const realRoot = await realpath(cfg.root).catch(() => {
    throw new SendfileNotFoundError(cfg.headerName);
  });
  const real = await realpath(wanted).catch((err: NodeJS.ErrnoException) => {
    throw fileError(err, cfg.headerName);
  });
  const inside = relative(realRoot, real);
  if (inside === '' || inside.startsWith(`..${sep}`) || inside === '..' || isAbsolute(inside)) {
    throw new SendfileForbiddenError(cfg.headerName);
  }
  // Given relative to the real root with `root` set, so send's own `..` check holds as well.
  const encoded = inside.split(sep).map(encodeURIComponent).join('/');
  const result = await send(req as unknown as SendRequest, encoded, {
    root: realRoot,
    index: false,
    dotfiles: 'allow',
    // The app sets Cache-Control if it wants one; send's default `max-age=0` would override it.
    cacheControl: false,
  });
  const status = result.statusCode;
  if (result.type !== 'file' && status !== 412 && status !== 416) {
    result.stream.destroy();
    // A directory (send redirects), or a file that cannot be read.
    throw status === 404
      ? new SendfileNotFoundError(cfg.headerName)
      : new SendfileForbiddenError(cfg.headerName);
  }
  return {
    statusCode: status,
    headers: mergeHeaders(response.headers, result, cfg),
    body: result.stream,
  };
}

/** Where the header's value points, before symlinks are resolved. */
function targetPath(value: string, cfg: ResolvedSendfile): string {
  const bad = (): ScgiError => new SendfilePathError(cfg.headerName);
  if (value === '' || value.includes('\0')) throw bad();
  if (cfg.header === 'x-sendfile') return resolve(cfg.root, value);
  if (!value.startsWith('/')) throw bad();
  const q = value.indexOf('?');
  let path: string;
  try {
    path = decodeURIComponent(q === -1 ? value : value.slice(0, q));
  } catch {
    throw bad();
  }
  if (path.includes('\0')) throw bad();
  // join() resolves `..` lexically; whatever comes out, the realpath check decides.
  return join(cfg.root, path);
}

function fileError(err: NodeJS.ErrnoException, header: string): ScgiError {
  return err.code === 'ENOENT' || err.code === 'ENOTDIR'
    ? new SendfileNotFoundError(header, { cause: err })
    : new SendfileForbiddenError(header, { cause: err });
}

function mergeHeaders(
  backend: ResponseHeaders,
  result: Awaited<ReturnType<typeof send>>,
  cfg: ResolvedSendfile,
): ResponseHeaders {
  const out: ResponseHeaders = {};
  for (const name of Object.keys(backend)) {
    if (name !== cfg.header && !ENTITY_HEADERS.includes(name)) out[name] = backend[name]!;
  }
  const file = result.type === 'file';
  // RFC 9110 §15.4.5: a 304 carries no Content-Type of its own.
  if (result.statusCode === 304) delete out['content-type'];
  for (const [name, value] of Object.entries(result.headers)) {
    const lower = name.toLowerCase();
    // The app's Content-Type labels the file (send only guesses from the extension); send's
    // error pages (412, 416) keep their own.
    if (lower === 'content-type' && file && out[lower] !== undefined) continue;
    out[lower] = String(value);
  }
  return out;
}
