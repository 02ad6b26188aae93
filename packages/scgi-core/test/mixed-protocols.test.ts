// A pool whose members speak different wire protocols (issue 14: "pool entries may mix
// protocols"): one request head is encoded per protocol, each backend gets its own framing, and a
// member of another protocol that joins later (setUpstream) gets its head encoded when picked.
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createFastcgiServer, createScgiServer, ScgiProxy } from '../src/index.js';
import { get, serveProxy } from './http-client.js';

const dir = mkdtempSync(join(tmpdir(), 'scgi-mix-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A backend answering `<name> <method> <path> <query>`, so the client sees who served it. */
async function backend(kind: 'scgi' | 'fastcgi', name: string): Promise<string> {
  const path = join(dir, `${name}.sock`);
  const answer = (env: Record<string, string>) =>
    `${name} ${env.REQUEST_METHOD} ${env.PATH_INFO} ${env.QUERY_STRING}`;
  const server: NetServer =
    kind === 'scgi'
      ? createScgiServer((req, res) => {
          req.resume();
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end(answer(req.env as Record<string, string>));
        })
      : createFastcgiServer((req, res) => {
          req.resume();
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end(answer(req.env as Record<string, string>));
        });
  await new Promise<void>((r) => server.listen(path, r));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return `${kind}://unix:${path}`;
}

async function front(proxy: ScgiProxy): Promise<number> {
  const served = await serveProxy(proxy);
  cleanups.push(() => served.close());
  return served.port;
}

describe('a pool that mixes SCGI and FastCGI members', () => {
  it('round-robin between an SCGI and a FastCGI backend: each answers its share, exactly', async () => {
    const upstream = [await backend('scgi', 's1'), await backend('fastcgi', 'f1')];
    const port = await front(new ScgiProxy({ upstream }));
    const seen: string[] = [];
    for (let i = 0; i < 6; i++) {
      const got = await get(port, `/p${i}?q=${i}`);
      expect(got.status).toBe(200);
      const [who, ...rest] = got.body.toString().split(' ');
      expect(rest.join(' ')).toBe(`GET /p${i} q=${i}`);
      seen.push(who!);
    }
    expect(seen.filter((w) => w === 's1')).toHaveLength(3);
    expect(seen.filter((w) => w === 'f1')).toHaveLength(3);
  });

  it('a FastCGI member that joins an SCGI pool (setUpstream) is sent FastCGI', async () => {
    const scgi = await backend('scgi', 's2');
    // Started before the front, so it is closed after the proxy (cleanups run last first).
    const fastcgi = await backend('fastcgi', 'f2');
    const proxy = new ScgiProxy({ upstream: [scgi] });
    const port = await front(proxy);
    expect((await get(port, '/before')).body.toString()).toBe('s2 GET /before ');
    await proxy.setUpstream([fastcgi]);
    const after = await get(port, '/after?x=1');
    expect(after.status).toBe(200);
    expect(after.body.toString()).toBe('f2 GET /after x=1');
  });
});
