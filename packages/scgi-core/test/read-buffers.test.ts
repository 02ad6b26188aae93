// The engine's sockets read into buffers the exchange picks: the head into a scratch buffer that
// is only lent, a small body straight into its final buffer, a streamed body into buffers that
// are used again once the response they went into has written them out. A buffer used again too
// early would put later bytes into an earlier chunk, so every test here checks the bytes
// themselves (SHA-256 of a pseudo-random body), against every kind of consumer: a plain pipe, a
// slow client, a consumer that keeps every chunk, a 'data' tap beside the pipe, and a patched
// `res.write` that holds chunks as compression middleware does.
import { createServer, request as httpRequest, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { count64KiBAllocations, pseudoRandomBytes, sha256 } from '../../../test/helpers/bytes.js';
import { createScgiServer, ScgiProxy } from '../src/index.js';
import { get } from './http-client.js';

/** Writes `data` in pieces of varied sizes (1 byte to 100 KiB), yielding to the loop at times. */
async function writeInPieces(socket: Socket, data: Buffer, seed: number): Promise<void> {
  const sizes = [1, 7, 300, 4096, 65_536, 100_000, 65_535, 17, 65_537, 30_000];
  let at = 0;
  for (let i = seed; at < data.length; i++) {
    const n = Math.min(sizes[i % sizes.length]!, data.length - at);
    const more = socket.write(data.subarray(at, at + n));
    at += n;
    if (!more) await new Promise((r) => socket.once('drain', r));
    else if (i % 3 === 0) await new Promise((r) => setImmediate(r));
    if (socket.destroyed) return;
  }
}

let backend: NetServer;
let upstream: string;

// `/stream/N/S`: N bytes of seed S, no Content-Length. `/cl/N/S`: the same with Content-Length.
// `/extra/N/S`: Content-Length N, then 100 bytes more that must be dropped. `/split/N/S`: the
// head itself arrives a few bytes at a time.
beforeAll(async () => {
  // Written straight to the socket: the test decides how the bytes are cut into pieces.
  backend = createScgiServer((req) => {
    const socket = req.socket;
    const [, kind, n, s] = (req.env.PATH_INFO ?? '').split('/');
    const body = pseudoRandomBytes(Number(s), Number(n));
    void (async () => {
      if (kind === 'split') {
        const h = Buffer.from(`Status: 200 OK\r\nContent-Length: ${body.length}\r\nX-A: b\r\n\r\n`);
        for (let i = 0; i < h.length; i += 5) {
          socket.write(h.subarray(i, i + 5));
          await new Promise((r) => setImmediate(r));
        }
      } else {
        const cl = kind === 'stream' ? '' : `Content-Length: ${body.length}\r\n`;
        socket.write(`Status: 200 OK\r\nContent-Type: application/octet-stream\r\n${cl}\r\n`);
      }
      await writeInPieces(socket, body, Number(s));
      if (kind === 'extra') socket.write(Buffer.alloc(100, 0x78));
      socket.end();
    })();
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  upstream = `127.0.0.1:${(backend.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => backend.close(() => r())));

type Consumer = 'pipe' | 'keep' | 'tap' | 'held-write';

/** A front whose way of consuming the body is picked by the `x-consumer` request header. */
async function startFront(
  proxy: ScgiProxy,
): Promise<{ port: number; server: Server; kept: Map<string, string> }> {
  // What the consumers that keep chunks saw, by request path.
  const kept = new Map<string, string>();
  const server = createServer((req, res) => {
    const consumer = (req.headers['x-consumer'] ?? 'pipe') as Consumer;
    proxy.request(req, { res }).then(
      async (r) => {
        res.writeHead(r.statusCode, r.headers);
        if (r.bodyBuffer !== null) {
          res.end(r.bodyBuffer);
          return;
        }
        r.body.on('error', () => res.destroy());
        if (consumer === 'keep') {
          // Every chunk is kept until the end, while later reads go on.
          const chunks = await r.body.toArray();
          await sleep(5);
          res.end(Buffer.concat(chunks));
        } else if (consumer === 'tap') {
          const seen: Buffer[] = [];
          r.body.on('data', (c: Buffer) => seen.push(c));
          r.body.on('end', () => kept.set(req.url ?? '', sha256(Buffer.concat(seen))));
          r.body.pipe(res);
        } else if (consumer === 'held-write') {
          holdWrites(res);
          r.body.pipe(res);
        } else {
          r.body.pipe(res);
        }
      },
      (err: Error & { statusCode: number }) => {
        res.writeHead(err.statusCode);
        res.end();
      },
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, server, kept };
}

/** A `res.write` that holds every chunk and sends them all at the end (as a compressor might). */
function holdWrites(res: ServerResponse): void {
  const held: Buffer[] = [];
  const write = res.write;
  const end = res.end;
  res.write = ((chunk: Buffer) => {
    held.push(chunk);
    return true;
  }) as typeof res.write;
  res.end = ((...args: unknown[]) => {
    setTimeout(() => {
      for (const c of held) write.call(res, c);
      (end as (...a: unknown[]) => void).apply(res, args);
    }, 5);
    return res;
  }) as typeof res.end;
}

/**
 * GET with a header. A `slow` client first lets the kernel buffers fill (loopback ones hold
 * megabytes), then reads with pauses: the proxy's writes queue up behind it.
 */
function fetchBody(
  port: number,
  path: string,
  consumer: Consumer,
  slow = false,
): Promise<{ status: number; body: Buffer; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { port, host: '127.0.0.1', path, headers: { 'x-consumer': consumer } },
      async (res) => {
        const chunks: Buffer[] = [];
        try {
          if (slow) {
            res.pause();
            await sleep(300);
          }
          let i = 0;
          for await (const c of res) {
            chunks.push(c as Buffer);
            if (slow && ++i % 8 === 0) await sleep(2);
          }
        } catch {}
        resolve({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks),
          complete: res.complete,
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('bytes read into lent and reused buffers stay where they belong', () => {
  let proxy: ScgiProxy;
  let front: Awaited<ReturnType<typeof startFront>>;
  beforeAll(async () => {
    proxy = new ScgiProxy({ upstream });
    front = await startFront(proxy);
  });
  afterAll(async () => {
    await proxy.close(0);
    front.server.closeAllConnections();
    await new Promise<void>((r) => front.server.close(() => r()));
  });

  const cases: Array<[Consumer, boolean]> = [
    ['pipe', false],
    ['pipe', true],
    ['keep', false],
    ['tap', false],
    ['held-write', false],
  ];
  it.each(
    cases,
  )('streamed bodies, consumer %s (slow client: %s), 6 at once', async (consumer, slow) => {
    const jobs = [];
    for (let i = 0; i < 6; i++) {
      const seed = 1000 + i * 17 + (slow ? 1 : 0) + consumer.length * 101;
      const n = (slow ? 8_000_000 : 1_500_000) + i * 77_777;
      const path = `/${i % 2 === 0 ? 'stream' : 'cl'}/${n}/${seed}`;
      jobs.push(
        fetchBody(front.port, path, consumer, slow).then((got) => ({ got, n, seed, path })),
      );
    }
    for (const { got, n, seed, path } of await Promise.all(jobs)) {
      expect(got.status).toBe(200);
      expect(got.complete).toBe(true);
      expect(got.body.length).toBe(n);
      const want = sha256(pseudoRandomBytes(seed, n));
      expect(sha256(got.body)).toBe(want);
      if (consumer === 'tap') expect(front.kept.get(path)).toBe(want);
    }
    expect(proxy.inFlight).toBe(0);
  });

  it('small bodies read straight into their final buffer, the head in pieces or not', async () => {
    const sizes = [0, 1, 10, 4095, 4096, 4097, 30_000, 65_535, 65_536];
    const jobs = sizes.flatMap((n, i) =>
      ['cl', 'split', 'extra'].map((kind) =>
        get(front.port, `/${kind}/${n}/${7 + i}`).then((g) => ({ g, n, seed: 7 + i, kind })),
      ),
    );
    for (const { g, n, seed, kind } of await Promise.all(jobs)) {
      expect(g.status, `${kind} ${n}`).toBe(200);
      expect(g.cut).toBe(false);
      expect(g.headers['content-length']).toBe(String(n));
      expect(sha256(g.body), `${kind} ${n}`).toBe(sha256(pseudoRandomBytes(seed, n)));
      if (kind === 'split') expect(g.headers['x-a']).toBe('b');
    }
  });

  it('a client that keeps up gets a long body through a few reused buffers', async () => {
    // Each new read buffer of a streamed body is one Buffer.allocUnsafeSlow(64 KiB); without
    // reuse a 16 MiB body makes at least 256 of them.
    const n = 16 * 1024 * 1024;
    let got: Awaited<ReturnType<typeof fetchBody>> | undefined;
    const made = await count64KiBAllocations(async () => {
      got = await fetchBody(front.port, `/cl/${n}/99`, 'pipe');
    });
    expect(got!.body.length).toBe(n);
    expect(sha256(got!.body)).toBe(sha256(pseudoRandomBytes(99, n)));
    expect(made).toBeGreaterThan(0);
    expect(made).toBeLessThan(128);
  });
});
