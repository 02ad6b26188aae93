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
 */
import { Socket } from 'node:net';
import type { UpstreamAddress } from './address.js';
import { ConnectError, ConnectTimeoutError, type ScgiError } from './errors.js';

export interface ConnectOptions {
  /** Milliseconds to wait for the connection; 0 disables the timer. */
  readonly timeout: number;
}

/** Called once: with an error, or with a connected socket. */
export type ConnectCallback = (err: ScgiError | null, socket: Socket | null) => void;

/** A function that opens a socket to the address and calls back once it is connected. */
export type Connector = (
  address: UpstreamAddress,
  options: ConnectOptions,
  callback: ConnectCallback,
) => void;

/** Receives the events of a socket bound to it (see `bindSocket`). @internal */
export interface SocketUser {
  onData(chunk: Buffer): void;
  onEnd(): void;
  onError(err: NodeJS.ErrnoException): void;
  onClose(): void;
  onTimeout(): void;
}

const kUser = Symbol('scgi-core.socketUser');
const kPending = Symbol('scgi-core.pendingConnect');
const kReusable = Symbol('scgi-core.reusable');
const kRecycle = Symbol('scgi-core.recycle');

interface BoundSocket extends Socket {
  [kUser]?: SocketUser | null;
  [kPending]?: ((err: Error | null) => void) | null;
  [kReusable]?: boolean;
  [kRecycle]?: boolean;
}

/** Closed sockets waiting to be connected again; bounded, they hold no file descriptor. */
const idleSockets: BoundSocket[] = [];
const MAX_IDLE_SOCKETS = 256;

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
    if (idleSockets.length < MAX_IDLE_SOCKETS) idleSockets.push(this);
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
    s[kReusable] === true &&
    s.readableLength === 0 &&
    s.writableLength === 0 &&
    s.writableCorked === 0 &&
    !s.isPaused()
  ) {
    s[kRecycle] = true;
  }
  s.destroy();
}

function takeSocket(): BoundSocket {
  const reused = idleSockets.pop();
  if (reused !== undefined) return reused;
  const s = new Socket() as BoundSocket;
  // Nagle off: the head and small bodies should leave at once. Node applies it to every handle
  // the socket gets, so to each reconnection too (a Unix socket ignores it).
  s.setNoDelay(true);
  s[kReusable] = true;
  s[kPending] = null;
  forwardEvents(s);
  s.on('connect', onConnect);
  return s;
}

/**
 * The default connector: TCP (Nagle off) or a Unix socket. A failure is `SCGI_ERR_CONNECT`
 * with the system error as `cause`, and a timer expiry `SCGI_ERR_CONNECT_TIMEOUT`; both mean
 * nothing was sent, so retrying is safe.
 */
export const defaultConnector: Connector = (address, options, callback) => {
  const socket = takeSocket();
  let timer: NodeJS.Timeout | null = null;
  const finish = (err: Error | null) => {
    socket[kPending] = null;
    if (timer !== null) clearTimeout(timer);
    if (err !== null) {
      socket.destroy();
      callback(err instanceof ConnectTimeoutError ? err : new ConnectError({ cause: err }), null);
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
};
