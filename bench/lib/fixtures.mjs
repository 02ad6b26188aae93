/**
 * Inputs of `core.mjs`: one browser page view, as a GET through a proxy mounted at `/app`.
 * The same request appears as a CGI environment (encoder input), as a Node request object
 * (buildCgiEnv input), and its answer as a CGI response head (parser input).
 */

const UA =
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) ' +
  'Chrome/124.0.0.0 Safari/537.36';
const ACCEPT =
  'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,' +
  '*/*;q=0.8,application/signed-exchange;v=b3;q=0.7';
// ~200 bytes: a session, a CSRF token, analytics and a preference, as a typical shop sends.
const COOKIE =
  'sessionid=k2v9x7mq4t8b1n6c3z5w0pj8r2d4f6h9; csrftoken=Xq8vN2mK5tR7wY3zB6cD9fG1hJ4kL0pS; ' +
  '_ga=GA1.1.1234567890.1700000000; _ga_7QK2M9ZC1F=GS1.1.1700000000.3.1.1700000500.0.0.0; ' +
  'theme=dark; lang=en';
const QUERY = 'q=wireless+headphones&sort=price_asc&page=2&category=audio';
const REFERER = 'https://shop.example.com/app/products?category=audio';

/** The CGI environment of the request, in the order buildCgiEnv emits it (~25 pairs, ~1 KB). */
export const env = [
  ['CONTENT_LENGTH', '0'],
  ['SCGI', '1'],
  ['REQUEST_METHOD', 'GET'],
  ['REQUEST_URI', `/app/products/search?${QUERY}`],
  ['QUERY_STRING', QUERY],
  ['CONTENT_TYPE', ''],
  ['DOCUMENT_URI', '/app/products/search'],
  ['SCRIPT_NAME', '/app'],
  // A Buffer, as buildCgiEnv gives it: percent-decoded bytes need not be UTF-8.
  ['PATH_INFO', Buffer.from('/products/search')],
  ['SERVER_PROTOCOL', 'HTTP/1.1'],
  ['REQUEST_SCHEME', 'http'],
  ['REMOTE_ADDR', '203.0.113.42'],
  ['REMOTE_PORT', '51874'],
  ['SERVER_ADDR', '10.0.0.5'],
  ['SERVER_NAME', 'shop.example.com'],
  ['SERVER_PORT', '8080'],
  ['SERVER_SOFTWARE', 'scgi-core'],
  ['GATEWAY_INTERFACE', 'CGI/1.1'],
  ['HTTP_HOST', 'shop.example.com'],
  ['HTTP_USER_AGENT', UA],
  ['HTTP_ACCEPT', ACCEPT],
  ['HTTP_ACCEPT_LANGUAGE', 'en-US,en;q=0.9,fr;q=0.8'],
  ['HTTP_ACCEPT_ENCODING', 'gzip, deflate, br, zstd'],
  ['HTTP_COOKIE', COOKIE],
  ['HTTP_REFERER', REFERER],
];

/** A response head as a Django/Flask backend sends it: CGI `Status:`, 3 cookies, CRLF. */
export const responseHead = Buffer.from(
  [
    'Status: 200 OK',
    'Content-Type: text/html; charset=utf-8',
    'Content-Length: 48213',
    'Cache-Control: private, no-cache, no-store, must-revalidate, max-age=0',
    'Date: Tue, 14 May 2024 09:21:37 GMT',
    'ETag: "5f3a9c1e-bc55-4d2a-9f1b-7e6c2a1d8b40"',
    'Vary: Cookie, Accept-Encoding, Accept-Language',
    'X-Frame-Options: DENY',
    'X-Content-Type-Options: nosniff',
    'Referrer-Policy: same-origin',
    'Set-Cookie: csrftoken=Xq8vN2mK5tR7wY3zB6cD9fG1hJ4kL0pS; expires=Tue, 13 May 2025 09:21:37 GMT; Max-Age=31449600; Path=/; SameSite=Lax',
    'Set-Cookie: sessionid=k2v9x7mq4t8b1n6c3z5w0pj8r2d4f6h9; expires=Tue, 28 May 2024 09:21:37 GMT; HttpOnly; Max-Age=1209600; Path=/; SameSite=Lax',
    'Set-Cookie: recently_viewed=8812,7731,9024; Path=/app/products; Max-Age=2592000; SameSite=Lax',
    '',
    '',
  ].join('\r\n'),
  'latin1',
);

/** `buf` in 3 parts cut at its thirds, i.e. mid-line, as a slow backend's writes may arrive. */
export function splitInThree(buf) {
  const a = Math.floor(buf.length / 3);
  const b = Math.floor((buf.length * 2) / 3);
  return [buf.subarray(0, a), buf.subarray(a, b), buf.subarray(b)];
}

/**
 * The request as Node's HTTP/1 server hands it over, holding every field buildCgiEnv reads:
 * method, url, httpVersion, rawHeaders, socket addresses (and `headers`, read by proxy-addr when
 * trustProxy is set). A server listening on `::` sees IPv4 peers as `::ffff:` addresses.
 */
export function makeRequest() {
  // Chrome's navigation headers, in its order; Connection is hop-by-hop and is dropped.
  const fields = [
    ['Host', 'shop.example.com'],
    ['Connection', 'keep-alive'],
    ['Upgrade-Insecure-Requests', '1'],
    ['User-Agent', UA],
    ['Accept', ACCEPT],
    ['Sec-Fetch-Site', 'same-origin'],
    ['Sec-Fetch-Mode', 'navigate'],
    ['Sec-Fetch-Dest', 'document'],
    ['Referer', REFERER],
    ['Accept-Encoding', 'gzip, deflate, br, zstd'],
    ['Accept-Language', 'en-US,en;q=0.9,fr;q=0.8'],
    ['Cookie', COOKIE],
  ];
  const rawHeaders = fields.flat();
  const headers = Object.fromEntries(fields.map(([name, value]) => [name.toLowerCase(), value]));
  return {
    method: 'GET',
    url: `/app/products/search?${QUERY}`,
    httpVersion: '1.1',
    httpVersionMajor: 1,
    httpVersionMinor: 1,
    headers,
    rawHeaders,
    socket: {
      remoteAddress: '::ffff:203.0.113.42',
      remotePort: 51874,
      localAddress: '::ffff:10.0.0.5',
      localPort: 8080,
      // net.Socket has no `encrypted`; only a TLSSocket sets it to true.
      encrypted: undefined,
    },
  };
}
