/**
 * Node internals this project depends on, checked so that a change in Node shows up here first:
 *
 * - `socket.destroy()` stops the timer of `socket.setTimeout` (documented only as "no more I/O
 *   activity"): scgi-core's releaseSocket (upstream/connect.ts) destroys a socket without
 *   clearing its idle timer first, and a kept FastCGI connection's timer is not reset per
 *   request (upstream/keep-alive.ts).
 * - The one internal the adapters read (scgi-core http/connect-method.ts `serverOf`). Node
 *   offers no public way from a request to the server it came in on, and express-scgi needs the
 *   server to answer CONNECT and to close with it. Without this check, the change would show up
 *   as CONNECT requests closed unanswered.
 * - How `process.nextTick` loses its fast path after a full GC, which scgi-core prevents
 *   (engine/tick-shape.ts). The check reads V8's feedback through `%DebugPrint` in a child
 *   process.
 */
import { execFile } from 'node:child_process';
import { createServer, request } from 'node:http';
import { type AddressInfo, connect, createServer as createNetServer } from 'node:net';
import { serverOf } from 'scgi-core/adapter';
import { describe, expect, it } from 'vitest';

const ROOT = new URL('..', import.meta.url);

/**
 * The feedback states of the computed keys in nextTick's tick literal, after ticks, a full GC
 * with no tick queued, then one more tick; with `load`, scgi-core (built) is imported first.
 */
async function tickLiteralStates(load: boolean): Promise<string[]> {
  const script = `
    if (${load}) await import('scgi-core');
    for (let i = 0; i < 200; i++) process.nextTick(() => {});
    await new Promise((r) => setImmediate(r));
    // V8 keeps unused maps through a few full GCs (--retain-maps-for-n-gc, 2 by default).
    for (let i = 0; i < 4; i++) globalThis.gc();
    process.nextTick(() => {});
    await new Promise((r) => setImmediate(r));
    new Function('f', '%DebugPrint(f)')(process.nextTick);
  `;
  const stdout = await new Promise<string>((resolve, reject) =>
    execFile(
      process.execPath,
      ['--allow-natives-syntax', '--expose-gc', '--input-type=module', '-e', script],
      { cwd: ROOT, maxBuffer: 16 << 20 },
      (err, out) => (err ? reject(err) : resolve(out)),
    ),
  );
  return [...stdout.matchAll(/DefineKeyedOwnPropertyInLiteral (\w+)/g)].map((m) => m[1]!);
}

describe('Node internals this project relies on', () => {
  it('socket.destroy() stops the socket timeout timer', async () => {
    const server = createNetServer((s) => s.on('error', () => {}));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    const timeouts = { armed: 0, destroyed: 0 };
    // The control: an armed timer does fire, so the check below could see one.
    const armed = connect(port, '127.0.0.1');
    armed.setTimeout(30, () => timeouts.armed++);
    const destroyed = connect(port, '127.0.0.1');
    destroyed.setTimeout(30, () => timeouts.destroyed++);
    await new Promise((r) => destroyed.once('connect', r));
    destroyed.destroy();
    await new Promise((r) => setTimeout(r, 200));
    armed.destroy();
    await new Promise<void>((r) => server.close(() => r()));
    expect(timeouts.armed).toBeGreaterThan(0);
    expect(timeouts.destroyed).toBe(0);
    // `timeout` keeps its value: exchange.ts sets a new connection's timer whatever it says.
    expect(destroyed.timeout).toBe(30);
  });

  it('an accepted request socket names its server (`socket.server`)', async () => {
    let seen: unknown = null;
    const server = createServer((req, res) => {
      try {
        seen = serverOf(req);
      } finally {
        res.end();
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve, reject) => {
      request({ port, host: '127.0.0.1', agent: false }, (res) => {
        res.resume();
        res.on('end', resolve);
      })
        .on('error', reject)
        .end();
    });
    await new Promise<void>((r) => server.close(() => r()));
    expect(seen).toBe(server);
  });

  it('a full GC between ticks sends nextTick megamorphic, unless scgi-core keeps a tick object', async () => {
    const [without, withCore] = await Promise.all([
      tickLiteralStates(false),
      tickLiteralStates(true),
    ]);
    // Node 20: the maps of the tick literal are freed, the next tick's differ from those recorded.
    expect(without).toContain('MEGAMORPHIC');
    // Four computed or named keys are added: async_id, trigger_async_id, callback, args.
    expect(withCore.length).toBeGreaterThanOrEqual(4);
    expect(withCore.every((state) => state === 'MONOMORPHIC')).toBe(true);
  });
});
