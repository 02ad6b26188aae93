/**
 * A PHP app receives a binary upload and sends a binary download intact, 1 GiB each way, through
 * the proxy to a private PHP-FPM (issue 14). Bytes are generated and hashed on both sides as
 * they stream (sha256), never held whole; the proxy runs in this process and its peak RSS growth
 * over the transfer is measured and bounded.
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { has } from './helpers/binaries.js';
import { type PhpBackend, startPhpFpm } from './helpers/php.js';
import { type ProxyFront, type ProxyFrontKind, startProxyFront } from './helpers/proxy-fronts.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/**
 * Peak RSS growth allowed for the proxy while 1 GiB passes. Measured: upload 4-20 MiB, download
 * under 2 MiB; a proxy that held the body whole grows by over 1 GiB.
 */
const RSS_BOUND = 64 * MiB;

/**
 * POST: reads php://input in 1 MiB pieces and answers its length and sha256 (the body never
 * whole in PHP). GET ?bytes=N: N bytes where byte i is i % 256, with a Content-Length.
 */
const BIG_PHP = `<?php
if ($_SERVER['REQUEST_METHOD'] === 'POST') {
  $in = fopen('php://input', 'rb');
  $h = hash_init('sha256');
  $n = 0;
  while (!feof($in)) {
    $piece = fread($in, 1048576);
    if ($piece === false) break;
    $n += strlen($piece);
    hash_update($h, $piece);
  }
  header('Content-Type: application/json');
  echo json_encode(['length' => $n, 'sha256' => hash_final($h)]);
  exit;
}
$n = (int) $_GET['bytes'];
header('Content-Type: application/octet-stream');
header('Content-Length: ' . $n);
$block = str_repeat(implode('', array_map('chr', range(0, 255))), 4096);
for ($sent = 0; $sent < $n; $sent += strlen($block)) {
  echo $n - $sent >= strlen($block) ? $block : substr($block, 0, $n - $sent);
}
`;

/** 1 MiB where byte i is i % 256: the download's bytes, and the upload's (offset by a seed). */
function block(seed: number): Buffer {
  const out = Buffer.allocUnsafe(MiB);
  for (let i = 0; i < MiB; i++) out[i] = (i + seed) & 255;
  return out;
}

/** Samples this process's RSS every 20 ms until stopped; returns the peak growth over `base`. */
function rssWatch() {
  const base = process.memoryUsage.rss();
  let peak = base;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 20);
  return {
    stop: () => {
      clearInterval(timer);
      peak = Math.max(peak, process.memoryUsage.rss());
      return peak - base;
    },
  };
}

/** Streams `total` bytes (1 MiB blocks, seeds 0, 1, 2...) with backpressure; resolves the answer. */
function upload(
  front: ProxyFront,
  total: number,
): Promise<{ status: number; body: string; sent: string }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    const req = http.request(`${front.url}/app/big.php`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(total) },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          body: Buffer.concat(parts).toString(),
          sent: hash.digest('hex'),
        }),
      );
      res.on('error', reject);
    });
    const blocks = [block(0), block(1), block(2)];
    let written = 0;
    const pump = () => {
      while (written < total) {
        const b = blocks[(written / MiB) % 3]!.subarray(0, Math.min(MiB, total - written));
        hash.update(b);
        written += b.length;
        if (!req.write(b)) {
          req.once('drain', pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
}

/** GETs `bytes` bytes and hashes them as they come. */
function download(
  front: ProxyFront,
  bytes: number,
): Promise<{ status: number; length: number; sha256: string; complete: boolean }> {
  return new Promise((resolve, reject) => {
    http
      .get(`${front.url}/app/big.php?bytes=${bytes}`, (res) => {
        const hash = createHash('sha256');
        let length = 0;
        res.on('data', (c: Buffer) => {
          length += c.length;
          hash.update(c);
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            length,
            sha256: hash.digest('hex'),
            complete: res.complete,
          }),
        );
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

/** sha256 of `bytes` bytes where byte i is i % 256. */
function patternSha256(bytes: number): string {
  const hash = createHash('sha256');
  const b = block(0);
  for (let at = 0; at < bytes; at += MiB) hash.update(b.subarray(0, Math.min(MiB, bytes - at)));
  return hash.digest('hex');
}

const KINDS: ProxyFrontKind[] = ['fastify', 'express'];

describe.skipIf(!has('php-fpm'))('1 GiB each way through a PHP-FPM app', () => {
  let fpm: PhpBackend;
  const fronts: ProxyFront[] = [];
  beforeAll(async () => {
    fpm = await startPhpFpm({ children: 2 });
    writeFileSync(join(fpm.dir, 'big.php'), BIG_PHP);
  });
  afterEach(async () => {
    for (const f of fronts.splice(0)) await f.close();
  });
  afterAll(async () => {
    await fpm?.stop();
  });

  async function front(kind: ProxyFrontKind) {
    const f = await startProxyFront(kind, {
      upstream: `fastcgi://${fpm.address}`,
      params: { SCRIPT_FILENAME: join(fpm.dir, 'big.php'), DOCUMENT_ROOT: fpm.dir },
      maxConnections: 2,
      maxBodySize: '2gb',
      idleTimeout: 30_000,
    });
    fronts.push(f);
    // Warm up (code paths, pooled buffers) before the baseline.
    expect((await upload(f, 4 * MiB)).status).toBe(200);
    expect((await download(f, 4 * MiB)).status).toBe(200);
    return f;
  }

  it.each(KINDS)(
    'upload: 1 GiB arrives sha256-exact, bounded proxy memory (%s)',
    { timeout: 180_000 },
    async (kind) => {
      const f = await front(kind);
      const rss = rssWatch();
      const res = await upload(f, GiB);
      const growth = rss.stop();
      expect(res.status, res.body).toBe(200);
      expect(JSON.parse(res.body)).toEqual({ length: GiB, sha256: res.sent });
      expect(growth, `peak RSS growth ${(growth / MiB).toFixed(1)} MiB`).toBeLessThan(RSS_BOUND);
    },
  );

  it.each(KINDS)(
    'download: 1 GiB leaves sha256-exact, bounded proxy memory (%s)',
    { timeout: 180_000 },
    async (kind) => {
      const f = await front(kind);
      const rss = rssWatch();
      const res = await download(f, GiB);
      const growth = rss.stop();
      expect(res).toMatchObject({ status: 200, length: GiB, complete: true });
      expect(res.sha256).toBe(patternSha256(GiB));
      expect(growth, `peak RSS growth ${(growth / MiB).toFixed(1)} MiB`).toBeLessThan(RSS_BOUND);
    },
  );
});
