/**
 * Hop-by-hop header fields: they describe one connection, not the message, so a proxy never
 * forwards them (RFC 9110 §7.6.1). Shared by the request side (client -> SCGI environment) and
 * the response side (CGI head -> client).
 */

/**
 * Lower-case names that are always hop-by-hop: `Connection` and the fields RFC 9110 §7.6.1 names
 * (`Proxy-Connection`, `Keep-Alive`, `TE`, `Transfer-Encoding`, `Upgrade`), plus `Trailer`, which
 * only has meaning for the chunked framing of one connection (RFC 9112 §7.1.2). Names listed in
 * a `Connection` value are hop-by-hop too; see {@link connectionOptions}.
 */
export const HOP_BY_HOP_HEADERS: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

const OWS_EDGES = /^[ \t]+|[ \t]+$/g;

/**
 * The connection options of a `Connection` field value (RFC 9110 §7.6.1: `#connection-option`):
 * lower-cased, optional whitespace trimmed, empty list elements skipped. A proxy drops every
 * header these name, along with `Connection` itself.
 *
 * @example connectionOptions('close, X-Trace ,') // ['close', 'x-trace']
 */
export function connectionOptions(value: string): string[] {
  const out: string[] = [];
  for (const part of value.split(',')) {
    // Only OWS (SP / HTAB) is trimmed: `String#trim` would also eat obs-text such as U+00A0.
    const name = part.replace(OWS_EDGES, '').toLowerCase();
    if (name !== '') out.push(name);
  }
  return out;
}
