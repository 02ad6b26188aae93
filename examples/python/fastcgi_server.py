#!/usr/bin/env python3
"""A small threaded FastCGI server for WSGI apps, standard library only (flup-style).

    python3 fastcgi_server.py --socket unix:/tmp/app.sock [--threads 16] [--app app:application]
    python3 fastcgi_server.py --socket 127.0.0.1:9000       (port 0: the kernel picks one)

or from Python:  from fastcgi_server import serve; serve(application, 'unix:/tmp/app.sock')

Protocol: the FastCGI Specification 1.0 (fastcgi-archives), role RESPONDER. Each record has an
8-byte header (version 1, type, request id, content length, padding length); a request is
BEGIN_REQUEST, the PARAMS stream (name-value pairs) and the STDIN stream, each stream ended by
an empty record; the answer is the CGI response in STDOUT records, the empty STDOUT record and
END_REQUEST. With FCGI_KEEP_CONN the connection then carries the next request; without it we
close. One request per connection at a time (FCGI_MPXS_CONNS=0, as flup and PHP-FPM): a second
BEGIN_REQUEST meanwhile gets END_REQUEST CANT_MPX_CONN.

The WSGI side is scgi_server.py's: CGIHandler (wsgiref) runs the app, complete_environ fills
PATH_INFO and friends, and the threaded server classes are shared; only the framing differs.
"""
import argparse
import importlib
import os
import socket
import socketserver
import struct
import sys
import time

from scgi_server import IO_TIMEOUT, DRAIN_SECONDS, CGIHandler, complete_environ, serve

VERSION = 1
BEGIN_REQUEST, ABORT_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT, STDERR, DATA = range(1, 9)
GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE = 9, 10, 11
RESPONDER, KEEP_CONN = 1, 1
REQUEST_COMPLETE, CANT_MPX_CONN, OVERLOADED, UNKNOWN_ROLE = 0, 1, 2, 3
MAX_CONTENT = 0xFFFF
HEADER = struct.Struct('!BBHHBx')


class BadRequest(Exception):
    """A malformed record stream: we log it and close the connection (nothing to answer)."""


def record(rtype, request_id, content=b''):
    """One record, padded to a multiple of 8 bytes as the spec recommends (and nginx does)."""
    padding = -len(content) & 7
    return HEADER.pack(VERSION, rtype, request_id, len(content), padding) + content + b'\0' * padding


def stream_records(rtype, request_id, data):
    """`data` as records of at most 65535 content bytes (no end-of-stream record)."""
    return b''.join(record(rtype, request_id, data[i:i + MAX_CONTENT])
                    for i in range(0, len(data), MAX_CONTENT))


def end_request(request_id, app_status, protocol_status):
    return record(END_REQUEST, request_id, struct.pack('!IB3x', app_status, protocol_status))


def encode_pairs(pairs):
    out = bytearray()
    for name, value in pairs:
        for n in (len(name), len(value)):
            out += bytes([n]) if n < 128 else struct.pack('!I', n | 0x80000000)
        out += name + value
    return bytes(out)


def decode_pairs(data, max_length):
    """Name-value pairs (1-byte lengths below 128, else 4 bytes with the high bit) -> list."""
    pairs, i, end = [], 0, len(data)

    def length():
        nonlocal i
        if i >= end:
            raise BadRequest('name-value length missing')
        if data[i] < 128:
            i += 1
            return data[i - 1]
        if i + 4 > end:
            raise BadRequest('name-value length cut off')
        n = struct.unpack_from('!I', data, i)[0] & 0x7FFFFFFF
        i += 4
        if n > max_length:
            raise BadRequest(f'name or value of {n} bytes is over the limit')
        return n

    while i < end:
        name_len, value_len = length(), length()
        if i + name_len + value_len > end:
            raise BadRequest('name-value pair runs past the end of the stream')
        pairs.append((data[i:i + name_len], data[i + name_len:i + name_len + value_len]))
        i += name_len + value_len
    return pairs


class Aborted(Exception):
    """The web server sent ABORT_REQUEST for the running request."""


class Connection:
    """The record stream of one connection: reads records, answers the ones that need no app."""

    def __init__(self, sock, server):
        self.sock, self.server = sock, server
        self.rfile = sock.makefile('rb')
        self.request_id = 0  # the active request, 0 when idle
        self.aborted = False

    def read_record(self):
        """(type, request id, content), or None at EOF between records."""
        header = self.rfile.read(HEADER.size)
        if not header:
            return None
        if len(header) < HEADER.size:
            raise BadRequest('connection closed inside a record header')
        version, rtype, request_id, length, padding = HEADER.unpack(header)
        if version != VERSION:
            raise BadRequest(f'record version {version}')
        content = self.rfile.read(length + padding)
        if len(content) < length + padding:
            raise BadRequest('connection closed inside a record')
        return rtype, request_id, content[:length]

    def next_for(self, request_id):
        """The next record of `request_id`; records that concern others are dealt with here."""
        while True:
            rec = self.read_record()
            if rec is None:
                raise BadRequest('connection closed in the middle of a request')
            rtype, rid, content = rec
            if rid == 0:
                self.management(rtype, content)
            elif rtype == BEGIN_REQUEST and rid != request_id:
                self.sock.sendall(end_request(rid, 0, CANT_MPX_CONN))
            elif rid != request_id:
                continue  # spec 3.3: records of a request id not in use are ignored
            elif rtype == ABORT_REQUEST:
                raise Aborted()
            elif rtype == BEGIN_REQUEST:
                raise BadRequest(f'BEGIN_REQUEST for the active request {rid}')
            else:
                return rtype, content

    def management(self, rtype, content):
        if rtype == GET_VALUES:
            threads = str(self.server.threads).encode()
            known = {b'FCGI_MAX_CONNS': threads, b'FCGI_MAX_REQS': threads, b'FCGI_MPXS_CONNS': b'0'}
            names = [n for n, _ in decode_pairs(content, MAX_CONTENT)]
            answer = encode_pairs([(n, known[n]) for n in names if n in known])
            self.sock.sendall(record(GET_VALUES_RESULT, 0, answer))
        else:
            self.sock.sendall(record(UNKNOWN_TYPE, 0, bytes([rtype]) + b'\0' * 7))

    def read_params(self, request_id):
        data, limit = bytearray(), self.server.max_head
        while True:
            rtype, content = self.next_for(request_id)
            if rtype != PARAMS:
                raise BadRequest(f'record type {rtype} before the end of PARAMS')
            if not content:
                break
            data += content
            if len(data) > limit:
                raise BadRequest(f'PARAMS over --max-params {limit}')
        return {n.decode('latin-1'): v.decode('latin-1') for n, v in decode_pairs(bytes(data), limit)}


class StdinInput:
    """wsgi.input: the STDIN stream, read from the socket as the app asks for it."""

    def __init__(self, conn, request_id):
        self.conn, self.request_id = conn, request_id
        self.buffer, self.done = bytearray(), False

    def _fill(self):
        """Reads one more STDIN record into the buffer; False at the end of the stream."""
        while not self.done:
            try:
                rtype, content = self.conn.next_for(self.request_id)
            except Aborted:
                self.conn.aborted = self.done = True
                return False
            if rtype == STDIN:
                if not content:
                    self.done = True
                    return False
                self.buffer += content
                return True
            if rtype != DATA:  # DATA belongs to the FILTER role: a responder skips it
                raise BadRequest(f'record type {rtype} inside STDIN')
        return False

    def _take(self, n):
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def read(self, size=-1):
        if size is None or size < 0:
            while self._fill():
                pass
            return self._take(len(self.buffer))
        while len(self.buffer) < size and self._fill():
            pass
        return self._take(size)

    def readline(self, size=-1):
        while True:
            nl = self.buffer.find(b'\n')
            if nl >= 0 or (0 <= size <= len(self.buffer)) or not self._fill():
                break
        end = nl + 1 if nl >= 0 else len(self.buffer)
        return self._take(end if size is None or size < 0 else min(end, size))

    def readlines(self, hint=-1):
        return list(self)

    def __iter__(self):
        return iter(self.readline, b'')

    def drain(self):
        """Reads the rest of the stream, so the next request starts at a record boundary."""
        while self._fill():
            self.buffer.clear()


class RecordWriter:
    """wsgiref's stdout/stderr: every chunk goes out at once as STDOUT (or STDERR) records."""

    def __init__(self, conn, request_id, rtype):
        self.conn, self.request_id, self.rtype = conn, request_id, rtype

    def write(self, data):
        if isinstance(data, str):
            data = data.encode('utf-8', 'replace')
        if data and not self.conn.aborted:
            self.conn.sock.sendall(stream_records(self.rtype, self.request_id, data))

    def flush(self):
        pass


class FCGIRequestHandler(socketserver.BaseRequestHandler):
    """Serves the requests of one connection, one after another (FCGI_KEEP_CONN)."""

    def handle(self):
        sock = self.request
        sock.settimeout(IO_TIMEOUT)  # also bounds an idle KEEP_CONN connection
        conn = Connection(sock, self.server)
        try:
            while True:
                rec = conn.read_record()
                if rec is None:
                    return  # the web server closed between requests
                rtype, rid, content = rec
                if rid == 0:
                    conn.management(rtype, content)
                    continue
                if rtype != BEGIN_REQUEST:
                    continue  # a request id not in use (e.g. after an abort): ignored
                if len(content) != 8:
                    raise BadRequest('BEGIN_REQUEST body is not 8 bytes')
                role, flags = struct.unpack_from('!HB', content)
                keep = bool(flags & KEEP_CONN)
                if role != RESPONDER:
                    sock.sendall(end_request(rid, 0, UNKNOWN_ROLE))
                else:
                    self.respond(conn, rid)
                if not keep:
                    self._close(sock, conn)
                    return
        except (BadRequest, OSError) as exc:
            print(f'fastcgi: closing connection from {self.client_address or "unix"}: {exc}',
                  file=sys.stderr, flush=True)

    def respond(self, conn, rid):
        conn.aborted = False
        try:
            env = complete_environ(conn.read_params(rid))
        except Aborted:
            conn.sock.sendall(end_request(rid, 1, REQUEST_COMPLETE))
            return
        body = StdinInput(conn, rid)
        handler = CGIHandler(body, RecordWriter(conn, rid, STDOUT), RecordWriter(conn, rid, STDERR),
                             env, True, False)
        handler.run(self.server.app)  # logs app errors; answers 500 if the head was not yet sent
        body.drain()
        status = 1 if conn.aborted else 0
        conn.aborted = False
        # The empty STDOUT record and END_REQUEST in one write.
        conn.sock.sendall(record(STDOUT, rid) + end_request(rid, status, REQUEST_COMPLETE))

    @staticmethod
    def _close(sock, conn):
        """Send FIN, then read whatever still comes (at most DRAIN_SECONDS) and close.

        Closing with unread input makes Linux send RST, which can destroy the response still in
        flight (see SCGIRequestHandler._drain in scgi_server.py).
        """
        deadline = time.monotonic() + DRAIN_SECONDS
        try:
            sock.shutdown(socket.SHUT_WR)
            while time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                if not conn.rfile.read1(65536):
                    break
        except OSError:
            pass


def main(argv=None):
    parser = argparse.ArgumentParser(description='Threaded FastCGI server for a WSGI app.')
    parser.add_argument('--socket', required=True, help='unix:/path/app.sock or host:port')
    parser.add_argument('--threads', type=int, default=16,
                        help='connections served at once (16); a KEEP_CONN connection holds one')
    parser.add_argument('--app', default='app:application', help='module:callable')
    parser.add_argument('--max-params', type=int, default=65536,
                        help='bytes of the PARAMS stream (65536)')
    parser.add_argument('--chmod', type=lambda s: int(s, 8), default=0o660,
                        help='mode of the Unix socket, octal (660)')
    args = parser.parse_args(argv)
    if args.threads < 1 or args.max_params < 1:
        parser.error('--threads and --max-params must be positive')
    sys.path[:0] = [os.getcwd(), os.path.dirname(os.path.abspath(__file__))]  # find --app
    module, _, name = args.app.partition(':')
    app = getattr(importlib.import_module(module), name or 'application')
    serve(app, args.socket, args.threads, args.max_params, args.chmod, FCGIRequestHandler)
    return 0


if __name__ == '__main__':
    sys.exit(main())
