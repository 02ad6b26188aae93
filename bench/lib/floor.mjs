/**
 * The floor of any SCGI proxy written on Node's `net` module, shared by fronts/node-floor.mjs
 * (under Node's `http` alone) and fronts/fastify-floor.mjs (under a Fastify route): per request
 * it only connects to the upstream (reusing the closed `net.Socket`, as scgi-core does), writes
 * a fixed SCGI head for the path, reads to EOF and hands over the bytes after the blank line.
 * No CGI environment, no parsing of the backend's head, no limits, timeouts or error handling:
 * not a proxy anyone should run, only the cost of one socket lifecycle per request.
 */
import { Socket } from 'node:net';
import { encodeScgiHead, parseAddress } from 'scgi-core';

/**
 * `exchange(path, done)` for the upstream address `upstream` (`unix:/path` or `host:port`):
 * `done(body)` gets the response body; on a socket error `done(null)`.
 */
export function scgiFloor(upstream) {
  const address = parseAddress(upstream);
  const heads = new Map();
  const headFor = (path) => {
    let head = heads.get(path);
    if (head === undefined) {
      head = encodeScgiHead([
        ['CONTENT_LENGTH', '0'],
        ['REQUEST_METHOD', 'GET'],
        ['REQUEST_URI', path],
        ['PATH_INFO', path],
        ['SCRIPT_NAME', ''],
        ['QUERY_STRING', ''],
        ['SERVER_NAME', '127.0.0.1'],
        ['SERVER_PORT', '80'],
        ['SERVER_PROTOCOL', 'HTTP/1.1'],
      ]);
      heads.set(path, head);
    }
    return head;
  };

  const idle = [];
  function onData(chunk) {
    this.chunks.push(chunk);
  }
  function onEnd() {
    const buf = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    const done = this.done;
    this.done = null;
    done(buf.subarray(buf.indexOf('\r\n\r\n') + 4));
    this.destroy();
  }
  function onClose(hadError) {
    this.chunks = [];
    if (!hadError) idle.push(this);
  }
  function onError() {
    const done = this.done;
    this.done = null;
    done?.(null);
  }

  return (path, done) => {
    let s = idle.pop();
    if (s === undefined) {
      s = new Socket();
      s.on('data', onData);
      s.on('end', onEnd);
      s.on('close', onClose);
      s.on('error', onError);
    }
    s.done = done;
    s.chunks = [];
    if (address.kind === 'unix') s.connect(address.path);
    else s.connect(address.port, address.host);
    s.write(headFor(path));
  };
}
