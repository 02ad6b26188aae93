/**
 * Front: the floor of any FastCGI proxy with kept connections written on Node's `http` and `net`
 * modules, as node-floor.mjs is for SCGI. Per request it only takes an idle kept connection to
 * `--upstream` (opening one while fewer than `--max-connections` are open, else the request
 * waits for one), writes a fixed request for the path (BEGIN_REQUEST with FCGI_KEEP_CONN, the
 * PARAMS records, the empty STDIN record: built once per path), reads records up to END_REQUEST
 * and answers 200 with the STDOUT bytes after the blank line. No CGI environment, no checks of
 * the records or of the backend's head, no timeouts or error handling: not a proxy anyone
 * should run, only the cost of Node's own HTTP server and of one FastCGI exchange on a kept
 * connection, measured in the same run as nginx and fastify-scgi.
 */
import { createServer } from 'node:http';
import { Socket } from 'node:net';
import { encodeRequest, encodeStdinEnd, parseAddress } from 'scgi-core';
import { announce, frontArgs } from './lib.mjs';

const values = frontArgs();
const address = parseAddress(values.upstream);
const max = Number(values['max-connections'] ?? 4);
const extra = values.param.map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]);

const requests = new Map();
const requestFor = (path) => {
  let buf = requests.get(path);
  if (buf === undefined) {
    const params = [
      ['CONTENT_LENGTH', ''],
      ['REQUEST_METHOD', 'GET'],
      ['REQUEST_URI', path],
      ['SCRIPT_NAME', ''],
      ['PATH_INFO', path],
      ['QUERY_STRING', ''],
      ['SERVER_NAME', '127.0.0.1'],
      ['SERVER_PORT', '80'],
      ['SERVER_PROTOCOL', 'HTTP/1.1'],
      ['GATEWAY_INTERFACE', 'CGI/1.1'],
      ...extra,
    ];
    buf = Buffer.concat([encodeRequest(1, params, { keepConn: true }), encodeStdinEnd(1)]);
    requests.set(path, buf);
  }
  return buf;
};

const idle = [];
const waiting = [];
let open = 0;

/** Records read so far on a connection: STDOUT contents are collected until END_REQUEST. */
function onData(chunk) {
  let buf = this.rest === null ? chunk : Buffer.concat([this.rest, chunk]);
  let at = 0;
  while (buf.length - at >= 8) {
    const type = buf[at + 1];
    const length = buf.readUInt16BE(at + 4);
    const total = 8 + length + buf[at + 6];
    if (buf.length - at < total) break;
    if (type === 6 && length > 0) this.stdout.push(buf.subarray(at + 8, at + 8 + length));
    at += total;
    if (type === 3) {
      finish(this);
      buf = buf.subarray(at);
      at = 0;
    }
  }
  this.rest = at === buf.length ? null : buf.subarray(at);
}

function finish(s) {
  const out = s.stdout.length === 1 ? s.stdout[0] : Buffer.concat(s.stdout);
  const res = s.res;
  s.res = null;
  s.stdout = [];
  const split = out.indexOf('\r\n\r\n');
  const body = out.subarray(split + 4);
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
  res.end(body);
  const next = waiting.shift();
  if (next === undefined) idle.push(s);
  else send(s, next[0], next[1]);
}

function send(s, req, res) {
  s.res = res;
  s.write(requestFor(req.url));
}

function onClose() {
  open--;
  const i = idle.indexOf(this);
  if (i !== -1) idle.splice(i, 1);
  this.res?.destroy();
}

const server = createServer((req, res) => {
  let s = idle.pop();
  if (s === undefined) {
    if (open >= max) {
      waiting.push([req, res]);
      return;
    }
    open++;
    s = new Socket();
    s.rest = null;
    s.stdout = [];
    s.on('data', onData);
    s.on('close', onClose);
    s.on('error', () => {});
    if (address.kind === 'unix') s.connect(address.path);
    else s.connect(address.port, address.host);
  }
  send(s, req, res);
});
server.keepAliveTimeout = 60_000;
await new Promise((resolve) => server.listen(Number(values.port), '127.0.0.1', resolve));
announce(server.address().port, () => {
  for (const s of idle) s.destroy();
  server.closeAllConnections();
  return new Promise((resolve) => server.close(resolve));
});
