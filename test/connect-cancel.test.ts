/**
 * A client that goes away while the proxy is still connecting frees the connecting socket and
 * its connect timer at once, not when `connectTimeout` expires. The backend here is a Python
 * listener with a backlog of 0 whose queue is already full (nothing accepts), so over loopback
 * TCP our SYNs go unanswered and the connect stays pending.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { defaultConnector, parseAddress, ScgiProxy } from 'scgi-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { has } from './helpers/binaries.js';
import { eventually } from './helpers/corpus.js';

/** Live TCP handles and timers of this process (Node's own count). */
function resources(): { tcp: number; timers: number } {
  const info = process.getActiveResourcesInfo();
  return {
    tcp: info.filter((r) => r === 'TCPSocketWrap' || r === 'TCPConnectWrap').length,
    timers: info.filter((r) => r === 'Timeout').length,
  };
}

describe.skipIf(!has('python3'))('connecting to a backend that never accepts', () => {
  let py: ChildProcess;
  let port: number;
  const fillers: net.Socket[] = [];

  beforeAll(async () => {
    py = spawn(
      'python3',
      [
        '-c',
        'import socket,time\ns=socket.socket();s.bind(("127.0.0.1",0));s.listen(0)\nprint(s.getsockname()[1],flush=True);time.sleep(60)',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    port = Number(
      await new Promise<string>((resolve) => py.stdout!.once('data', (d) => resolve(String(d)))),
    );
    // Fill the accept queue: later connects get no SYN-ACK.
    for (let i = 0; i < 4; i++) fillers.push(net.connect(port, '127.0.0.1').on('error', () => {}));
    await delay(200);
  });
  afterAll(() => {
    for (const s of fillers) s.destroy();
    py.kill();
  });

  it('the connector gives a function that abandons the attempt: socket and timer gone, no callback', async () => {
    const before = resources();
    let called = false;
    const cancel = defaultConnector(parseAddress(`127.0.0.1:${port}`), { timeout: 5000 }, () => {
      called = true;
    });
    expect(typeof cancel).toBe('function');
    await delay(50);
    expect(resources().tcp).toBeGreaterThan(before.tcp);
    (cancel as () => void)();
    expect(await eventually(() => resources().tcp === before.tcp, 1000)).toBe(true);
    expect(resources().timers).toBeLessThanOrEqual(before.timers);
    await delay(50);
    expect(called).toBe(false);
  });

  it('a client abort while connecting frees the socket at once (connectTimeout 5 s)', async () => {
    const proxy = new ScgiProxy({ upstream: `127.0.0.1:${port}`, connectTimeout: 5000 });
    const { createServer, request } = await import('node:http');
    const front = createServer((req, res) => {
      proxy.request(req, { res }).catch(() => {});
    });
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
    const frontPort = (front.address() as net.AddressInfo).port;
    try {
      const before = resources();
      const client = request({ host: '127.0.0.1', port: frontPort, path: '/x' });
      client.on('error', () => {});
      client.end();
      // Connecting: one more TCP handle for the backend attempt (plus the two of the client).
      expect(await eventually(() => proxy.inFlight === 1, 2000)).toBe(true);
      client.destroy();
      const started = Date.now();
      expect(await eventually(() => resources().tcp <= before.tcp, 1000)).toBe(true);
      expect(Date.now() - started).toBeLessThan(1000);
    } finally {
      await new Promise<void>((r) => front.close(() => r()));
      await proxy.close(0);
    }
  });
});
