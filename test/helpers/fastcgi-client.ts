/**
 * A small FastCGI client for tests, built from scgi-core's FastCGI encoder and response decoder
 * (packages/scgi-core/src/fastcgi/), so every real-peer test also checks our codec: requests
 * to the Node FastCGI server, examples/python/fastcgi_server.py, PHP-FPM, php-cgi and uWSGI.
 *
 * One `FastcgiConnection` carries requests one after another (FCGI_KEEP_CONN). `parseRecords`
 * is a second, deliberately naive parser (whole buffer, no state machine) for raw-byte tests.
 */
import net from 'node:net';
import {
  decodePairs,
  type EnvInput,
  encodeGetValues,
  encodeRequest,
  encodeStdin,
  encodeStdinEnd,
  FastcgiRecordType,
  FastcgiResponseDecoder,
  INLINE_BODY_LIMIT,
} from 'scgi-core';
import { connectOptions } from './backends.js';

export interface FastcgiReply {
  /** The whole STDOUT stream (the CGI response). */
  stdout: Buffer;
  stderr: Buffer;
  appStatus: number;
  protocolStatus: number;
  /** `Status` header value ('' when absent). */
  status: string;
  headers: [string, string][];
  body: Buffer;
  /** The decoder's verdict at END_REQUEST: nothing followed it, the connection may be reused. */
  reusable: boolean;
}

export interface FastcgiRequestOptions {
  requestId?: number;
  keepConn?: boolean;
  role?: number;
  pad?: boolean;
  /** Body chunk size when streaming (bodies above INLINE_BODY_LIMIT). @default 65536 */
  chunkSize?: number;
  timeoutMs?: number;
}

/** Splits a CGI response into `Status`, headers and body (CRLF or LF line ends). */
export function parseCgi(stdout: Buffer): Pick<FastcgiReply, 'status' | 'headers' | 'body'> {
  let end = stdout.indexOf('\r\n\r\n');
  let sep = 4;
  const lf = stdout.indexOf('\n\n');
  if (end < 0 || (lf >= 0 && lf < end)) {
    end = lf;
    sep = 2;
  }
  if (end < 0) return { status: '', headers: [], body: Buffer.alloc(0) };
  const lines = stdout.subarray(0, end).toString('latin1').split(/\r?\n/);
  const headers = lines.map((line): [string, string] => {
    const colon = line.indexOf(':');
    return [line.slice(0, colon), line.slice(colon + 1).trim()];
  });
  const status = headers.find(([name]) => name.toLowerCase() === 'status')?.[1] ?? '';
  return { status, headers, body: stdout.subarray(end + sep) };
}

/** A CGI environment for `path` (REQUEST_METHOD POST when there is a body); `extra` overrides by name. */
export function fcgiParams(
  path: string,
  bodyLength = 0,
  extra: Record<string, string | Buffer> = {},
): Record<string, string | Buffer> {
  const [pathOnly, query = ''] = path.split('?', 2) as [string, string?];
  return {
    CONTENT_LENGTH: String(bodyLength),
    REQUEST_METHOD: bodyLength ? 'POST' : 'GET',
    REQUEST_URI: path,
    SCRIPT_NAME: '',
    PATH_INFO: pathOnly,
    QUERY_STRING: query,
    SERVER_PROTOCOL: 'HTTP/1.1',
    SERVER_NAME: 'localhost',
    SERVER_PORT: '80',
    GATEWAY_INTERFACE: 'CGI/1.1',
    REMOTE_ADDR: '127.0.0.1',
    ...extra,
  };
}

/** One connection to a FastCGI application; requests run one at a time. */
export class FastcgiConnection {
  readonly socket: net.Socket;
  /** Resolves once the socket has closed (with the server's FIN or an error). */
  readonly closed: Promise<void>;
  /** Set once the peer ended its side (FIN). */
  peerEnded = false;
  #onData: ((chunk: Buffer) => void) | null = null;
  #onEnd: (() => void) | null = null;
  #stash: Buffer[] = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => {
      if (this.#onData) this.#onData(chunk);
      else this.#stash.push(chunk); // bytes nobody asked for: the next reader sees them
    });
    socket.on('end', () => {
      this.peerEnded = true;
      this.#onEnd?.();
    });
    socket.on('close', () => this.#onEnd?.());
    socket.on('error', () => {}); // reported through 'close' and the decoder
  }

  static connect(address: string): Promise<FastcgiConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(connectOptions(address));
      socket.once('connect', () => resolve(new FastcgiConnection(socket)));
      socket.once('error', reject);
    });
  }

  /** Feeds the socket's bytes to `onData` until the returned function is called. */
  #listen(onData: (chunk: Buffer) => void, onEnd: () => void): () => void {
    this.#onData = onData;
    this.#onEnd = onEnd;
    for (const chunk of this.#stash.splice(0)) onData(chunk);
    if (this.peerEnded || this.socket.destroyed) onEnd();
    return () => {
      this.#onData = null;
      this.#onEnd = null;
    };
  }

  /** Sends one request and reads its response up to END_REQUEST. */
  request(
    params: EnvInput,
    body: Buffer = Buffer.alloc(0),
    options: FastcgiRequestOptions = {},
  ): Promise<FastcgiReply> {
    const id = options.requestId ?? 1;
    const pad = options.pad ?? true;
    return new Promise<FastcgiReply>((resolve, reject) => {
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      let settled = false;
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        stop();
        fn();
      };
      const decoder = new FastcgiResponseDecoder(
        {
          onStdout: (c) => stdout.push(Buffer.from(c)),
          onStderr: (c) => stderr.push(Buffer.from(c)),
          onEnd: ({ appStatus, protocolStatus }) => {
            // Resolved on the next tick so bytes after END_REQUEST in the same chunk are seen.
            setImmediate(() =>
              finish(() => {
                const out = Buffer.concat(stdout);
                resolve({
                  stdout: out,
                  stderr: Buffer.concat(stderr),
                  appStatus,
                  protocolStatus,
                  reusable: decoder.reusable,
                  ...parseCgi(out),
                });
              }),
            );
          },
        },
        id,
      );
      const timer = setTimeout(
        () => finish(() => reject(new Error(`FastCGI request timed out`))),
        options.timeoutMs ?? 30_000,
      );
      const stop = this.#listen(
        (chunk) => {
          try {
            decoder.push(chunk);
          } catch (err) {
            finish(() => reject(err));
          }
        },
        () => {
          try {
            decoder.end();
          } catch (err) {
            finish(() => reject(err));
          }
        },
      );
      void this.#send(id, params, body, options, pad).catch((err) => finish(() => reject(err)));
    });
  }

  async #send(
    id: number,
    params: EnvInput,
    body: Buffer,
    options: FastcgiRequestOptions,
    pad: boolean,
  ): Promise<void> {
    const head = { role: options.role, keepConn: options.keepConn ?? false, pad };
    if (body.length <= INLINE_BODY_LIMIT) {
      this.socket.write(encodeRequest(id, params, { ...head, body }));
      return;
    }
    this.socket.write(encodeRequest(id, params, head));
    const size = options.chunkSize ?? 65536;
    for (let i = 0; i < body.length; i += size) {
      if (this.socket.destroyed) return;
      this.socket.cork();
      for (const piece of encodeStdin(id, body.subarray(i, i + size), pad))
        this.socket.write(piece);
      this.socket.uncork();
      if (this.socket.writableNeedDrain) {
        await new Promise<void>((resolve) => {
          const done = () => {
            this.socket.off('drain', done);
            this.socket.off('close', done);
            resolve();
          };
          this.socket.on('drain', done);
          this.socket.on('close', done);
        });
      }
    }
    this.socket.write(encodeStdinEnd(id));
  }

  /** GET_VALUES: the application's answer as a map. */
  getValues(names: string[], timeoutMs = 10_000): Promise<Map<string, string>> {
    return new Promise((resolve, reject) => {
      let stop = () => {};
      const timer = setTimeout(() => {
        stop();
        reject(new Error('GET_VALUES timed out'));
      }, timeoutMs);
      const decoder = new FastcgiResponseDecoder({
        onStdout: () => {},
        onEnd: () => {},
        onManagement: (type, content) => {
          clearTimeout(timer);
          stop();
          if (type !== FastcgiRecordType.GET_VALUES_RESULT) {
            reject(new Error(`expected GET_VALUES_RESULT, got type ${type}`));
            return;
          }
          resolve(new Map(decodePairs(content).map(([n, v]) => [n, v.toString('latin1')])));
        },
      });
      stop = this.#listen(
        (chunk) => {
          try {
            decoder.push(chunk);
          } catch (err) {
            clearTimeout(timer);
            stop();
            reject(err);
          }
        },
        () => {
          clearTimeout(timer);
          stop();
          reject(new Error('connection closed before GET_VALUES_RESULT'));
        },
      );
      this.socket.write(encodeGetValues(names));
    });
  }

  /** Collects raw bytes until the connection closes or `until(bytes)` holds. */
  readRaw(until: (bytes: Buffer) => boolean = () => false, timeoutMs = 10_000): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let stop = () => {};
      const done = (err?: Error) => {
        clearTimeout(timer);
        stop();
        if (err) reject(err);
        else resolve(Buffer.concat(chunks));
      };
      const timer = setTimeout(() => done(new Error('readRaw timed out')), timeoutMs);
      stop = this.#listen(
        (chunk) => {
          chunks.push(chunk);
          if (until(Buffer.concat(chunks))) done();
        },
        () => done(),
      );
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/** One request on a new connection (no FCGI_KEEP_CONN); the connection is closed afterwards. */
export async function fastcgiRequest(
  address: string,
  params: EnvInput,
  body?: Buffer,
  options: FastcgiRequestOptions = {},
): Promise<FastcgiReply> {
  const conn = await FastcgiConnection.connect(address);
  try {
    return await conn.request(params, body, options);
  } finally {
    conn.close();
  }
}

export interface RawRecord {
  type: number;
  requestId: number;
  content: Buffer;
  paddingLength: number;
}

/** Every complete record in `bytes` (naive: whole buffer, version not checked), plus leftover bytes. */
export function parseRecords(bytes: Buffer): { records: RawRecord[]; rest: Buffer } {
  const records: RawRecord[] = [];
  let i = 0;
  while (i + 8 <= bytes.length) {
    const length = bytes.readUInt16BE(i + 4);
    const padding = bytes[i + 6]!;
    if (i + 8 + length + padding > bytes.length) break;
    records.push({
      type: bytes[i + 1]!,
      requestId: bytes.readUInt16BE(i + 2),
      content: bytes.subarray(i + 8, i + 8 + length),
      paddingLength: padding,
    });
    i += 8 + length + padding;
  }
  return { records, rest: bytes.subarray(i) };
}
