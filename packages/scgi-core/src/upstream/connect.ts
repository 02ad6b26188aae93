/**
 * Opening a connection to an SCGI backend. A connector is replaceable (as in undici's
 * `connect` option): tests and users may wrap it, e.g. to add TLS or metrics.
 *
 * SCGI has no keep-alive, so every request opens a connection. The default connector reuses the
 * `net.Socket` objects themselves: a socket whose exchange ended clean is connected again for a
 * later request once its 'close' was emitted, which Node supports ("socket.connect() ... should
 * only be used for reconnecting a socket after 'close' has been emitted"). That skips building a
 * Socket, its two stream states and five listeners per request: the largest JS cost of a small
 * exchange in the profile (see bench/README.md).
 *
 * The engine's own connector (`lendingConnector`, used when no `connector` is given) is the same
 * with one difference: its sockets read into buffers the exchange picks (Node's `onread`
 * option) instead of a new buffer per read: the response head into one shared scratch buffer, a
 * small body straight into the buffer that goes to the client, a long body into two buffers
 * taking turns while the client keeps up. V8 counts every ArrayBuffer as external memory
 * allocated since its last mark-compact, against the old generation's limit: with Node's new
 * buffer per read (and a copy to join a small body's pieces) a 64 KiB or 16 MiB response made
 * it run mark-compacts back to back (see bench/README.md).
 */
import { type OnReadOpts, Socket, type SocketConstructorOpts } from 'node:net';
import { ConnectError, ConnectTimeoutError, NoSocketError, type ScgiError } from '../errors.js';
import type { UpstreamAddress } from './address.js';

export interface ConnectOptions {
  /** Milliseconds to wait for the connection; 0 disables the timer. */
  readonly timeout: number;
}

/** Called once: with an error, or with a connected socket. */
export type ConnectCallback = (err: ScgiError | null, socket: Socket | null) => void;

/**
 * A function that opens a socket to the address and calls back once it is connected. It may
 * return a function that abandons the attempt (the client went away while connecting): the
 * socket and timer are freed at once and the callback is not called. The engine takes an error
 * that is not an `ScgiError` as `SCGI_ERR_CONNECT`, and a throw as `SCGI_ERR_NO_SOCKET`
 * (engine/exchange.ts `start`).
 */
export type Connector = (
  address: UpstreamAddress,
  options: ConnectOptions,
  callback: ConnectCallback,
  // biome-ignore lint/suspicious/noConfusingVoidType: a connector that returns nothing (typed void) stays a Connector
) => void | (() => void);

/** Receives the events of a socket bound to it (see `bindSocket`). @internal */
export interface SocketUser {
  /** Bytes from a socket of another connector: the chunk is the user's to keep. */
  onData(chunk: Buffer): void;
  /**
   * `n` bytes were read into `buf[0..n)`, the buffer `readTarget()` gave, or the shared scratch
   * buffer, which is only lent: whatever the user keeps of it must be copied before returning.
   */
  onRead(n: number, buf: Buffer): void;
  /** Where the next read should go; null for the shared scratch buffer. */
  readTarget(): Buffer | null;
  onEnd(): void;
  onError(err: NodeJS.ErrnoException): void;
  onClose(): void;
  onTimeout(): void;
}

const kUser = Symbol('scgi-core.socketUser');
const kPending = Symbol('scgi-core.pendingConnect');
/** The idle list a socket of ours goes back to (custom connectors' sockets have none). */
const kIdle = Symbol('scgi-core.idleList');
const kRecycle = Symbol('scgi-core.recycle');

interface BoundSocket extends Socket {
  [kUser]?: SocketUser | null;
  [kPending]?: ((err: Error | null) => void) | null;
  [kIdle]?: BoundSocket[];
  [kRecycle]?: boolean;
}

/**
 * Closed sockets waiting to be connected again; bounded, they hold no file descriptor. Sockets
 * that read into lent buffers (the engine's) and plain ones (`defaultConnector`'s) are kept apart.
 */
const idleLending: BoundSocket[] = [];
const idlePlain: BoundSocket[] = [];
const MAX_IDLE_SOCKETS = 256;

/**
 * One read buffer for every socket of the engine's connector: a read fills it and its callback
 * consumes it synchronously before any other read can happen (one JS thread).
 */
const SCRATCH = Buffer.allocUnsafeSlow(64 * 1024);

function onRead(this: BoundSocket, n: number, buf: Buffer): boolean {
  // Without a user (released), late bytes are dropped.
  this[kUser]?.onRead(n, buf);
  return true;
}

// The listeners are plain functions shared by every socket: they forward to the socket's
// current user, so a reused socket keeps the same five listeners for its whole life.
function onData(this: BoundSocket, chunk: Buffer): void {
  this[kUser]?.onData(chunk);
}
function onEnd(this: BoundSocket): void {
  this[kUser]?.onEnd();
}
function onError(this: BoundSocket, err: NodeJS.ErrnoException): void {
  const pending = this[kPending];
  if (pending) pending(err);
  // Without a user (released), a late EPIPE/ECONNRESET is dropped: it must not crash the process.
  else this[kUser]?.onError(err);
}
function onClose(this: BoundSocket): void {
  this[kUser]?.onClose();
  if (this[kRecycle] === true) {
    this[kRecycle] = false;
    const idle = this[kIdle]!;
    if (idle.length < MAX_IDLE_SOCKETS) idle.push(this);
  }
}
function onTimeout(this: BoundSocket): void {
  this[kUser]?.onTimeout();
}
function onConnect(this: BoundSocket): void {
  this[kPending]?.(null);
}

/** Sends the socket's events to `user` (listeners are attached once per socket). @internal */
export function bindSocket(socket: Socket, user: SocketUser): void {
  const s = socket as BoundSocket;
  if (s[kUser] === undefined) forwardEvents(s);
  s[kUser] = user;
}

/** Attaches the forwarding listeners (once per socket: `kUser` is defined from then on). */
function forwardEvents(s: BoundSocket): void {
  s[kUser] = null;
  s.on('data', onData);
  s.on('end', onEnd);
  s.on('error', onError);
  s.on('close', onClose);
  s.on('timeout', onTimeout);
}

/**
 * The user is done with the socket: no event reaches it any more and the socket is destroyed.
 * `clean` (the exchange ended without error) lets a socket of the default connector be
 * connected again later, if nothing is left in its stream buffers and it is not paused or
 * corked: a reused socket must start exactly as a new one. @internal
 */
export function releaseSocket(socket: Socket, clean: boolean): void {
  const s = socket as BoundSocket;
  s[kUser] = null;
  if (
    clean &&
    s[kIdle] !== undefined &&
    s.readableLength === 0 &&
    s.writableLength === 0 &&
    s.writableCorked === 0 &&
    !s.isPaused()
  ) {
    s[kRecycle] = true;
  }
  // Also stops the socket's idle timer (Node's _destroy clears it; `timeout` keeps its value,
  // which is why exchange.ts `#connected` always sets a new connection's timer).
  s.destroy();
}

function takeSocket(lending: boolean): BoundSocket {
  const idle = lending ? idleLending : idlePlain;
  const reused = idle.pop();
  if (reused !== undefined) return reused;
  let s: BoundSocket;
  if (lending) {
    // `onread` is read by the constructor (net.connect() passes its options there too); the
    // buffer function runs at every connect and after every read.
    const onread: OnReadOpts = {
      buffer: () => s[kUser]?.readTarget() ?? SCRATCH,
      callback: onRead as OnReadOpts['callback'],
    };
    s = new Socket({ onread } as SocketConstructorOpts);
  } else {
    s = new Socket();
  }
  // Nagle off: the head and small bodies should leave at once. Node applies it to every handle
  // the socket gets, so to each reconnection too (a Unix socket ignores it).
  s.setNoDelay(true);
  // Every property of ours from the start, in one order: sockets keep one map (monomorphic loads).
  s[kIdle] = idle;
  s[kPending] = null;
  s[kRecycle] = false;
  forwardEvents(s);
  s.on('connect', onConnect);
  return s;
}

function open(
  lending: boolean,
  address: UpstreamAddress,
  options: ConnectOptions,
  callback: ConnectCallback,
): () => void {
  const socket = takeSocket(lending);
  let timer: NodeJS.Timeout | null = null;
  let settled = false;
  /** Ends the attempt once: false when it was already over (connected, failed or abandoned). */
  const settle = (): boolean => {
    if (settled) return false;
    settled = true;
    socket[kPending] = null;
    if (timer !== null) clearTimeout(timer);
    return true;
  };
  const finish = (err: Error | null) => {
    if (!settle()) return;
    if (err !== null) {
      socket.destroy();
      callback(connectFailure(err), null);
    } else {
      callback(null, socket);
    }
  };
  socket[kPending] = finish;
  if (options.timeout > 0) {
    timer = setTimeout(() => finish(new ConnectTimeoutError(options.timeout)), options.timeout);
  }
  if (address.kind === 'unix') socket.connect(address.path);
  else socket.connect(address.port, address.host);
  return () => {
    if (settle()) socket.destroy();
  };
}

/** Errors of this process, not of the backend: no descriptor or memory left for a socket. */
const LOCAL_ERRNO = new Set(['EMFILE', 'ENFILE', 'ENOBUFS', 'ENOMEM']);

function connectFailure(err: Error): ScgiError {
  if (err instanceof ConnectTimeoutError) return err as ScgiError;
  const code = (err as NodeJS.ErrnoException).code;
  // Out of descriptors here says nothing about the backend: it is not charged (engine/failure-policy.ts).
  if (code !== undefined && LOCAL_ERRNO.has(code)) return new NoSocketError(code, { cause: err });
  return new ConnectError({ cause: err });
}

/**
 * The default connector: TCP (Nagle off) or a Unix socket. A failure is `SCGI_ERR_CONNECT`
 * with the system error as `cause`, and a timer expiry `SCGI_ERR_CONNECT_TIMEOUT`; both mean
 * nothing was sent, so retrying is safe. Its sockets are plain streams ('data' events), for
 * connectors that wrap it.
 */
export const defaultConnector: Connector = (address, options, callback) =>
  open(false, address, options, callback);

/**
 * What the engine uses when no `connector` is given: the default connector, but its sockets
 * read into buffers the exchange picks (`SocketUser.readTarget`) and emit no 'data'. Only for
 * sockets bound to a `SocketUser`. @internal
 */
export const lendingConnector: Connector = (address, options, callback) =>
  open(true, address, options, callback);
