"""Demo WSGI app served over SCGI: by scgi_server.py, uWSGI, flup, or any PEP 3333 server.

The integration tests use it as their backend, so it depends on the standard library only and
on nothing in scgi_server.py (uWSGI loads it with --wsgi-file). Routes (by the first segment of PATH_INFO):

  /                      HTML hello page showing a few CGI variables
  /env, /env/<anything>  JSON of every str value of the environ, plus PATH_INFO_hex and
                         SCRIPT_NAME_hex (the raw latin-1 bytes, hex); reads no body
  /echo                  streams the request body back in 64 KiB pieces while still reading
                         it (full duplex); Content-Type copied from the request
  /sha256                reads the whole body; JSON {"length": n, "sha256": hex}
  /stream?bytes=N&chunk=C&cl=1
                         N bytes where byte i is i % 256, in chunks of C (default 65536);
                         Content-Length only with cl=1. Tests compute the expected bytes with
                         Buffer.from({ length: N }, (_, i) => i & 255)
  /status/NNN            that status; 204 and 304 without a body
  /head                  a page with Content-Length; HEAD gets the same headers, no body
  /redirect              302 with Location: /target
  /cookies               three Set-Cookie headers (one holds a comma, in its Expires date)
  /crash?after=N&cl=1    yields N bytes, then raises; cl=1 announces N + 1000 bytes first.
                         Without `after` it raises before start_response (the server: 500)
  /slow?delay=S          sleeps S seconds (at most 60), then answers
  /headers?n=N&size=S    N custom headers X-Custom-<i> whose values are S bytes long
  /unicode               UTF-8 text
  /internal              headers meant for a front server (X-Sendfile, X-Accel-*,
                         X-Lighttpd-Send-File) with a path on this host, beside X-Custom
"""
import hashlib
import html
import json
import time
from http import HTTPStatus
from urllib.parse import parse_qs

PIECE = 65536
PATTERN = bytes(range(256))
UNICODE_TEXT = 'héllo wörld, ☃, 日本語, 🎉\n'


def _query(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get('QUERY_STRING', '')).items()}


def _int(query, name, default, low=0, high=1 << 40):
    try:
        return max(low, min(high, int(query.get(name, default))))
    except ValueError:
        return default


def _reason(code):
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return 'Unknown'


def _body_pieces(environ):
    """Read wsgi.input up to CONTENT_LENGTH, never past it (flup gives the raw socket)."""
    remaining = int(environ.get('CONTENT_LENGTH') or 0)
    stream = environ['wsgi.input']
    while remaining > 0:
        piece = stream.read(min(PIECE, remaining))
        if not piece:
            return  # the client went away early
        remaining -= len(piece)
        yield piece


def _send(start_response, status, body, content_type='text/plain; charset=utf-8', extra=()):
    start_response(status, [('Content-Type', content_type),
                            ('Content-Length', str(len(body))), *extra])
    return [body]


def index(environ, start_response, query):
    rows = ''.join(f'<tr><th>{k}</th><td>{html.escape(environ.get(k, ""))}</td></tr>'
                   for k in ('REQUEST_METHOD', 'SCRIPT_NAME', 'PATH_INFO', 'QUERY_STRING',
                             'SERVER_PROTOCOL', 'REMOTE_ADDR', 'HTTP_HOST'))
    page = ('<!doctype html><html><head><meta charset="utf-8"><title>Hello over SCGI</title>'
            f'</head><body><h1>Hello from WSGI over SCGI</h1><table>{rows}</table></body></html>\n')
    return _send(start_response, '200 OK', page.encode('utf-8'), 'text/html; charset=utf-8')


def env(environ, start_response, query):
    data = {k: v for k, v in environ.items() if isinstance(v, str)}
    for key in ('PATH_INFO', 'SCRIPT_NAME'):
        data[key + '_hex'] = environ.get(key, '').encode('latin-1').hex()
    body = json.dumps(data, sort_keys=True).encode('ascii')
    return _send(start_response, '200 OK', body, 'application/json')


def echo(environ, start_response, query):
    headers = [('Content-Type', environ.get('CONTENT_TYPE') or 'application/octet-stream')]
    if environ.get('CONTENT_LENGTH'):
        headers.append(('Content-Length', environ['CONTENT_LENGTH']))
    start_response('200 OK', headers)
    return _body_pieces(environ)  # a generator: each piece goes out before the next is read


def sha256(environ, start_response, query):
    digest, length = hashlib.sha256(), 0
    for piece in _body_pieces(environ):
        digest.update(piece)
        length += len(piece)
    body = json.dumps({'length': length, 'sha256': digest.hexdigest()}).encode('ascii')
    return _send(start_response, '200 OK', body, 'application/json')


def stream(environ, start_response, query):
    total = _int(query, 'bytes', 0)
    chunk = _int(query, 'chunk', PIECE, low=1, high=1 << 24)
    headers = [('Content-Type', 'application/octet-stream')]
    if query.get('cl') == '1':
        headers.append(('Content-Length', str(total)))
    start_response('200 OK', headers)
    block = PATTERN * (chunk // 256 + 2)

    def generate():
        sent = 0
        while sent < total:
            size = min(chunk, total - sent)
            yield block[sent % 256:sent % 256 + size]
            sent += size
    return generate()


def status(environ, start_response, query):
    code = _int({'c': environ['PATH_INFO'][len('/status/'):]}, 'c', 0)
    if not 200 <= code <= 999:  # WSGI cannot send 1xx
        return _send(start_response, '400 Bad Request', b'bad status\n')
    line = f'{code} {_reason(code)}'
    if code in (204, 304):
        start_response(line, [])
        return []
    return _send(start_response, line, f'status {code}\n'.encode('ascii'))


def head(environ, start_response, query):
    body = b'<!doctype html><title>head</title><p>GET and HEAD both see this length.</p>\n'
    start_response('200 OK', [('Content-Type', 'text/html'), ('Content-Length', str(len(body)))])
    return [] if environ.get('REQUEST_METHOD') == 'HEAD' else [body]


def redirect(environ, start_response, query):
    return _send(start_response, '302 Found', b'see /target\n', extra=[('Location', '/target')])


def target(environ, start_response, query):
    return _send(start_response, '200 OK', b'target\n')


def cookies(environ, start_response, query):
    return _send(start_response, '200 OK', b'three cookies\n', extra=[
        ('Set-Cookie', 'a=1; Path=/'),
        ('Set-Cookie', 'b=2; Path=/; HttpOnly'),
        ('Set-Cookie', 'c=3; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Path=/'),
    ])


def crash(environ, start_response, query):
    if 'after' not in query:
        raise RuntimeError('crash before start_response')
    after = _int(query, 'after', 0)
    headers = [('Content-Type', 'application/octet-stream')]
    if query.get('cl') == '1':
        headers.append(('Content-Length', str(after + 1000)))
    start_response('200 OK', headers)

    def generate():
        if after:
            yield PATTERN * (after // 256) + PATTERN[:after % 256]
        raise RuntimeError(f'crash after {after} bytes')
    return generate()


def slow(environ, start_response, query):
    try:
        delay = max(0.0, min(60.0, float(query.get('delay', '1'))))
    except ValueError:
        delay = 1.0
    time.sleep(delay)
    return _send(start_response, '200 OK', f'slept {delay}\n'.encode('ascii'))


def many_headers(environ, start_response, query):
    n, size = _int(query, 'n', 50, high=10000), _int(query, 'size', 16, high=1 << 20)
    extra = [(f'X-Custom-{i}', (f'{i}-' + 'v' * size)[:size]) for i in range(n)]
    return _send(start_response, '200 OK', f'{n} headers\n'.encode('ascii'), extra=extra)


def internal(environ, start_response, query):
    return _send(start_response, '200 OK', b'internal headers\n', extra=[
        ('X-Sendfile', '/srv/private/report.pdf'),
        ('X-Lighttpd-Send-File', '/srv/private/report.pdf'),
        ('X-Accel-Buffering', 'no'),
        ('X-Accel-Expires', '0'),
        ('X-Custom', 'kept'),
    ])


def unicode(environ, start_response, query):
    return _send(start_response, '200 OK', UNICODE_TEXT.encode('utf-8'))


ROUTES = {'/': index, '/env': env, '/echo': echo, '/sha256': sha256, '/stream': stream,
          '/head': head, '/redirect': redirect, '/target': target, '/cookies': cookies,
          '/crash': crash, '/status': status, '/slow': slow, '/headers': many_headers, '/unicode': unicode,
          '/internal': internal}


def application(environ, start_response):
    # The first path segment picks the route, so tests may append any bytes: /env/%E9
    route = ROUTES.get('/' + environ.get('PATH_INFO', '').lstrip('/').split('/')[0])
    query = _query(environ)
    if route is None:
        return _send(start_response, '404 Not Found', b'not found\n')
    return route(environ, start_response, query)
