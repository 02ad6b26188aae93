/**
 * Opening a connection to an SCGI backend. A connector is replaceable (as in undici's
 * `connect` option): tests and users may wrap it, e.g. to add TLS or metrics.
 */
import { connect as netConnect, type Socket } from 'node:net';
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

/**
 * The default connector: TCP (Nagle off, since the head and small bodies should leave at once)
 * or a Unix socket. A failure is `SCGI_ERR_CONNECT` with the system error as `cause`, and a
 * timer expiry `SCGI_ERR_CONNECT_TIMEOUT`; both mean nothing was sent, so retrying is safe.
 */
export const defaultConnector: Connector = (address, options, callback) => {
  const socket =
    address.kind === 'unix'
      ? netConnect({ path: address.path })
      : netConnect({ host: address.host, port: address.port, noDelay: true });
  let timer: NodeJS.Timeout | null = null;
  let settled = false;
  const finish = (err: ScgiError | null) => {
    if (settled) return;
    settled = true;
    if (timer !== null) clearTimeout(timer);
    socket.removeListener('error', onError);
    socket.removeListener('connect', onConnect);
    if (err) {
      socket.destroy();
      callback(err, null);
    } else {
      callback(null, socket);
    }
  };
  const onError = (err: Error) => finish(new ConnectError({ cause: err }));
  const onConnect = () => finish(null);
  socket.once('error', onError);
  socket.once('connect', onConnect);
  if (options.timeout > 0) {
    timer = setTimeout(() => finish(new ConnectTimeoutError(options.timeout)), options.timeout);
  }
};
