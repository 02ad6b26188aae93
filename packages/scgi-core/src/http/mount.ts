/**
 * The mount an adapter serves under, and request-targets a framework's router would refuse
 * before any route runs although the backend must see them.
 */
import { METHODS } from 'node:http';
import { InvalidOptionError } from '../errors.js';

/** A mount prefix as given: "" (root), or `/path` without a trailing slash or special characters. */
export function checkMountPrefix(prefix: unknown, name = 'prefix'): string {
  if (prefix === undefined || prefix === '' || prefix === '/') return '';
  if (typeof prefix !== 'string' || !prefix.startsWith('/') || prefix.endsWith('/')) {
    throw new InvalidOptionError(
      name,
      'must be "" or start with "/" and not end with "/", e.g. "/app"',
    );
  }
  if (/[?#%*:\s]/.test(prefix)) {
    throw new InvalidOptionError(name, 'must be a plain path without ?, #, %, *, : or spaces');
  }
  return prefix;
}

/** Where the path of an absolute-form target (`scheme://authority/path`) starts, else -1. */
function pathStart(url: string): number {
  const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/.exec(url);
  return m === null || url.charCodeAt(m[0].length) !== 0x2f ? -1 : m[0].length;
}

/** True when the path is not valid UTF-8 after percent-decoding. */
function badlyEncoded(url: string): boolean {
  if (!url.includes('%')) return false;
  const q = url.indexOf('?');
  try {
    decodeURI(q === -1 ? url : url.slice(0, q));
    return false;
  } catch {
    return true;
  }
}

/**
 * A router (find-my-way, under Fastify) answers 400 to a path that is not valid UTF-8 after
 * percent-decoding, before any route runs; the backend must still see it (PATH_INFO is bytes).
 * For such a target under `mount` (also in absolute form, `http://host/app/%E9`), returns a copy
 * whose path has every `%` escaped, which routes to the same mount; else null. The adapter keeps
 * the original for the CGI environment.
 */
export function routableUrl(url: string, mount: string): string | null {
  if (!badlyEncoded(url)) return null;
  const start = url.charCodeAt(0) === 0x2f ? 0 : pathStart(url);
  if (start === -1 || !(mount === '' || url.startsWith(`${mount}/`, start))) return null;
  const q = url.indexOf('?', start);
  const path = q === -1 ? url.slice(start) : url.slice(start, q);
  return path.replaceAll('%', '%25') + (q === -1 ? '' : url.slice(q));
}

/**
 * The methods a mount forwards (`methods`): a list of methods Node parses, or 'all' of them; the
 * default is what the app routes already (`supported`), so mounting does not widen it. CONNECT
 * never reaches a route (see connect-method.ts).
 */
export function resolveMountMethods(value: unknown, supported: readonly string[]): string[] {
  if (value === undefined) return supported.filter((m) => m !== 'CONNECT');
  if (value === 'all') return METHODS.filter((m) => m !== 'CONNECT');
  if (!Array.isArray(value) || value.some((m) => !METHODS.includes(m) || m === 'CONNECT')) {
    throw new InvalidOptionError(
      'methods',
      `must be 'all' or a list of methods Node parses (${METHODS.join(', ')}), CONNECT excepted`,
    );
  }
  return [...new Set(value as string[])];
}
