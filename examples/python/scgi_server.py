#!/usr/bin/env python3
"""A small threaded SCGI server for WSGI apps, standard library only (flup-style).

    python3 scgi_server.py --socket unix:/tmp/app.sock [--threads 16] [--app app:application]
    python3 scgi_server.py --socket 127.0.0.1:9000       (port 0: the kernel picks one)

or from Python:  from scgi_server import serve; serve(application, 'unix:/tmp/app.sock')

Protocol (https://python.ca/scgi/protocol.txt): the client sends a netstring
"<len>:<NAME>\\0<value>\\0...," whose first pair is CONTENT_LENGTH and which holds SCGI=1,
then exactly CONTENT_LENGTH body bytes; the server answers with a CGI response
("Status: 200 OK", headers, blank line, body) and closes the connection.

wsgiref's SimpleHandler with origin_server=False already writes the CGI "Status:" form,
streams each chunk as the app yields it, honours the write() callable, calls close() on the
iterable and answers 500 when the app fails before the headers went out; we build on it.
"""
import argparse
import importlib
import os
import signal
import socket
import socketserver
import stat
import sys
import threading
import time
from urllib.parse import unquote_to_bytes
from wsgiref.handlers import SimpleHandler, guess_scheme

IO_TIMEOUT = 60.0  # seconds a read or write on a connection may stall
DRAIN_SECONDS = 5.0  # how long we keep reading an unread request body before closing


class BadRequest(Exception):
    """A malformed SCGI head: we log it and close without answering (as flup does)."""


def read_head(rfile, max_head):
    """Read the header netstring; return its payload, or None if the peer sent nothing."""
    digits = b''
    while True:
        c = rfile.read(1)
        if not c:
            if digits:
                raise BadRequest('connection closed inside the length prefix')
            return None
        if c == b':':
            break
        if not b'0' <= c <= b'9':
            raise BadRequest(f'bad byte {c!r} in the netstring length')
        digits += c
        if len(digits) > len(str(max_head)):
            raise BadRequest('netstring length prefix too long')
    if not digits or (digits[0:1] == b'0' and len(digits) > 1):
        raise BadRequest('empty netstring length or leading zero')  # netstring spec (djb)
    length = int(digits)
    if length > max_head:
        raise BadRequest(f'header of {length} bytes exceeds --max-head {max_head}')
    block = rfile.read(length)
    if len(block) < length:
        raise BadRequest('connection closed inside the header')
    if rfile.read(1) != b',':
        raise BadRequest('netstring without its trailing comma')
    return block


def parse_head(block):
    """NUL-terminated name/value pairs -> dict of latin-1 str (PEP 3333 "native strings")."""
    if not block.endswith(b'\0'):
        raise BadRequest('header does not end with NUL')
    items = block[:-1].split(b'\0')
    if len(items) % 2:
        raise BadRequest('header holds an odd number of strings')
    if items[0] != b'CONTENT_LENGTH':
        raise BadRequest('CONTENT_LENGTH is not the first header')
    env = {}
    for name, value in zip(items[0::2], items[1::2]):
        key = name.decode('latin-1')
        if not key or key in env:
            raise BadRequest(f'empty or duplicate header name {key!r}')
        env[key] = value.decode('latin-1')
    length = env['CONTENT_LENGTH']
    # str.isdigit() alone would accept '²' (0xB2 in latin-1).
    if not (length.isascii() and length.isdigit()):
        raise BadRequest(f'bad CONTENT_LENGTH {length!r}')
    if env.get('SCGI') != '1':
        raise BadRequest('SCGI=1 missing')
    return env


def complete_environ(env):
    """Fill the CGI variables a front server may leave out (nginx sends no PATH_INFO by default).

    Like flup we fall back to the request path; we prefer DOCUMENT_URI, which nginx has already
    percent-decoded and cleaned of dot-segments, over decoding REQUEST_URI ourselves.
    """
    path, _, query = env.get('REQUEST_URI', '').partition('?')
    env.setdefault('QUERY_STRING', query)
    script_name = env.setdefault('SCRIPT_NAME', '')
    if 'PATH_INFO' not in env:
        path = env.get('DOCUMENT_URI') or unquote_to_bytes(path).decode('latin-1')
        if script_name and path.startswith(script_name):
            path = path[len(script_name):]
        env['PATH_INFO'] = path
    return env


class LimitedInput:
    """wsgi.input: yields at most CONTENT_LENGTH bytes and never reads past them.

    flup hands the app the raw socket, so read() without a size blocks forever; here read()
    returns the rest of the body and then b'', as PEP 3333 readers expect.
    """

    def __init__(self, rfile, length):
        self._rfile, self.remaining = rfile, length

    def _clamp(self, size):
        return self.remaining if size is None or size < 0 else min(size, self.remaining)

    def read(self, size=-1):
        size = self._clamp(size)
        data = self._rfile.read(size) if size else b''
        self.remaining = self.remaining - len(data) if len(data) == size else 0  # short = EOF
        return data

    def readline(self, size=-1):
        size = self._clamp(size)
        line = self._rfile.readline(size) if size else b''
        self.remaining = self.remaining - len(line) if line else 0
        return line

    def readlines(self, hint=-1):
        return list(self)  # PEP 3333 lets servers ignore the hint

    def __iter__(self):
        return iter(self.readline, b'')


class SocketWriter:
    """Unbuffered output: every chunk the app yields goes to the socket at once."""

    def __init__(self, sock):
        self.write, self.flush = sock.sendall, lambda: None


class CGIHandler(SimpleHandler):
    origin_server = False  # "Status: 200 OK" instead of an HTTP status line, no Date/Server
    os_environ = {}  # BaseHandler would copy this process's os.environ into every request

    def finish_content(self):
        # wsgiref adds "Content-Length: 0" to an empty response; RFC 9110 8.6 forbids it on 204.
        if not self.headers_sent and self.status[:3] in ('204', '304'):
            self.send_headers()
        else:
            super().finish_content()

    def get_scheme(self):
        if self.environ.get('REQUEST_SCHEME', '').lower() == 'https':
            return 'https'
        return guess_scheme(self.environ)  # looks at HTTPS=on/1/yes


class SCGIRequestHandler(socketserver.BaseRequestHandler):
    def handle(self):
        conn, server = self.request, self.server
        conn.settimeout(IO_TIMEOUT)
        rfile = conn.makefile('rb')
        try:
            block = read_head(rfile, server.max_head)
            if block is None:
                return  # connected and closed: a health check, not an error
            env = complete_environ(parse_head(block))
        except (BadRequest, OSError) as exc:
            print(f'scgi: closing connection from {self.client_address or "unix"}: {exc}',
                  file=sys.stderr, flush=True)
            return
        body = LimitedInput(rfile, int(env['CONTENT_LENGTH']))
        handler = CGIHandler(body, SocketWriter(conn), sys.stderr, env, True, False)
        handler.run(server.app)  # logs app errors; answers 500 if the head was not yet sent
        self._drain(conn, body)

    @staticmethod
    def _drain(conn, body):
        """Send FIN, then read what the app left of the body (at most DRAIN_SECONDS) and close.

        Closing a socket with unread input makes Linux send RST, which can destroy the response
        still in flight to the client (nginx's lingering_close exists for the same reason).
        """
        deadline = time.monotonic() + DRAIN_SECONDS
        try:
            conn.shutdown(socket.SHUT_WR)  # the response is complete: tell the client now
            while body.remaining and time.monotonic() < deadline:
                conn.settimeout(max(0.01, deadline - time.monotonic()))
                if not body.read(65536):
                    break
        except OSError:
            pass


class _Server(socketserver.ThreadingMixIn):
    daemon_threads = True  # a stuck request must not keep the process alive after SIGTERM
    block_on_close = False
    request_queue_size = 128  # listen() backlog; socketserver's default of 5 refuses bursts

    def setup(self, app, threads, max_head):
        self.app, self.max_head, self.threads = app, max_head, threads
        self._slots = threading.BoundedSemaphore(threads)

    def process_request(self, request, client_address):
        # At most `threads` requests run at once; further connections wait in the backlog.
        self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class UnixSCGIServer(_Server, socketserver.UnixStreamServer):
    pass


class TCPSCGIServer(_Server, socketserver.TCPServer):
    allow_reuse_address = True


def make_server(app, address, threads=16, max_head=65536, mode=0o660,
                handler=SCGIRequestHandler):
    """Bind 'unix:/path' or 'host:port' (port 0 picks a free one) and return the server.

    `handler` serves each connection (fastcgi_server.py passes its FastCGI one).
    """
    if address.startswith('unix:'):
        path = os.path.abspath(address[5:])
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)  # stale socket of an earlier run; never delete a regular file
        except FileNotFoundError:
            pass
        server = UnixSCGIServer(path, handler)
        os.chmod(path, mode)
        server.display, server.unix_path = f'unix:{path}', path
    else:
        host, _, port = address.rpartition(':')  # IPv4 only, to keep this short
        server = TCPSCGIServer((host or '127.0.0.1', int(port)), handler)
        server.display, server.unix_path = '%s:%d' % server.server_address, None
    server.setup(app, threads, max_head)
    return server


def serve(app, address, threads=16, max_head=65536, mode=0o660, handler=SCGIRequestHandler):
    """Serve until SIGTERM or SIGINT, then close the listener, remove the socket, return."""

    server = None

    def stop(signum, frame):
        if server is None:
            raise SystemExit(0)  # still starting: nothing to close yet
        # Ask serve_forever() to return, from another thread: shutdown() waits for the loop, so
        # it cannot run in the loop's own thread. Raising from the handler instead would land
        # at any bytecode, e.g. inside process_request() while a request thread starts, and
        # leave the server's bookkeeping (and its exit) broken.
        threading.Thread(target=server.shutdown, daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    server = make_server(app, address, threads, max_head, mode, handler)
    print(f'listening on {server.display}', flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        if server.unix_path:
            try:
                os.unlink(server.unix_path)
            except FileNotFoundError:
                pass


def main(argv=None):
    parser = argparse.ArgumentParser(description='Threaded SCGI server for a WSGI app.')
    parser.add_argument('--socket', required=True, help='unix:/path/app.sock or host:port')
    parser.add_argument('--threads', type=int, default=16, help='concurrent requests (16)')
    parser.add_argument('--app', default='app:application', help='module:callable')
    parser.add_argument('--max-head', type=int, default=65536, help='header bytes (65536)')
    parser.add_argument('--chmod', type=lambda s: int(s, 8), default=0o660,
                        help='mode of the Unix socket, octal (660)')
    args = parser.parse_args(argv)
    if args.threads < 1 or args.max_head < 1:
        parser.error('--threads and --max-head must be positive')
    sys.path[:0] = [os.getcwd(), os.path.dirname(os.path.abspath(__file__))]  # find --app
    module, _, name = args.app.partition(':')
    app = getattr(importlib.import_module(module), name or 'application')
    serve(app, args.socket, args.threads, args.max_head, args.chmod)
    return 0


if __name__ == '__main__':
    sys.exit(main())
