// The failure policy lives in the error registry and is read by engine/failure-policy.ts alone: which
// failures charge a backend, which may move to another backend, and that local failures (no
// descriptor left, an unreadable spool file) never charge one.
import { spawnSync } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { chargesBackend, mayRetryElsewhere, mayRetryLater } from '../src/engine/failure-policy.js';
import { pumpBody } from '../src/http/request-body.js';
import {
  ConnectError,
  FastcgiOverloadedError,
  HeadersTimeoutError,
  listErrorCodes,
  NoSocketError,
  type ScgiError,
  SpoolError,
  UpstreamResetError,
} from '../src/index.js';

/** nginx's `proxy_next_upstream error timeout` and `max_fails`: the backend's own failures. */
const CHARGED = [
  'SCGI_ERR_CONNECT',
  'SCGI_ERR_CONNECT_TIMEOUT',
  'SCGI_ERR_HEADERS_TIMEOUT',
  'SCGI_ERR_IDLE_TIMEOUT',
  'SCGI_ERR_UPSTREAM_CLOSED',
  'SCGI_ERR_UPSTREAM_RESET',
];

describe('failure policy in the registry', () => {
  it('charges exactly the backend failures before its answer', () => {
    const charged = listErrorCodes()
      .filter((e) => e.chargesBackend)
      .map((e) => e.code)
      .sort();
    expect(charged).toEqual([...CHARGED].sort());
  });

  it('moves a failed connect to another backend always, a reset only when resendable, a refusal only when unanswered', () => {
    const connect = new ConnectError() as ScgiError;
    expect(mayRetryElsewhere(connect, false, false)).toBe(true);
    const reset = new UpstreamResetError('ECONNRESET') as ScgiError;
    expect(mayRetryElsewhere(reset, true, false)).toBe(true);
    expect(mayRetryElsewhere(reset, false, false)).toBe(false);
    // Part of a head had arrived: nothing reached the client, and the request is idempotent.
    expect(mayRetryElsewhere(reset, true, true)).toBe(true);
    const overloaded = new FastcgiOverloadedError() as ScgiError;
    expect(mayRetryElsewhere(overloaded, false, false, true)).toBe(true);
    expect(mayRetryElsewhere(overloaded, false, true, true)).toBe(false);
    expect(mayRetryElsewhere(overloaded, false, false, false)).toBe(false);
    const timeout = new HeadersTimeoutError(5) as ScgiError;
    expect(mayRetryElsewhere(timeout, true, false)).toBe(true);
    expect(chargesBackend(timeout)).toBe(true);
  });

  it('waits and tries the same backend again only after what a restart looks like', () => {
    const later = listErrorCodes()
      .filter((e) => e.retryLater === true)
      .map((e) => e.code)
      .sort();
    expect(later).toEqual([
      'SCGI_ERR_CONNECT',
      'SCGI_ERR_UPSTREAM_CLOSED',
      'SCGI_ERR_UPSTREAM_RESET',
    ]);
    const reset = new UpstreamResetError('ECONNRESET') as ScgiError;
    expect(mayRetryLater(reset, true, false)).toBe(true);
    expect(mayRetryLater(reset, false, false)).toBe(false);
    expect(mayRetryLater(reset, true, true)).toBe(false);
    expect(mayRetryLater(new HeadersTimeoutError(5) as ScgiError, true, false)).toBe(false);
  });

  it('never charges nor retries a local failure', () => {
    for (const err of [new NoSocketError('EMFILE'), new SpoolError('EIO')] as ScgiError[]) {
      expect(chargesBackend(err)).toBe(false);
      expect(mayRetryElsewhere(err, true, false)).toBe(false);
    }
  });
});

describe('local failures', () => {
  it('an unreadable spool file is SCGI_ERR_SPOOL, not a backend reset', async () => {
    const server = createServer((s) => s.resume());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as { port: number };
    const { connect } = await import('node:net');
    const socket: Socket = connect(port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    socket.cork();
    const source = new PassThrough();
    const failed = new Promise<ScgiError>((resolve) => {
      pumpBody(socket, source, 100, false, null, { fail: resolve, sent: () => {} });
    });
    source.write(Buffer.alloc(10));
    source.destroy(Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' }));
    const err = await failed;
    expect(err.code).toBe('SCGI_ERR_SPOOL');
    expect(chargesBackend(err)).toBe(false);
    socket.destroy();
    await new Promise((r) => server.close(r));
  });

  it('no descriptor left for a socket is SCGI_ERR_NO_SOCKET (503) and does not mark the backend down', () => {
    // A child process with a small descriptor limit fills it, then asks the proxy: the connect
    // fails with EMFILE here, which says nothing about the backends.
    const script = fileURLToPath(new URL('./fixtures/no-socket.mjs', import.meta.url));
    const out = spawnSync('prlimit', ['--nofile=64', process.execPath, script], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(out.stderr).toBe('');
    const result = JSON.parse(out.stdout) as {
      code: string;
      status: number;
      failed: number[];
      states: string[];
    };
    expect(result.code).toBe('SCGI_ERR_NO_SOCKET');
    expect(result.status).toBe(503);
    expect(result.failed).toEqual([0, 0]);
    expect(result.states).toEqual(['up', 'up']);
  });
});
