// `Expect: 100-continue` through both adapters: the client waits for the interim 100 before it
// sends the body, and the body then reaches the app whole (the proxy does not forward Expect).
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:net';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNodeApp } from '../examples/node-app.mjs';
import { type Front, type FrontKind, startFront } from './helpers/fronts.js';

let dir: string;
let backend: Server;
let upstream: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'scgi-expect-'));
  upstream = `unix:${join(dir, 'app.sock')}`;
  backend = (await startNodeApp(upstream)) as Server;
});
afterAll(async () => {
  await new Promise((r) => backend.close(r));
  rmSync(dir, { recursive: true, force: true });
});

/** Sends the head, waits for `100 Continue`, then the body; returns the interim and final text. */
function expectContinue(
  url: string,
  path: string,
  body: Buffer,
): Promise<{ interim: string; final: string }> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1');
    let text = '';
    let interim = '';
    let sentBody = false;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer; got ${JSON.stringify(text)}`));
    }, 10_000);
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      if (!sentBody && text.includes('\r\n\r\n')) {
        interim = text;
        text = '';
        sentBody = true;
        socket.write(body);
        return;
      }
      const end = text.indexOf('\r\n\r\n');
      const m = /content-length: (\d+)/i.exec(text);
      if (end !== -1 && m !== null && text.length >= end + 4 + Number(m[1])) {
        clearTimeout(timer);
        socket.destroy();
        resolve({ interim, final: text });
      }
    });
    socket.on('error', reject);
    socket.write(
      `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n` +
        `Content-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`,
    );
  });
}

describe.each(['fastify', 'express'] as FrontKind[])('Expect: 100-continue through %s', (kind) => {
  let front: Front;
  beforeAll(async () => {
    front = await startFront(kind, upstream, '/app');
  });
  afterAll(() => front.close());

  it('answers 100 Continue, then forwards the whole body without HTTP_EXPECT', async () => {
    const body = Buffer.alloc(300_000, 7);
    const { interim, final } = await expectContinue(front.url, '/app/sha256', body);
    expect(interim.startsWith('HTTP/1.1 100 Continue\r\n')).toBe(true);
    expect(final.startsWith('HTTP/1.1 200 OK\r\n')).toBe(true);
    const json = JSON.parse(final.slice(final.indexOf('\r\n\r\n') + 4));
    expect(json).toEqual({
      length: body.length,
      sha256: createHash('sha256').update(body).digest('hex'),
    });
    const env = await expectContinue(front.url, '/app/env', Buffer.from('x'));
    const vars = JSON.parse(env.final.slice(env.final.indexOf('\r\n\r\n') + 4));
    expect(vars.CONTENT_LENGTH).toBe('1');
    expect(vars.HTTP_EXPECT).toBeUndefined();
  });
});
