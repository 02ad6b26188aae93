#!/usr/bin/env python3
"""The suite's WSGI app over HTTP/1.1 with keep-alive, standard library only.

    python3 wsgi_http_server.py [--app app:application] [--port 0]

The peer of examples/python/fastcgi_server.py for @fastify/reply-from: the same app in the same
kind of server (one process, one thread per connection, wsgiref running the app), so that
"fastify-scgi over FastCGI against reply-from on the same Python app" compares the proxies and
their protocols, not two app servers. wsgiref's own simple_server answers HTTP/1.0 and closes
after every request; reply-from's undici keeps connections alive, so this loops over the
requests of a connection (http.server's HTTP/1.1 handling) and bounds wsgi.input by
Content-Length. Prints `listening on 127.0.0.1:PORT` once bound.
"""
import argparse
import importlib
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote
from wsgiref.handlers import SimpleHandler


class Input:
    """wsgi.input: at most `length` bytes of the request body, then EOF (the next request follows)."""

    def __init__(self, rfile, length):
        self.rfile, self.left = rfile, length

    def read(self, size=-1):
        if self.left <= 0:
            return b''
        n = self.left if size is None or size < 0 else min(size, self.left)
        data = self.rfile.read(n)
        self.left = 0 if not data else self.left - len(data)
        return data

    def readline(self, size=-1):
        if self.left <= 0:
            return b''
        n = self.left if size is None or size < 0 else min(size, self.left)
        data = self.rfile.readline(n)
        self.left = 0 if not data else self.left - len(data)
        return data


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    # Buffered writes flushed once per response (http.server flushes after each request), and no
    # Nagle: status line, headers and body must not wait for a delayed ACK between them.
    wbufsize = -1
    disable_nagle_algorithm = True

    def run_app(self):
        path, _, query = self.path.partition('?')
        length = int(self.headers.get('Content-Length') or 0)
        host, port = self.server.server_address[:2]
        environ = {
            'REQUEST_METHOD': self.command,
            'SCRIPT_NAME': '',
            'PATH_INFO': unquote(path, 'latin-1'),
            'QUERY_STRING': query,
            'CONTENT_TYPE': self.headers.get('Content-Type', ''),
            'CONTENT_LENGTH': str(length),
            'SERVER_NAME': host,
            'SERVER_PORT': str(port),
            'SERVER_PROTOCOL': self.request_version,
            'REMOTE_ADDR': self.client_address[0],
        }
        for name, value in self.headers.items():
            key = 'HTTP_' + name.upper().replace('-', '_')
            if key not in ('HTTP_CONTENT_TYPE', 'HTTP_CONTENT_LENGTH'):
                environ[key] = environ[key] + ',' + value if key in environ else value
        body = Input(self.rfile, length)
        handler = SimpleHandler(body, self.wfile, sys.stderr, environ, multithread=True,
                                multiprocess=False)
        handler.origin_server = True
        handler.http_version = '1.1'
        handler.server_software = 'wsgi_http_server'
        handler.run(self.server.app)
        while body.read(262144):  # what the app left unread: the next request starts after it
            pass

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = run_app

    def log_message(self, format, *args):
        pass


class Server(ThreadingHTTPServer):
    request_queue_size = 1024  # listen() backlog; socketserver's default of 5 refuses bursts


def main(argv=None):
    parser = argparse.ArgumentParser(description='Threaded HTTP/1.1 server for a WSGI app.')
    parser.add_argument('--app', default='app:application', help='module:callable')
    parser.add_argument('--port', type=int, default=0, help='TCP port on 127.0.0.1 (0: any)')
    args = parser.parse_args(argv)
    sys.path[:0] = [os.getcwd()]  # find --app
    module, _, name = args.app.partition(':')
    server = Server(('127.0.0.1', args.port), Handler)
    server.app = getattr(importlib.import_module(module), name or 'application')
    print('listening on %s:%d' % server.server_address[:2], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
