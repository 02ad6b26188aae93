/**
 * Upstream address parsing. The forms follow nginx `scgi_pass` and common SCGI server flags:
 * `unix:/run/app.sock`, `/run/app.sock` (an absolute path), `host:port`, `[::1]:port`; any of
 * them after `fastcgi://` (a FastCGI backend: `fastcgi://127.0.0.1:9000`,
 * `fastcgi://unix:/run/php/php-fpm.sock`) or `scgi://`. A bare address is SCGI.
 */
import { isIP } from 'node:net';
import { InvalidAddressError } from '../errors.js';

/** The wire protocol an address names: its `scheme://`, SCGI when it has none. */
export type UpstreamScheme = 'scgi' | 'fastcgi';

/**
 * A parsed upstream address. `label` is the canonical text form, used in logs (never in
 * responses); it leaves the scheme out, so one socket has one label whatever speaks on it.
 */
export type UpstreamAddress =
  | {
      readonly kind: 'unix';
      readonly path: string;
      readonly label: string;
      readonly scheme: UpstreamScheme;
    }
  | {
      readonly kind: 'tcp';
      readonly host: string;
      readonly port: number;
      readonly label: string;
      readonly scheme: UpstreamScheme;
    };

const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;

const FORMS =
  'unix:/path, /path, host:port or [ipv6]:port, bare (SCGI) or after scgi:// or fastcgi://';

/**
 * Parses an upstream address string.
 * @throws InvalidAddressError (`SCGI_ERR_INVALID_ADDRESS`) with the reason.
 */
export function parseAddress(input: string): UpstreamAddress {
  if (typeof input !== 'string' || input.length === 0) {
    throw new InvalidAddressError(JSON.stringify(input), 'expected a non-empty string');
  }
  if (input.includes('\0')) throw new InvalidAddressError(JSON.stringify(input), 'contains a NUL');
  const match = SCHEME.exec(input);
  // `unix://x` is the socket path `//x` in the bare form, not a scheme.
  if (match !== null && match[1]!.toLowerCase() !== 'unix') {
    const scheme = match[1]!.toLowerCase();
    if (scheme !== 'scgi' && scheme !== 'fastcgi') {
      throw new InvalidAddressError(
        input,
        `unsupported scheme ${scheme}://; the forms are ${FORMS}`,
      );
    }
    const rest = input.slice(match[0].length);
    if (rest.length === 0) throw new InvalidAddressError(input, `nothing after ${scheme}://`);
    return Object.freeze({ ...parseBare(rest, input), scheme });
  }
  return Object.freeze({ ...parseBare(input, input), scheme: 'scgi' });
}

type BareAddress =
  | { readonly kind: 'unix'; readonly path: string; readonly label: string }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number; readonly label: string };

/** The address without its scheme; errors name the whole `input`. */
function parseBare(text: string, whole: string): BareAddress {
  const input = text;
  const fail = (reason: string) => new InvalidAddressError(whole, reason);
  if (input.startsWith('unix:')) {
    const path = input.slice(5);
    if (path.length === 0) throw fail('empty socket path');
    return { kind: 'unix', path, label: `unix:${path}` };
  }
  if (input.startsWith('/')) return { kind: 'unix', path: input, label: `unix:${input}` };

  let host: string;
  let portText: string;
  if (input.startsWith('[')) {
    const close = input.indexOf(']');
    if (close === -1 || input[close + 1] !== ':') {
      throw fail('expected [ipv6]:port');
    }
    host = input.slice(1, close);
    portText = input.slice(close + 2);
    if (isIP(host) !== 6) throw fail('not an IPv6 address in brackets');
  } else {
    const colon = input.lastIndexOf(':');
    if (colon <= 0) throw fail(`expected ${FORMS}`);
    host = input.slice(0, colon);
    portText = input.slice(colon + 1);
    if (host.includes(':')) throw fail('an IPv6 host needs brackets: [::1]:port');
  }
  if (!/^[0-9]{1,5}$/.test(portText)) throw fail('port is not a number');
  const port = Number(portText);
  if (port < 1 || port > 65535) throw fail('port out of range 1-65535');
  const label = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  return { kind: 'tcp', host, port, label };
}
