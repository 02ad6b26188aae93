import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { liveSpoolFiles, spoolBody } from '../src/http/spool.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'scgi-spool-test-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const chunks = (n: number, size: number) =>
  Array.from({ length: n }, (_, i) => Buffer.alloc(size, i & 255));
const waitFor = async (cond: () => boolean) => {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
};

describe('spoolBody', () => {
  it('keeps a small body in memory', async () => {
    const spool = await spoolBody(Readable.from(chunks(3, 100)), {
      memoryLimit: 1000,
      maxBodySize: 10_000,
      tmpDir: dir,
    });
    expect(spool.length).toBe(300);
    expect(spool.file).toBeNull();
    expect(Buffer.concat(spool.chunks!)).toEqual(Buffer.concat(chunks(3, 100)));
    expect(readdirSync(dir)).toEqual([]);
  });

  it('moves a larger body to a private 0600 temp file and removes it on dispose', async () => {
    const data = chunks(50, 1000);
    const spool = await spoolBody(Readable.from(data), {
      memoryLimit: 4096,
      maxBodySize: 1e6,
      tmpDir: dir,
    });
    expect(spool.length).toBe(50_000);
    expect(spool.chunks).toBeNull();
    expect(spool.file).not.toBeNull();
    expect(statSync(spool.file!).mode & 0o777).toBe(0o600);
    expect(readFileSync(spool.file!)).toEqual(Buffer.concat(data));
    const replay: Buffer[] = [];
    for await (const c of spool.openStream()) replay.push(c as Buffer);
    expect(Buffer.concat(replay)).toEqual(Buffer.concat(data));
    spool.dispose();
    spool.dispose();
    await waitFor(() => readdirSync(dir).length === 0 && liveSpoolFiles() === 0);
    expect(readdirSync(dir)).toEqual([]);
    expect(liveSpoolFiles()).toBe(0);
  });

  it('rejects a body over maxBodySize with SCGI_ERR_BODY_TOO_LARGE and leaves no file', async () => {
    const p = spoolBody(Readable.from(chunks(100, 1000)), {
      memoryLimit: 1000,
      maxBodySize: 20_000,
      tmpDir: dir,
    });
    await expect(p).rejects.toMatchObject({ code: 'SCGI_ERR_BODY_TOO_LARGE', statusCode: 413 });
    expect(readdirSync(dir)).toEqual([]);
    expect(liveSpoolFiles()).toBe(0);
  });

  it('rejects with SCGI_ERR_REQUEST_ABORTED when the source fails mid-way, leaving no file', async () => {
    const src = new PassThrough();
    const p = spoolBody(src, { memoryLimit: 10, maxBodySize: 1e6, tmpDir: dir });
    src.write(Buffer.alloc(5000));
    await waitFor(() => readdirSync(dir).length === 1);
    src.destroy(new Error('ECONNRESET'));
    await expect(p).rejects.toMatchObject({ code: 'SCGI_ERR_REQUEST_ABORTED' });
    expect(readdirSync(dir)).toEqual([]);
  });

  it('stops on abort signal', async () => {
    const src = new PassThrough();
    const ac = new AbortController();
    const p = spoolBody(src, { memoryLimit: 10, maxBodySize: 1e6, tmpDir: dir }, ac.signal);
    src.write(Buffer.alloc(100));
    await waitFor(() => readdirSync(dir).length === 1);
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: 'SCGI_ERR_REQUEST_ABORTED' });
    expect(readdirSync(dir)).toEqual([]);
  });

  it('fails with SCGI_ERR_SPOOL when the temp folder is unusable', async () => {
    const p = spoolBody(Readable.from(chunks(4, 100)), {
      memoryLimit: 10,
      maxBodySize: 1e6,
      tmpDir: join(dir, 'missing'),
    });
    await expect(p).rejects.toMatchObject({ code: 'SCGI_ERR_SPOOL', statusCode: 500 });
    expect(liveSpoolFiles()).toBe(0);
  });
});

describe('spool process hooks', () => {
  it('listens for exit and the fatal signals only while a temp file is alive', async () => {
    const events = ['exit', 'SIGINT', 'SIGTERM', 'SIGHUP'] as const;
    const counts = () => events.map((e) => process.listenerCount(e));
    const idle = counts();
    const spool = await spoolBody(Readable.from(chunks(4, 100)), {
      memoryLimit: 10,
      maxBodySize: 1e6,
      tmpDir: dir,
    });
    expect(counts()).toEqual(idle.map((n) => n + 1));
    spool.dispose();
    await waitFor(() => liveSpoolFiles() === 0);
    expect(counts()).toEqual(idle);
  });
});
