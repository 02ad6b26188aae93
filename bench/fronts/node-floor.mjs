/**
 * Front: the floor of any SCGI proxy written on Node's `http` and `net` modules. Per request it
 * only connects to `--upstream` (reusing the closed `net.Socket`, as scgi-core does), writes a
 * fixed SCGI head for the path, reads to EOF and answers 200 with the bytes after the blank line.
 * No CGI environment, no parsing of the backend's head, no limits, timeouts or error handling:
 * not a proxy anyone should run, only the cost of Node's own HTTP server and one socket
 * lifecycle per request, measured in the same run as the real fronts.
 */
import { createServer } from 'node:http';
import { Socket } from 'node:net';
import { encodeScgiHead, parseAddress } from 'scgi-core';
import { announce, frontArgs } from './lib.mjs';

const { upstream, port } = frontArgs();
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
  const res = this.res;
  const at = buf.indexOf('\r\n\r\n');
  const body = buf.subarray(at + 4);
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
  res.end(body);
  this.destroy();
}
function onClose(hadError) {
  this.res = null;
  this.chunks = [];
  if (!hadError) idle.push(this);
}
function onError() {
  this.res?.destroy();
}

const server = createServer((req, res) => {
  let s = idle.pop();
  if (s === undefined) {
    s = new Socket();
    s.on('data', onData);
    s.on('end', onEnd);
    s.on('close', onClose);
    s.on('error', onError);
  }
  s.res = res;
  s.chunks = [];
  if (address.kind === 'unix') s.connect(address.path);
  else s.connect(address.port, address.host);
  s.write(headFor(req.url));
});
server.keepAliveTimeout = 60_000;
await new Promise((resolve) => server.listen(Number(port), '127.0.0.1', resolve));
announce(server.address().port, () => {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(resolve));
});
