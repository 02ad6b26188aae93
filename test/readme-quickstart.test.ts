/**
 * The README's "In 60 seconds" path, as a stranger follows it: its hello.py, its server.mjs and
 * its `npx fastify-scgi` line, copied from README.md into a fresh directory next to
 * examples/python/scgi_server.py, run with the built packages, answer the `curl` shown there,
 * and leave no worker behind when stopped; and the redirect snippet of its Troubleshooting.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';
import fastifyScgi from 'fastify-scgi';
import { afterEach, describe, expect, it } from 'vitest';
import { startNodeApp } from '../examples/node-app.mjs';
import { canConnect, getFreePort, SCGI_SERVER_PY } from './helpers/backends.js';
import { has } from './helpers/binaries.js';
import { makeTempDir, removeTempDir } from './helpers/tmp.js';
import { alive, pidsMentioning, scriptDir, waitGone, writeScript } from './helpers/workers.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(root, 'packages', 'fastify-plugin', 'dist', 'cli.js');
const READY_MS = 15_000;

/** The "In 60 seconds" section of README.md. */
function section(): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## In 60 seconds');
  expect(start, 'README has an "In 60 seconds" section').toBeGreaterThan(-1);
  return readme.slice(start, readme.indexOf('\n## ', start + 1));
}

function block(text: string, lang: string): string {
  const match = new RegExp(`\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``).exec(text);
  if (match?.[1] === undefined) throw new Error(`no \`\`\`${lang} block`);
  return match[1];
}

/** The curl line and the answer its comment promises. */
function curl(text: string): { path: string; answer: string } {
  const match = /^curl http:\/\/127\.0\.0\.1:3000(\S+)\s+# (.+)$/m.exec(text);
  if (match === null) throw new Error('no curl line with its answer');
  return { path: match[1]!, answer: `${match[2]!.trim()}\n` };
}

const children = new Set<ChildProcess>();
const dirs: string[] = [];
afterEach(() => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  children.clear();
  for (const dir of dirs.splice(0)) removeTempDir(dir);
});

/** A fresh directory holding hello.py and scgi_server.py (node_modules links to the workspace). */
function helloDir(text: string): string {
  const dir = scriptDir();
  dirs.push(dir);
  writeScript(dir, 'hello.py', block(text, 'python'));
  copyFileSync(SCGI_SERVER_PY, join(dir, 'scgi_server.py'));
  return dir;
}

async function run(dir: string, args: string[], port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let output = '';
  child.stdout!.on('data', (d: Buffer) => {
    output += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    output += d.toString();
  });
  const deadline = Date.now() + READY_MS;
  while (!(await canConnect(`127.0.0.1:${port}`))) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`not up:\n${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return child;
}

/** The spawned workers of this directory's hello app (their cwd is the directory). */
function workers(dir: string): number[] {
  return pidsMentioning('hello:application').filter((pid) => {
    try {
      return readlinkSync(`/proc/${pid}/cwd`) === dir;
    } catch {
      return false; // gone meanwhile
    }
  });
}

describe.skipIf(!has('python3'))("README's 60-second path", () => {
  it('server.mjs spawns 2 Python workers that answer the curl; SIGTERM leaves none', async () => {
    const text = section();
    const dir = helloDir(text);
    const port = await getFreePort();
    const server = block(text, 'js');
    expect(server).toContain('port: 3000');
    writeScript(dir, 'server.mjs', server.replace('port: 3000', `port: ${port}`));
    const child = await run(dir, ['server.mjs'], port);

    const { path, answer } = curl(text);
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(answer);
    const pids = workers(dir);
    expect(pids).toHaveLength(2);

    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
    await waitGone(pids);
    expect(pids.filter(alive)).toEqual([]);
  });

  it('the npx fastify-scgi line does the same and exits 0 on SIGTERM', async () => {
    const text = section();
    const dir = helloDir(text);
    const line = /^npx fastify-scgi (.+)$/m.exec(text)?.[1];
    if (line === undefined) throw new Error('no npx fastify-scgi line');
    // The shell's words: "..." is one word without its quotes.
    const words = [...line.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!);
    const port = await getFreePort();
    const i = words.indexOf('--port');
    expect(words[i + 1]).toBe('3000');
    words[i + 1] = String(port);
    const child = await run(dir, [CLI, ...words], port);

    const { path, answer } = curl(text);
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    expect(await res.text()).toBe(answer);
    const pids = workers(dir);
    expect(pids.length).toBeGreaterThan(0);

    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    await waitGone(pids);
  });
});

describe("README's Troubleshooting: nginx's redirect of /app to /app/", () => {
  it('the onRequest hook answers /app with a 301 to /app/ (query kept); /app/ reaches the app', async () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const start = readme.indexOf('\n## Troubleshooting');
    const snippet = [...readme.slice(start).matchAll(/```js\n([\s\S]*?)```/g)]
      .map((m) => m[1]!)
      .find((b) => b.includes("addHook('onRequest'"));
    if (snippet === undefined) throw new Error('no redirect snippet in Troubleshooting');
    const dir = makeTempDir('scgi-rd-');
    dirs.push(dir);
    const backend = await startNodeApp(`unix:${join(dir, 'app.sock')}`);
    const app = Fastify();
    try {
      await app.register(fastifyScgi, {
        prefix: '/app',
        upstream: `unix:${join(dir, 'app.sock')}`,
      });
      // The snippet as a user pastes it, with `app` in scope.
      await new Function('app', snippet)(app);
      const base = await app.listen({ port: 0, host: '127.0.0.1' });
      for (const [target, location] of [
        ['/app', '/app/'],
        ['/app?x=1', '/app/?x=1'],
      ] as const) {
        const res = await fetch(`${base}${target}`, { redirect: 'manual' });
        expect(res.status, target).toBe(301);
        expect(res.headers.get('location')).toBe(location);
      }
      const env = await fetch(`${base}/app/env`);
      expect(await env.json()).toMatchObject({ SCRIPT_NAME: '/app', PATH_INFO: '/env' });
    } finally {
      await app.close();
      await new Promise((r) => backend.close(r));
    }
  });
});
