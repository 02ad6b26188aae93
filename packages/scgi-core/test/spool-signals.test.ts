/**
 * Spool temp files and signals, checked from outside a child Node process that runs the built
 * scgi-core (`npx tsc -b`) as a user would: a signal that ends the process removes the files
 * and still ends it by that signal; an app's own listener keeps the say over the signal.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir } from '../../../test/helpers/tmp.js';
import {
  alive,
  NODE_APP,
  type NodeChild,
  ROOT,
  runNode,
  scriptDir,
  waitFor,
  waitGone,
  writeScript,
} from '../../../test/helpers/workers.js';

beforeAll(() => {
  const dist = join(ROOT, 'packages', 'scgi-core', 'dist', 'index.js');
  if (!existsSync(dist)) throw new Error(`${dist} is missing: build first (npx tsc -b)`);
});

const scripts = scriptDir();
// Spools a body that never ends (an upload in progress) to a file in argv[3], prints the file,
// then waits. `app`: the app has its own SIGTERM listener and exits by itself a little later.
// `spawn`: a worker pool (upstream/spawn.ts, with its own signal hooks) runs in the same process.
const child = writeScript(
  scripts,
  'spool-child.mjs',
  `import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { liveSpoolFiles, ScgiProxy, spoolBody } from 'scgi-core';
const [mode, tmpDir, nodeApp] = process.argv.slice(2);
let pids = [];
if (mode === 'spawn') {
  const proxy = new ScgiProxy({
    spawn: { command: process.execPath, args: [nodeApp, 'unix:{socket}'], instances: 1 },
  });
  await proxy.ready();
  pids = proxy.workerPids();
}
if (mode === 'app') {
  process.once('SIGTERM', () => {
    console.log('app: SIGTERM');
    setTimeout(() => {
      console.log('app: file there at exit: ' + existsSync(file));
      process.exit(0);
    }, 400);
  });
}
const source = new PassThrough();
spoolBody(source, { memoryLimit: 10, maxBodySize: 1e6, tmpDir }).catch(() => {});
source.write(Buffer.alloc(1000));
while (liveSpoolFiles() === 0 || readdirSync(tmpDir).length === 0) await new Promise((r) => setTimeout(r, 5));
const file = join(tmpDir, readdirSync(tmpDir)[0]);
setInterval(() => {}, 1000);
console.log(JSON.stringify({ file, pids }));
`,
);

describe('spool temp files when a signal ends the process', () => {
  const children = new Set<NodeChild>();
  afterEach(() => {
    for (const c of children) if (c.child.exitCode === null) c.child.kill('SIGKILL');
    children.clear();
  });

  const start = async (mode: string, tmp: string) => {
    const run = runNode(child, [mode, tmp, NODE_APP]);
    children.add(run);
    const out = await run.json<{ file: string; pids: number[] }>();
    expect(existsSync(out.file)).toBe(true);
    return { run, ...out };
  };
  const exitOf = (run: NodeChild) =>
    Promise.race([
      run.exited,
      waitFor(() => false, 5000, 'the child to exit').catch(() => 'still running'),
    ]);

  it.each([
    'SIGTERM',
    'SIGINT',
  ] as const)('regression: %s with no listener of the app removes the file and the process dies by it', async (signal) => {
    const tmp = makeTempDir('scgi-spool-sig-');
    const { run, file } = await start('alone', tmp);
    run.child.kill(signal);
    expect(await exitOf(run), run.lines.join('\n')).toEqual({ code: null, signal });
    expect(existsSync(file)).toBe(false);
    expect(readdirSync(tmp)).toEqual([]);
  });

  it("with the app's own SIGTERM listener, the process and the file live until the app exits", async () => {
    const tmp = makeTempDir('scgi-spool-sig-');
    const { run, file } = await start('app', tmp);
    run.child.kill('SIGTERM');
    await waitFor(() => run.lines.includes('app: SIGTERM'), 2000, 'the app to see SIGTERM');
    expect(run.child.exitCode).toBeNull();
    expect(existsSync(file)).toBe(true);
    expect(await exitOf(run), run.lines.join('\n')).toEqual({ code: 0, signal: null });
    expect(run.lines).toContain('app: file there at exit: true');
    // Removed by the 'exit' hook.
    expect(readdirSync(tmp)).toEqual([]);
  });

  it('with a spawned worker pool in the same process, SIGTERM ends it, kills the workers and removes the file (one handler for both)', async () => {
    const tmp = makeTempDir('scgi-spool-sig-');
    const { run, pids, file } = await start('spawn', tmp);
    expect(pids.every(alive)).toBe(true);
    run.child.kill('SIGTERM');
    expect(await exitOf(run), run.lines.join('\n')).toEqual({ code: null, signal: 'SIGTERM' });
    await waitGone(pids, 3000);
    expect(existsSync(file)).toBe(false);
  });
});
