// The Node FastCGI responder (src/fastcgi/server.ts), driven by the test client built from our
// own encoder and decoder (test/helpers/fastcgi-client.ts): KEEP_CONN, large bodies both ways,
// GET_VALUES, CANT_MPX_CONN, UNKNOWN_ROLE, ABORT_REQUEST, malformed input and option checks.
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import type { AddressInfo, Server, Socket } from 'node:net';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { pseudoRandomBytes, sha256 } from '../../../test/helpers/bytes.js';
import {
  FastcgiConnection,
  fastcgiRequest,
  fcgiParams,
  parseRecords,
} from '../../../test/helpers/fastcgi-client.js';
import { makeTempDir, removeTempDir } from '../../../test/helpers/tmp.js';
import type { ScgiError } from '../src/errors.js';
import { ProtocolStatus, RecordType, Role } from '../src/fastcgi/constants.js';
import { encodeAbortRequest, encodeBeginRequest, encodeRequest } from '../src/fastcgi/encoder.js';
import { decodeEndRequestBody, encodePairs, encodeRecord } from '../src/fastcgi/records.js';
import {
  createFastcgiServer,
  type FastcgiHandler,
  type FastcgiServerOptions,
} from '../src/fastcgi/server.js';

const servers: Server[] = [];
const dirs: string[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  // A failed test may leave a connection open; server.close() would wait for it.
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) {
    s.close();
    await once(s, 'close').catch(() => {});
  }
  for (const d of dirs.splice(0)) removeTempDir(d);
});

/** Reads the whole request body. */
const readAll = async (req: AsyncIterable<Buffer>) => {
  const parts: Buffer[] = [];
  for await (const c of req) parts.push(c);
  return Buffer.concat(parts);
};

/** The app the tests talk to, by PATH_INFO. */
const app: FastcgiHandler = (req, res) => {
  const path = req.env.PATH_INFO ?? '/';
  if (path === '/sha256') {
    void readAll(req).then((body) => {
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ length: body.length, sha256: sha256(body) }));
    });
  } else if (path === '/echo') {
    res.setHeader('Content-Type', 'application/octet-stream');
    req.pipe(res);
  } else if (path === '/env') {
    res.writeHead(200, { 'Content-Type': 'application/json', 'X-Keep': String(req.keepConn) });
    res.end(JSON.stringify({ ...req.env, _id: req.requestId, _len: req.contentLength }));
  } else if (path === '/big') {
    const n = Number(req.env.QUERY_STRING);
    res.writeHead(201, 'Made');
    res.end(pseudoRandomBytes(n, n));
  } else {
    res.writeHead(404);
    res.end('no such route');
  }
};

interface Started {
  server: Server;
  address: string;
  connections: Socket[];
  errors: Error[];
}

async function start(
  handler: FastcgiHandler = app,
  options: FastcgiServerOptions = {},
  where: 'unix' | 'tcp' = 'unix',
): Promise<Started> {
  const errors: Error[] = [];
  const server = createFastcgiServer(handler, { onError: (e) => errors.push(e), ...options });
  servers.push(server);
  const connections: Socket[] = [];
  server.on('connection', (s) => {
    connections.push(s);
    sockets.push(s);
  });
  let address: string;
  if (where === 'unix') {
    const dir = makeTempDir('fcgi-');
    dirs.push(dir);
    const path = join(dir, 's.sock');
    server.listen(path);
    await once(server, 'listening');
    address = `unix:${path}`;
  } else {
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  }
  return { server, address, connections, errors };
}

/** Waits (bounded) until `check` holds. */
async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('createFastcgiServer', () => {
  it('serves several requests one after another on one KEEP_CONN connection', async () => {
    const s = await start();
    const conn = await FastcgiConnection.connect(s.address);
    for (let i = 1; i <= 5; i++) {
      const body = pseudoRandomBytes(i, i * 1000);
      const reply = await conn.request(fcgiParams('/sha256', body.length), body, {
        keepConn: true,
        requestId: i,
      });
      expect(reply.status).toBe('200 OK');
      expect(reply.protocolStatus).toBe(ProtocolStatus.REQUEST_COMPLETE);
      expect(reply.appStatus).toBe(0);
      expect(reply.reusable).toBe(true);
      expect(JSON.parse(reply.body.toString())).toEqual({
        length: body.length,
        sha256: sha256(body),
      });
    }
    const env = await conn.request(fcgiParams('/env?x=1'), undefined, {
      keepConn: true,
      requestId: 9,
    });
    expect(JSON.parse(env.body.toString())).toMatchObject({ QUERY_STRING: 'x=1', _id: 9, _len: 0 });
    expect(env.headers).toContainEqual(['X-Keep', 'true']);
    expect(s.connections).toHaveLength(1);
    expect(conn.peerEnded).toBe(false);
    conn.close();
  });

  it('closes the connection after END_REQUEST without KEEP_CONN', async () => {
    const s = await start();
    const conn = await FastcgiConnection.connect(s.address);
    const reply = await conn.request(fcgiParams('/env'), undefined, { keepConn: false });
    expect(reply.status).toBe('200 OK');
    await conn.closed;
    expect(conn.peerEnded).toBe(true);
    await until(() => s.connections.every((c) => c.destroyed), 'the server socket to close');
  });

  it('passes 8 MiB bodies both ways intact (sha256), over TCP and with unpadded records', async () => {
    const s = await start(app, {}, 'tcp');
    const body = pseudoRandomBytes(7, 8 * 1024 * 1024 + 13);
    const echo = await fastcgiRequest(s.address, fcgiParams('/echo', body.length), body, {
      chunkSize: 100_000,
      pad: false,
    });
    expect(echo.body.length).toBe(body.length);
    expect(sha256(echo.body)).toBe(sha256(body));
    const big = await fastcgiRequest(s.address, fcgiParams('/big?3000001'));
    expect(big.status).toBe('201 Made');
    expect(sha256(big.body)).toBe(sha256(pseudoRandomBytes(3000001, 3000001)));
  });

  it('stops reading STDIN while the app does not read the body (backpressure)', async () => {
    let resume: () => void = () => {};
    const gate = new Promise<void>((r) => {
      resume = r;
    });
    let request: Readable | null = null;
    const s = await start((req, res) => {
      request = req;
      void gate.then(async () => res.end(sha256(await readAll(req))));
    });
    const body = pseudoRandomBytes(3, 32 * 1024 * 1024);
    const conn = await FastcgiConnection.connect(s.address);
    const reply = conn.request(fcgiParams('/', body.length), body);
    // The server stops reading once the body stream is full, and stays stopped.
    await until(() => s.connections[0]?.isPaused() === true, 'the server to pause its socket');
    let last = -1;
    let stable = 0;
    await until(() => {
      const read = s.connections[0]!.bytesRead;
      stable = read === last ? stable + 1 : 0;
      last = read;
      return stable >= 5;
    }, 'the server to stop reading');
    expect(last).toBeLessThan(body.length / 4);
    expect(request!.readableLength).toBeLessThanOrEqual(1024 * 1024);
    resume();
    const r = await reply;
    expect(r.body.toString()).toBe(sha256(body));
    conn.close();
  });

  it('answers GET_VALUES with FCGI_MAX_CONNS, FCGI_MAX_REQS and FCGI_MPXS_CONNS=0 only', async () => {
    const s = await start(app, { maxConnections: 7 });
    const conn = await FastcgiConnection.connect(s.address);
    const values = await conn.getValues([
      'FCGI_MAX_CONNS',
      'FCGI_MPXS_CONNS',
      'NOPE',
      'FCGI_MAX_REQS',
    ]);
    expect(Object.fromEntries(values)).toEqual({
      FCGI_MAX_CONNS: '7',
      FCGI_MAX_REQS: '7',
      FCGI_MPXS_CONNS: '0',
    });
    // The connection still serves a request afterwards.
    const reply = await conn.request(fcgiParams('/env'), undefined, { keepConn: true });
    expect(reply.status).toBe('200 OK');
    // An unknown management type gets UNKNOWN_TYPE naming it.
    conn.socket.write(encodeRecord(42, 0, Buffer.alloc(0)));
    const raw = await conn.readRaw((b) => parseRecords(b).records.length > 0);
    const [rec] = parseRecords(raw).records;
    expect([rec!.type, rec!.requestId, rec!.content[0]]).toEqual([RecordType.UNKNOWN_TYPE, 0, 42]);
    conn.close();
  });

  it('answers a second BEGIN_REQUEST during a request with CANT_MPX_CONN and finishes the first', async () => {
    let release: (() => void) | null = null;
    const s = await start((req, res) => {
      release = () => res.end('first done');
      req.resume();
    });
    const conn = await FastcgiConnection.connect(s.address);
    conn.socket.write(encodeRequest(1, fcgiParams('/'), { keepConn: true, body: Buffer.alloc(0) }));
    await until(() => release !== null, 'the first request to reach the app');
    conn.socket.write(encodeRequest(2, fcgiParams('/'), { keepConn: true, body: Buffer.alloc(0) }));
    const first = await conn.readRaw((b) => parseRecords(b).records.length > 0);
    const [rejected] = parseRecords(first).records;
    expect([rejected!.type, rejected!.requestId]).toEqual([RecordType.END_REQUEST, 2]);
    expect(decodeEndRequestBody(rejected!.content).protocolStatus).toBe(
      ProtocolStatus.CANT_MPX_CONN,
    );
    release!();
    const rest = await conn.readRaw((b) =>
      parseRecords(b).records.some((r) => r.type === RecordType.END_REQUEST),
    );
    const records = parseRecords(rest).records;
    expect(records.every((r) => r.requestId === 1)).toBe(true);
    const stdout = Buffer.concat(
      records.filter((r) => r.type === RecordType.STDOUT).map((r) => r.content),
    );
    expect(stdout.toString()).toMatch(/first done$/);
    expect(decodeEndRequestBody(records.at(-1)!.content).protocolStatus).toBe(0);
    conn.close();
  });

  it.each([
    false,
    true,
  ])('answers a non-RESPONDER role with UNKNOWN_ROLE (keepConn %s)', async (keepConn) => {
    const s = await start();
    const conn = await FastcgiConnection.connect(s.address);
    const reply = await conn.request(fcgiParams('/env'), undefined, {
      role: Role.AUTHORIZER,
      keepConn,
    });
    expect(reply.protocolStatus).toBe(ProtocolStatus.UNKNOWN_ROLE);
    expect(reply.stdout.length).toBe(0);
    if (keepConn) {
      const next = await conn.request(fcgiParams('/env'), undefined, { keepConn });
      expect(next.status).toBe('200 OK');
    } else {
      await conn.closed;
    }
    conn.close();
  });

  it('ABORT_REQUEST ends the request: the body stream fails, END_REQUEST follows', async () => {
    const seen: string[] = [];
    let started = false;
    const s = await start((req, res) => {
      if (req.env.PATH_INFO === '/env') return app(req, res);
      started = true;
      req.on('error', (e) => seen.push((e as ScgiError).code));
      res.on('close', () => seen.push('res closed'));
      res.write('partial');
    });
    const conn = await FastcgiConnection.connect(s.address);
    conn.socket.write(encodeRequest(5, fcgiParams('/', 10), { keepConn: true }));
    await until(() => started, 'the request to reach the app');
    conn.socket.write(encodeAbortRequest(5));
    const raw = await conn.readRaw((b) =>
      parseRecords(b).records.some((r) => r.type === RecordType.END_REQUEST),
    );
    const end = parseRecords(raw).records.at(-1)!;
    expect([end.type, end.requestId]).toEqual([RecordType.END_REQUEST, 5]);
    expect(decodeEndRequestBody(end.content)).toEqual({ appStatus: 1, protocolStatus: 0 });
    await until(() => seen.length === 2, 'the request and response to end');
    expect(seen.sort()).toEqual(['SCGI_ERR_REQUEST_ABORTED', 'res closed']);
    // KEEP_CONN: the connection serves the next request.
    const next = await conn.request(fcgiParams('/env'), undefined, {
      keepConn: true,
      requestId: 6,
    });
    expect(next.status).toBe('200 OK');
    conn.close();
  });

  it('decodes a PARAMS stream whose pairs span records, and refuses one over maxParamsSize', async () => {
    const s = await start(app, { maxParamsSize: 300_000 });
    const big = 'v'.repeat(200_000);
    const reply = await fastcgiRequest(s.address, fcgiParams('/env', 0, { HTTP_X_BIG: big }));
    expect(JSON.parse(reply.body.toString()).HTTP_X_BIG).toBe(big);
    const small = await start(app, { maxParamsSize: 1000 });
    await expect(
      fastcgiRequest(small.address, fcgiParams('/env', 0, { HTTP_X_BIG: 'x'.repeat(2000) })),
    ).rejects.toMatchObject({ code: 'SCGI_ERR_FASTCGI_TRUNCATED' });
    expect(small.errors.map((e) => (e as ScgiError).code)).toEqual(['SCGI_ERR_FASTCGI_PAIRS']);
  });

  const malformed: [string, Buffer, string][] = [
    ['a bad version', Buffer.from([2, 1, 0, 1, 0, 8, 0, 0]), 'SCGI_ERR_FASTCGI_VERSION'],
    ['an unknown type', Buffer.from([1, 99, 0, 1, 0, 0, 0, 0]), 'SCGI_ERR_FASTCGI_RECORD'],
    [
      'STDOUT from the web server',
      Buffer.from([1, 6, 0, 1, 0, 0, 0, 0]),
      'SCGI_ERR_FASTCGI_RECORD',
    ],
    [
      'a BEGIN_REQUEST of 4 bytes',
      Buffer.from([1, 1, 0, 1, 0, 4, 0, 0, 0, 1, 0, 0]),
      'SCGI_ERR_FASTCGI_RECORD',
    ],
    [
      'STDIN before the PARAMS end',
      Buffer.concat([encodeBeginRequest(1), encodeRecord(RecordType.STDIN, 1, Buffer.from('x'))]),
      'SCGI_ERR_FASTCGI_RECORD',
    ],
    [
      'bad pairs',
      Buffer.concat([
        encodeBeginRequest(1),
        encodeRecord(RecordType.PARAMS, 1, Buffer.from([5, 5, 65])),
        encodeRecord(RecordType.PARAMS, 1),
      ]),
      'SCGI_ERR_FASTCGI_PAIRS',
    ],
    ['a cut header then EOF', Buffer.from([1, 1, 0]), 'SCGI_ERR_FASTCGI_TRUNCATED'],
  ];

  it.each(
    malformed,
  )('closes the connection on %s, reporting a typed error', async (_n, bytes, code) => {
    const s = await start();
    const conn = await FastcgiConnection.connect(s.address);
    conn.socket.end(bytes);
    await conn.closed;
    expect(s.errors.map((e) => (e as ScgiError).code)).toEqual([code]);
    await until(() => s.connections.every((c) => c.destroyed), 'the server socket to close');
    expect(await new Promise((r) => s.server.getConnections((_e, n) => r(n)))).toBe(0);
  });

  it('ignores records of request ids that are not active (spec §3.3)', async () => {
    const s = await start();
    const conn = await FastcgiConnection.connect(s.address);
    conn.socket.write(
      Buffer.concat([
        encodeRecord(RecordType.STDIN, 77, Buffer.from('stray')),
        encodeRecord(RecordType.PARAMS, 78, encodePairs({ A: 'b' })),
      ]),
    );
    const reply = await conn.request(fcgiParams('/env'), undefined, { keepConn: true });
    expect(reply.status).toBe('200 OK');
    expect(s.errors).toEqual([]);
    conn.close();
  });

  it('leaks no descriptor across kept, closed, refused and malformed connections', async () => {
    const s = await start();
    const fds = () => readdirSync('/proc/self/fd').length;
    // One warm-up round, so lazily opened descriptors (libuv, the temp dir) are counted before.
    await fastcgiRequest(s.address, fcgiParams('/env'));
    const before = fds();
    for (let i = 0; i < 10; i++) {
      const conn = await FastcgiConnection.connect(s.address);
      for (let j = 1; j <= 3; j++) {
        await conn.request(fcgiParams('/env'), undefined, { keepConn: true, requestId: j });
      }
      conn.close();
      await fastcgiRequest(s.address, fcgiParams('/sha256', 3), Buffer.from('abc'));
      await fastcgiRequest(s.address, fcgiParams('/env'), undefined, { role: Role.FILTER });
      const bad = await FastcgiConnection.connect(s.address);
      bad.socket.end(Buffer.from([9, 9, 9, 9, 9, 9, 9, 9]));
      await bad.closed;
    }
    await until(() => s.connections.every((c) => c.destroyed), 'every server socket to close');
    await until(() => fds() <= before, `descriptors back to ${before} (now ${fds()})`);
    expect(s.errors.map((e) => (e as ScgiError).code)).toEqual(
      Array(10).fill('SCGI_ERR_FASTCGI_VERSION'),
    );
  });

  it('validates options up front and names the closest known option', () => {
    const code = (fn: () => unknown) => {
      try {
        fn();
      } catch (err) {
        return `${(err as ScgiError).code}: ${(err as Error).message}`;
      }
      return 'none';
    };
    expect(code(() => createFastcgiServer(app, { maxParamSize: 10 } as never))).toBe(
      'SCGI_ERR_INVALID_OPTION: Invalid option maxParamSize: is not a known option; did you mean "maxParamsSize"?',
    );
    expect(code(() => createFastcgiServer(app, { maxParamsSize: 0 }))).toMatch(
      /maxParamsSize: must be an integer >= 1/,
    );
    expect(code(() => createFastcgiServer(app, { maxConnections: -1 }))).toMatch(/maxConnections/);
    expect(code(() => createFastcgiServer(app, { onError: 1 } as never))).toMatch(/onError/);
    expect(code(() => createFastcgiServer(null as never))).toMatch(/handler/);
    expect(code(() => createFastcgiServer(app, { zzzzzzzzzzzz: 1 } as never))).toBe(
      'SCGI_ERR_INVALID_OPTION: Invalid option zzzzzzzzzzzz: is not a known option (the options are maxParamsSize, maxConnections, onError, serverOptions)',
    );
  });
});
