// The default connector (and the engine's own, whose sockets read into lent buffers) reconnects
// the net.Socket objects of clean exchanges instead of building new ones. A reused socket must
// start exactly as a new one: these tests check when a socket is reused and that no byte or
// event of one exchange ever reaches another.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import {
  type AddressInfo,
  createServer as createNetServer,
  type Server as NetServer,
  type Socket,
} from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScgiProxy } from '../src/index.js';
import { encodeScgiHead, ScgiHeadDecoder } from '../src/scgi/head.js';
import { parseAddress } from '../src/upstream/address.js';
import {
  bindSocket,
  type Connector,
  defaultConnector,
  lendingConnector,
  releaseSocket,
  type SocketUser,
} from '../src/upstream/connect.js';
import { get } from './http-client.js';

let backend: NetServer;
let backendAddr: string;

/** Answers by path: `/id/N` with body `N`, `/big` 1 MiB streamed, `/reset` a reset mid-body. */
beforeAll(async () => {
  backend = createNetServer((socket) => {
    socket.on('error', () => {});
    const decoder = new ScgiHeadDecoder();
    socket.on('data', (c: Buffer) => {
      const head = decoder.push(c);
      if (head === null) return;
      const path = head.env.PATH_INFO ?? '';
      if (path.startsWith('/id/')) {
        const body = path.slice(4);
        socket.end(`Status: 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      } else if (path === '/big') {
        socket.write('Status: 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n');
        socket.end(Buffer.alloc(1024 * 1024, 0x62));
      } else if (path === '/reset') {
        socket.write('Status: 200 OK\r\nContent-Length: 100\r\n\r\nhalf');
        setTimeout(() => socket.resetAndDestroy(), 5);
      } else {
        socket.end('Status: 404 Not Found\r\nContent-Length: 0\r\n\r\n');
      }
    });
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  backendAddr = `127.0.0.1:${(backend.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => backend.close(() => r())));

/**
 * An HTTP front on `connector`, with every socket it hands out passed to `seen`: the proxy
 * pipes each body to the client and answers a failure before the head with its status.
 */
async function startFront(
  connector: Connector,
  seen: (socket: Socket) => void,
): Promise<{ port: number; proxy: ScgiProxy; close: () => Promise<void> }> {
  const proxy = new ScgiProxy({
    upstream: backendAddr,
    connector: (address, options, callback) =>
      connector(address, options, (err, socket) => {
        if (socket !== null) seen(socket);
        callback(err, socket);
      }),
  });
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    proxy.request(req, { res }).then(
      (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.body.on('error', () => res.destroy());
        r.body.pipe(res);
      },
      (err: Error & { statusCode: number }) => {
        res.writeHead(err.statusCode);
        res.end();
      },
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    proxy,
    close: async () => {
      await proxy.close(0);
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe.each([
  ['default connector (plain sockets)', defaultConnector],
  ["engine's connector (sockets read into lent buffers)", lendingConnector],
] as Array<[string, Connector]>)('%s', (_name, connector) => {
  function connectOnce(address = backendAddr): Promise<Socket> {
    return new Promise((resolve, reject) => {
      connector(parseAddress(address), { timeout: 1000 }, (err, socket) =>
        err ? reject(err) : resolve(socket!),
      );
    });
  }

  /** After the socket's 'close' event (and so after the connector's own listener ran). */
  const closed = (socket: Socket) => new Promise<void>((r) => socket.once('close', () => r()));

  const quietUser: SocketUser = {
    onData() {},
    onRead() {},
    readTarget: () => null,
    onEnd() {},
    onError() {},
    onClose() {},
    onTimeout() {},
  };

  /** Binds the socket, releases it (`clean` or not) and waits until it closed. */
  async function useAndRelease(socket: Socket, clean: boolean): Promise<void> {
    bindSocket(socket, quietUser);
    releaseSocket(socket, clean);
    await closed(socket);
  }

  describe('default connector socket reuse', () => {
    it('connects a cleanly released socket again, and never one released after an error', async () => {
      const first = await connectOnce();
      await useAndRelease(first, true);
      const second = await connectOnce();
      expect(second).toBe(first);
      expect(second.destroyed).toBe(false);
      await useAndRelease(second, false);
      const third = await connectOnce();
      expect(third).not.toBe(second);
      await useAndRelease(third, true);
    });

    it('reconnects a socket used over a Unix socket to a TCP backend, and back', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'scgi-reuse-'));
      const path = join(dir, 'echo.sock');
      const unixServer = createNetServer((c) => {
        c.on('error', () => {});
        c.end('over unix');
      });
      await new Promise<void>((r) => unixServer.listen(path, r));
      try {
        const readAll = (socket: Socket) =>
          new Promise<string>((resolve) => {
            const chunks: Buffer[] = [];
            bindSocket(socket, {
              ...quietUser,
              onData: (c) => chunks.push(c),
              // The engine's sockets read into a lent buffer: keep a copy.
              onRead: (n, buf) => chunks.push(Buffer.from(buf.subarray(0, n))),
              onEnd: () => resolve(Buffer.concat(chunks).toString()),
            });
          });
        const overUnix = await connectOnce(`unix:${path}`);
        expect(await readAll(overUnix)).toBe('over unix');
        releaseSocket(overUnix, true);
        await closed(overUnix);
        const overTcp = await connectOnce(backendAddr);
        expect(overTcp).toBe(overUnix);
        const answer = readAll(overTcp);
        overTcp.write(encodeScgiHead([['CONTENT_LENGTH', '0']]));
        overTcp.end();
        // No PATH_INFO: the backend answers 404 with an empty body.
        expect(await answer).toMatch(/^Status: 404 Not Found\r\n/);
        releaseSocket(overTcp, true);
        await closed(overTcp);
        const again = await connectOnce(`unix:${path}`);
        expect(again).toBe(overUnix);
        expect(await readAll(again)).toBe('over unix');
        releaseSocket(again, true);
        await closed(again);
      } finally {
        await new Promise<void>((r) => unixServer.close(() => r()));
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('does not reuse a socket released while paused or with unsent bytes', async () => {
      const paused = await connectOnce();
      bindSocket(paused, quietUser);
      paused.pause();
      releaseSocket(paused, true);
      await closed(paused);
      const corked = await connectOnce();
      expect(corked).not.toBe(paused);
      bindSocket(corked, quietUser);
      corked.cork();
      corked.write('x');
      releaseSocket(corked, true);
      await closed(corked);
      const next = await connectOnce();
      expect(next).not.toBe(corked);
      await useAndRelease(next, true);
    });

    it('keeps every answer with its own request across reused sockets and faults', async () => {
      const sockets = new Set<Socket>();
      const { port, proxy, close } = await startFront(connector, (s) => sockets.add(s));
      try {
        let exchanges = 0;
        for (let round = 0; round < 20; round++) {
          const batch = [];
          for (let i = 0; i < 8; i++) {
            const id = `${round}-${i}`;
            batch.push(get(port, `/id/${id}`).then((g) => ({ id, g })));
          }
          const big = get(port, '/big');
          const reset = get(port, '/reset');
          exchanges += 10;
          for (const { id, g } of await Promise.all(batch)) {
            expect(g.status).toBe(200);
            expect(g.body.toString()).toBe(id);
            expect(g.cut).toBe(false);
          }
          const b = await big;
          expect(b.body.length).toBe(1024 * 1024);
          expect(b.cut).toBe(false);
          const r = await reset;
          // Collected whole (Content-Length 100 is small), so a reset mid-body is a clean 502.
          expect(r.status).toBe(502);
        }
        // Reuse happened: far fewer Socket objects than exchanges.
        expect(sockets.size).toBeLessThan(exchanges / 2);
        expect(proxy.inFlight).toBe(0);
      } finally {
        await close();
      }
    });
  });
});

describe("engine's connector: an idle socket holds no read buffer", () => {
  it('keeps a socket whose body ended at its Content-Length, not one whose body ended with the connection', async () => {
    const seen: Socket[] = [];
    const { port, close } = await startFront(lendingConnector, (s) => seen.push(s));
    const settled = async (s: Socket) => {
      if (!s.closed) await closed(s);
    };
    try {
      expect((await get(port, '/id/a')).body.toString()).toBe('a');
      await settled(seen[0]!);
      expect((await get(port, '/id/b')).body.toString()).toBe('b');
      expect(seen[1]).toBe(seen[0]);
      await settled(seen[1]!);
      // 1 MiB without Content-Length: the body ends with the connection.
      const big = await get(port, '/big');
      expect(big.body.length).toBe(1024 * 1024);
      expect(seen[2]).toBe(seen[0]);
      await settled(seen[2]!);
      expect((await get(port, '/id/c')).body.toString()).toBe('c');
      expect(seen[3]).not.toBe(seen[2]);
    } finally {
      await close();
    }
  });
});
