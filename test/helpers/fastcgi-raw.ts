/**
 * A raw FastCGI backend of our own for the proxy tests: net.createServer and scgi-core's record
 * codec, with one behaviour per PATH_INFO, well-behaved or not (closes before END_REQUEST,
 * OVERLOADED, wrong version, another request id, records after END_REQUEST, STDERR floods...).
 * It honours FCGI_KEEP_CONN like PHP-FPM, counts connections, and can close a kept connection
 * when the next request arrives (`closeKeptAfter`), as PHP-FPM does after `pm.max_requests`
 * when the close crosses the proxy's next request.
 */
import net, { type AddressInfo } from 'node:net';
import {
  decodePairs,
  encodeHeader,
  encodeRecord,
  FastcgiProtocolStatus,
  FastcgiRecordType,
} from 'scgi-core';
import { parseRecords } from './fastcgi-client.js';

const T = FastcgiRecordType;

export interface SeenRequest {
  readonly env: Record<string, string>;
  readonly keepConn: boolean;
  readonly body: Buffer;
  /** The connection's number (1 for the first the backend accepted). */
  readonly connection: number;
}

export interface RawFastcgiBackend {
  readonly address: string;
  readonly requests: SeenRequest[];
  /** Connections accepted so far. */
  accepted(): number;
  /** Connections open now, and the most that were open at once. */
  open(): number;
  maxOpen(): number;
  /** Connections the proxy (or the backend) closed so far. */
  closed(): number;
  /** From now on, a kept connection that served `n` requests is closed when the next one arrives. */
  closeKeptAfter(n: number | null): void;
  close(): Promise<void>;
}

function stdout(text: string | Buffer, id = 1): Buffer {
  const data = typeof text === 'string' ? Buffer.from(text, 'latin1') : text;
  const parts: Buffer[] = [];
  for (let i = 0; i < data.length; i += 65535) {
    parts.push(encodeRecord(T.STDOUT, id, data.subarray(i, i + 65535)));
  }
  return Buffer.concat(parts);
}

function end(status: number = FastcgiProtocolStatus.REQUEST_COMPLETE, id = 1): Buffer {
  const body = Buffer.alloc(8);
  body[4] = status;
  return Buffer.concat([encodeHeader(T.STDOUT, id, 0, 0), encodeRecord(T.END_REQUEST, id, body)]);
}

const OK = 'Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok';

/**
 * Answers one request. Returns true when the connection stays usable (the caller then keeps it
 * for KEEP_CONN, or closes it).
 */
function answer(socket: net.Socket, req: SeenRequest): boolean {
  const path = req.env.PATH_INFO ?? '/';
  switch (path) {
    case '/close-before-head':
      socket.destroy();
      return false;
    case '/close-after-head':
      socket.write(stdout('Status: 200 OK\r\nContent-Type: text/plain\r\n\r\npartial body'));
      setTimeout(() => socket.destroy(), 50);
      return false;
    case '/close-after-head-cl':
      // A small body with its Content-Length, cut: collected whole, so still a clean 502.
      socket.write(stdout('Status: 200 OK\r\nContent-Length: 100\r\n\r\nshort'));
      setTimeout(() => socket.destroy(), 50);
      return false;
    case '/short-end':
      // A streamed body (over maxBufferedBody) cut short by END_REQUEST, head, body and end in
      // one write: the proxy learns the body is short in the read that brought the head.
      socket.write(
        Buffer.concat([
          stdout('Status: 200 OK\r\nContent-Length: 200000\r\n\r\n'),
          stdout(Buffer.alloc(5000, 0x62)),
          end(),
        ]),
      );
      return true;
    case '/overloaded':
      socket.write(end(FastcgiProtocolStatus.OVERLOADED));
      return true;
    case '/cant-mpx':
      socket.write(end(FastcgiProtocolStatus.CANT_MPX_CONN));
      return true;
    case '/unknown-role':
      socket.write(end(FastcgiProtocolStatus.UNKNOWN_ROLE));
      return true;
    case '/bad-version': {
      const record = stdout(OK);
      record[0] = 2;
      socket.write(record);
      return false;
    }
    case '/other-id':
      socket.write(Buffer.concat([stdout(OK, 2), end(0, 2)]));
      return false;
    case '/unknown-type':
      socket.write(encodeRecord(42, 1, Buffer.from('x')));
      return false;
    case '/after-end':
      // A complete answer, then one more record: the answer stands, the connection is not kept.
      socket.write(Buffer.concat([stdout(OK), end(), stdout('late')]));
      return false;
    case '/extra-stdout':
      // STDOUT past the Content-Length: dropped; END_REQUEST still ends it cleanly.
      socket.write(Buffer.concat([stdout(`${OK}EXTRA BYTES`), end()]));
      return true;
    case '/slow-end':
      // The whole answer now, END_REQUEST later: the client must not wait for it.
      socket.write(stdout(OK));
      setTimeout(() => {
        if (!socket.destroyed) socket.write(end());
      }, 400);
      return true;
    case '/stderr': {
      const flood = Buffer.alloc(256 * 1024, 0x65);
      const parts = [encodeRecord(T.STDERR, 1, Buffer.from('PHP Warning: something\n'))];
      for (let i = 0; i < flood.length; i += 65535) {
        parts.push(encodeRecord(T.STDERR, 1, flood.subarray(i, i + 65535)));
      }
      socket.write(Buffer.concat([...parts, stdout(OK), end()]));
      return true;
    }
    case '/endless': {
      // A body without end, as fast as the proxy takes it.
      socket.write(stdout('Status: 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n'));
      const chunk = stdout(Buffer.alloc(60_000, 0x61));
      const more = () => {
        while (!socket.destroyed && socket.write(chunk));
      };
      socket.on('drain', more);
      more();
      return false;
    }
    case '/slow':
      setTimeout(() => {
        if (!socket.destroyed) socket.write(Buffer.concat([stdout(OK), end()]));
      }, 150);
      return true;
    case '/echo': {
      const text = JSON.stringify({
        method: req.env.REQUEST_METHOD,
        length: req.body.length,
        body: req.body.toString('latin1').slice(0, 64),
        keepConn: req.keepConn,
        connection: req.connection,
      });
      const body = Buffer.from(text);
      socket.write(
        Buffer.concat([
          stdout(
            `Status: 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
          ),
          stdout(body),
          end(),
        ]),
      );
      return true;
    }
    default:
      socket.write(Buffer.concat([stdout(OK), end()]));
      return true;
  }
}

export async function startRawFastcgi(): Promise<RawFastcgiBackend> {
  const requests: SeenRequest[] = [];
  let accepted = 0;
  let open = 0;
  let maxOpen = 0;
  let closed = 0;
  let closeKeptAfter: number | null = null;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    const connection = ++accepted;
    open++;
    maxOpen = Math.max(maxOpen, open);
    sockets.add(socket);
    socket.on('close', () => {
      open--;
      closed++;
      sockets.delete(socket);
    });
    socket.on('error', () => {});
    let buffered = Buffer.alloc(0);
    let served = 0;
    let begin: { keepConn: boolean } | null = null;
    let params: Buffer[] = [];
    let stdin: Buffer[] = [];
    const busy = false;
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const { records, rest } = parseRecords(buffered);
      buffered = Buffer.from(rest);
      for (const r of records) {
        if (socket.destroyed) return;
        if (r.type === T.BEGIN_REQUEST) {
          if (closeKeptAfter !== null && served >= closeKeptAfter) {
            // The close crosses the request: nothing of it is answered.
            socket.destroy();
            return;
          }
          begin = { keepConn: (r.content[2]! & 1) === 1 };
          params = [];
          stdin = [];
        } else if (r.type === T.PARAMS && r.content.length > 0) {
          params.push(Buffer.from(r.content));
        } else if (r.type === T.STDIN && r.content.length > 0) {
          stdin.push(Buffer.from(r.content));
        } else if (r.type === T.STDIN && begin !== null && !busy) {
          const env: Record<string, string> = {};
          for (const [k, v] of decodePairs(Buffer.concat(params))) {
            env[k] = v.toString('latin1');
          }
          const req: SeenRequest = {
            env,
            keepConn: begin.keepConn,
            body: Buffer.concat(stdin),
            connection,
          };
          requests.push(req);
          served++;
          const usable = answer(socket, req);
          if (usable && !req.keepConn) socket.end();
          begin = null;
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    address: `fastcgi://127.0.0.1:${port}`,
    requests,
    accepted: () => accepted,
    open: () => open,
    maxOpen: () => maxOpen,
    closed: () => closed,
    closeKeptAfter: (n) => {
      closeKeptAfter = n;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
