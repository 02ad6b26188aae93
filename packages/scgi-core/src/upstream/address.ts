/**
 * Upstream address parsing. The forms follow nginx `scgi_pass` and common SCGI server flags:
 * `unix:/run/app.sock`, `/run/app.sock` (an absolute path), `host:port`, `[::1]:port`.
 */
import { isIP } from 'node:net';
import { InvalidAddressError } from '../errors.js';

/** A parsed upstream address. `label` is the canonical text form, used in logs (never in responses). */
export type UpstreamAddress =
  | { readonly kind: 'unix'; readonly path: string; readonly label: string }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number; readonly label: string };

/**
 * Parses an upstream address string.
 * @throws InvalidAddressError (`SCGI_ERR_INVALID_ADDRESS`) with the reason.
 */
export function parseAddress(input: string): UpstreamAddress {
  if (typeof input !== 'string' || input.length === 0) {
    throw new InvalidAddressError(JSON.stringify(input), 'expected a non-empty string');
  }
  if (input.includes('\0')) throw new InvalidAddressError(JSON.stringify(input), 'contains a NUL');
  if (input.startsWith('unix:')) {
    const path = input.slice(5);
    if (path.length === 0) throw new InvalidAddressError(input, 'empty socket path');
    return Object.freeze({ kind: 'unix', path, label: `unix:${path}` });
  }
  if (input.startsWith('/'))
    return Object.freeze({ kind: 'unix', path: input, label: `unix:${input}` });

  let host: string;
  let portText: string;
  if (input.startsWith('[')) {
    const close = input.indexOf(']');
    if (close === -1 || input[close + 1] !== ':') {
      throw new InvalidAddressError(input, 'expected [ipv6]:port');
    }
    host = input.slice(1, close);
    portText = input.slice(close + 2);
    if (isIP(host) !== 6) throw new InvalidAddressError(input, 'not an IPv6 address in brackets');
  } else {
    const colon = input.lastIndexOf(':');
    if (colon <= 0)
      throw new InvalidAddressError(input, 'expected unix:/path, /path, host:port or [ipv6]:port');
    host = input.slice(0, colon);
    portText = input.slice(colon + 1);
    if (host.includes(':'))
      throw new InvalidAddressError(input, 'an IPv6 host needs brackets: [::1]:port');
  }
  if (!/^[0-9]{1,5}$/.test(portText)) throw new InvalidAddressError(input, 'port is not a number');
  const port = Number(portText);
  if (port < 1 || port > 65535) throw new InvalidAddressError(input, 'port out of range 1-65535');
  const label = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  return Object.freeze({ kind: 'tcp', host, port, label });
}
