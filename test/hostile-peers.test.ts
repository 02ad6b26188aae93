/**
 * Hostile peers cannot hold sockets (issue 12 §2 and §3).
 *
 * The backend is a raw one of our own, in a child process (so the descriptors counted here are
 * the front's and the test client's only): it reads the SCGI head and nothing more, answers
 * without a Content-Length and keeps its socket open. The client uploads more than the sockets
 * hold, so the upload stalls on the backend's full socket, and the front pauses the client's request.
 *
 * What can be seen of a client that leaves in that state: nothing, until idleTimeout. Its FIN
 * waits behind the unsent upload in its own send queue (`ss`: the client FIN-WAIT-1 with MiBs
 * in Send-Q on a persist timer, the front's socket ESTABLISHED with a full Recv-Q), and a
 * paused Node socket is not polled, so not even a reset reaches the front. idleTimeout bounds
 * it in every state, and closes both sockets when it fires.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import type { Server } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import express from 'express';
import { scgiProxy } from 'express-scgi';
import Fastify from 'fastify';
import fastifyScgi from 'fastify-scgi';
import type { ScgiProxy, ScgiProxyOptions } from 'scgi-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from './helpers/corpus.js';
import { countOpenFds, type RawResponse, rawRequest } from './helpers/http.js';
import { removeTempDir } from './helpers/tmp.js';
import { type NodeChild, runNode, scriptDir, writeScript } from './helpers/workers.js';

const MiB = 1024 * 1024;
const IDLE = 1000;
/**
 * More than the socket buffers between client, front and backend hold on loopback (several MiB
 * each way once autotuned): the upload must stall on the backend, not vanish into the kernel.
 */
const UPLOAD = 256 * MiB;

/**
 * The backend: reads the SCGI head only, then answers `Status: 200 OK` without a Content-Length
 * and keeps the socket open, reading nothing more. The body is `ok`, or for `/endless` as many
 * bytes as the front takes.
 */
const BACKEND = `
import net from 'node:net';
const chunk = Buffer.alloc(64 * 1024, 0x62);
const server = net.createServer((socket) => {
  let head = Buffer.alloc(0);
  const onData = (chunk) => {
    head = Buffer.concat([head, chunk]);
    const colon = head.indexOf(0x3a);
    if (colon < 0 || head.length < colon + 2 + Number(head.subarray(0, colon).toString())) return;
    socket.removeListener('data', onData);
    socket.pause();
    socket.write('Status: 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\n');
    if (!head.includes('\\0PATH_INFO\\0/endless\\0')) {
      socket.write('ok');
      return;
    }
    // An endless body, written as fast as the front takes it.
    const more = () => {
      while (socket.write(chunk));
    };
    socket.on('drain', more);
    more();
  };
  socket.on('data', onData);
  socket.on('error', () => {});
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));
`;

interface TestFront {
  url: string;
  port: number;
  proxy: ScgiProxy;
  close(): Promise<void>;
}

async function startTestFront(kind: string, options: ScgiProxyOptions): Promise<TestFront> {
  if (kind === 'fastify') {
    const app = Fastify({ logger: false });
    await app.register(fastifyScgi, { ...options, prefix: '/app' });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    return {
      url: `http://127.0.0.1:${port}`,
      port,
      proxy: app.scgiProxy,
      close: () => app.close(),
    };
  }
  const app = express();
  const mw = scgiProxy({ ...options, respondOnError: true });
  app.use('/app', mw);
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    proxy: mw.proxy,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Errors of exchanges that ended after their head (`scgi-core:request:end`). */
const endErrors: string[] = [];
const onEnd = (message: unknown) => {
  const error = (message as { error?: { code: string } }).error;
  if (error !== undefined) endErrors.push(error.code);
};

let scripts: string;
let backend: NodeChild;
let upstream: string;

beforeAll(async () => {
  scripts = scriptDir();
  backend = runNode(writeScript(scripts, 'backend.mjs', BACKEND));
  upstream = `127.0.0.1:${(await backend.json<{ port: number }>()).port}`;
  diagnosticsChannel.subscribe('scgi-core:request:end', onEnd);
});
afterAll(() => {
  diagnosticsChannel.unsubscribe('scgi-core:request:end', onEnd);
  backend.child.kill();
  removeTempDir(scripts);
});

/**
 * A client that uploads UPLOAD bytes to `path` as fast as the front takes them; `got` resolves
 * once `want` response bytes arrived, `stalled` once the upload has not moved for 300 ms.
 */
function uploader(port: number, path: string, want: number) {
  const socket = net.connect(port, '127.0.0.1');
  let received = 0;
  let closed = false;
  let sent = 0;
  let moved = Date.now();
  socket.on('error', () => {});
  socket.on('close', () => {
    closed = true;
  });
  const got = new Promise<void>((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received >= want) resolve();
    });
  });
  const piece = Buffer.alloc(64 * 1024, 0x61);
  const more = () => {
    moved = Date.now();
    while (sent < UPLOAD && !socket.destroyed) {
      sent += piece.length;
      if (!socket.write(piece)) return;
    }
  };
  socket.on('drain', more);
  socket.write(`POST /app${path} HTTP/1.1\r\nHost: x\r\nContent-Length: ${UPLOAD}\r\n\r\n`);
  more();
  const stalled = async () => {
    const still = await eventually(() => sent < UPLOAD && Date.now() - moved >= 300, 5000);
    expect(still).toBe(true);
  };
  return { socket, got, stalled, isClosed: () => closed };
}

describe.each(['fastify', 'express'])('%s', (kind) => {
  let front: TestFront;
  beforeAll(async () => {
    front = await startTestFront(kind, { upstream, idleTimeout: IDLE });
  });
  afterAll(() => front.close());
  afterEach(() => {
    endErrors.length = 0;
  });

  /** Both sockets of the exchange are gone: no exchange, and the fds are back to `base`. */
  const settled = (base: number) =>
    eventually(() => front.proxy.inFlight === 0 && countOpenFds() === base, IDLE + 3000);

  it('a client that leaves while the backend holds its unread upload: both sockets closed within idleTimeout', async () => {
    const base = countOpenFds();
    const client = uploader(front.port, '/ok', 'ok'.length);
    await client.got;
    await client.stalled();
    expect(front.proxy.inFlight).toBe(1);
    const left = Date.now();
    client.socket.destroy();
    expect(await settled(base)).toBe(true);
    // Node defers a socket timeout once while the write queue changed since it was armed
    // (net.js `_onTimeout`), so it fires within twice idleTimeout of the last byte moved.
    expect(Date.now() - left).toBeLessThan(2 * IDLE + 1000);
    expect(endErrors).toEqual(['SCGI_ERR_IDLE_TIMEOUT']);
  });

  it('a client that takes no response bytes while the backend holds its upload: idleTimeout cuts both connections (SCGI_ERR_SEND_TIMEOUT)', async () => {
    const base = countOpenFds();
    const client = uploader(front.port, '/endless', 1);
    await client.got;
    // The client reads no more: the answer fills the sockets and the front pauses the backend's
    // socket; the upload is stalled the other way. Nothing moves either way.
    client.socket.pause();
    // The front's two sockets go. The client's own is left: its pending upload write fails on
    // the reset, or, paused, it has not noticed yet; reading again, it finds the connection gone.
    const own = () => (client.isClosed() ? 0 : 1);
    const gone = await eventually(
      () => front.proxy.inFlight === 0 && countOpenFds() === base + own(),
      IDLE + 3000,
    );
    expect(gone).toBe(true);
    client.socket.resume();
    expect(await eventually(client.isClosed, 3000)).toBe(true);
    expect(countOpenFds()).toBe(base);
    expect(endErrors).toEqual(['SCGI_ERR_SEND_TIMEOUT']);
  });
});

describe.each(['fastify', 'express'])('%s, chunk sizes', (kind) => {
  let front: TestFront;
  beforeAll(async () => {
    front = await startTestFront(kind, { upstream, idleTimeout: IDLE, maxBodySize: MiB });
  });
  afterAll(() => front.close());

  const chunked = (sizeLine: string, after = '') =>
    rawRequest(
      front.url,
      `POST /app/ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${sizeLine}\r\n${after}`,
      { timeoutMs: IDLE + 4000 },
    );
  const codeOf = (res: RawResponse) => JSON.parse(res.body.toString()).code as string;

  // Node's parser (llhttp) takes any chunk size up to 2^64-1 and hands on the data as it comes;
  // the announced size is never seen, so the stall after it is what gets the answer.
  it.each([
    '80000000',
    'ffffffffffffffff',
  ])('chunk size %s then a stall: 408 SCGI_ERR_REQUEST_TIMEOUT after idleTimeout, nothing left open', async (size) => {
    const base = countOpenFds();
    const started = Date.now();
    const res = await chunked(size, 'abc');
    expect(res.statusCode).toBe(408);
    expect(codeOf(res)).toBe('SCGI_ERR_REQUEST_TIMEOUT');
    expect(Date.now() - started).toBeLessThan(IDLE + 2000);
    expect(await eventually(() => countOpenFds() === base, 3000)).toBe(true);
  });

  it('a chunk size past 2^64-1 is refused by Node at once (400)', async () => {
    const res = await chunked('10000000000000000');
    expect(res.statusCode).toBe(400);
  });
});
