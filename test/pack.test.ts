/**
 * What a stranger installs is what is tested: the three packages are packed (`npm pack`, after
 * `tsc -b`), installed by path into a fresh project outside the monorepo with only public
 * dependencies (Fastify, Express 4 and 5, @types/node from the registry, through npm's cache),
 * and the quick starts of their READMEs run there, with `import` and with `require()`, against
 * the Python example backend; the `fastify-scgi` bin runs from the tarball; the quick starts
 * type-check against the shipped types.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, getFreePort, startPythonBackend } from './helpers/backends.js';
import { has } from './helpers/binaries.js';
import { makeTempDir, removeTempDir } from './helpers/tmp.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PACKAGES = [
  { dir: 'scgi-core', name: 'scgi-core' },
  { dir: 'fastify-plugin', name: 'fastify-scgi' },
  { dir: 'express-mw', name: 'express-scgi' },
] as const;

/** npm run from `npm test` exports npm_config_* (the monorepo's prefix among them): not ours. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  return env;
}

function npm(args: string[], cwd: string): string {
  return execFileSync('npm', args, {
    cwd,
    env: cleanEnv(),
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 90_000,
  });
}

const version = (name: string) =>
  JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')).version;

interface Packed {
  name: string;
  filename: string;
  files: { path: string }[];
}

let project: string;
let packed: Packed[];

beforeAll(() => {
  execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-b'], {
    cwd: ROOT,
    stdio: 'pipe',
  });
  const tarballs = makeTempDir('scgi-pack-');
  project = makeTempDir('scgi-user-');
  packed = JSON.parse(
    npm(['pack', '--workspaces', '--pack-destination', tarballs, '--json'], ROOT),
  );
  const tgz = (name: string) =>
    `file:${join(tarballs, packed.find((p) => p.name === name)!.filename)}`;
  writeFileSync(
    join(project, 'package.json'),
    JSON.stringify({
      name: 'scgi-user',
      private: true,
      // Pinned to the versions npm ci installed for the monorepo: npm's cache has them.
      dependencies: {
        fastify: version('fastify'),
        express: version('express'),
        express4: `npm:express@${version('express4')}`,
        '@types/node': version('@types/node'),
        '@types/express': version('@types/express'),
        'scgi-core': tgz('scgi-core'),
        'fastify-scgi': tgz('fastify-scgi'),
        'express-scgi': tgz('express-scgi'),
      },
    }),
  );
  npm(['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], project);
}, 150_000);

afterAll(() => {
  if (project !== undefined) removeTempDir(project);
});

describe('npm pack', () => {
  it.each(PACKAGES)('$name packs dist (JS and types), README, LICENSE and nothing else', ({
    name,
  }) => {
    const files = packed
      .find((p) => p.name === name)!
      .files.map((f) => f.path)
      .sort();
    expect(files).toEqual(expect.arrayContaining(['LICENSE', 'README.md', 'package.json']));
    expect(files).toEqual(expect.arrayContaining(['dist/index.js', 'dist/index.d.ts']));
    const junk = files.filter(
      (f) => !/^(dist\/([\w-]+\/)*[\w-]+\.(js|d\.ts)|README\.md|LICENSE|package\.json)$/.test(f),
    );
    expect(junk).toEqual([]);
  });

  it('fastify-scgi ships its bin, installed as node_modules/.bin/fastify-scgi', () => {
    const files = packed.find((p) => p.name === 'fastify-scgi')!.files.map((f) => f.path);
    expect(files).toContain('dist/cli.js');
    expect(existsSync(join(project, 'node_modules/.bin/fastify-scgi'))).toBe(true);
    const out = execFileSync(join(project, 'node_modules/.bin/fastify-scgi'), ['--version'], {
      cwd: project,
      encoding: 'utf8',
    });
    expect(out.trim()).toBe(version('fastify-scgi'));
  });

  it('installed from the tarballs, not linked to the monorepo', () => {
    for (const { name } of PACKAGES) {
      const dir = join(project, 'node_modules', name);
      expect(existsSync(join(dir, 'dist/index.js')), name).toBe(true);
      expect(existsSync(join(dir, 'src')), name).toBe(false);
      expect(readFileSync(join(dir, 'LICENSE'), 'utf8')).toBe(
        readFileSync(join(ROOT, 'LICENSE'), 'utf8'),
      );
    }
  });
});

/** The ```js blocks of a package README's Quick start section. */
function quickStart(dir: string): string[] {
  const readme = readFileSync(join(ROOT, 'packages', dir, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Quick start\n');
  const end = readme.indexOf('\n## ', start + 1);
  expect(start).toBeGreaterThan(-1);
  return [...readme.slice(start, end).matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

/** Replaces `from` by `to` in `code`, asserting the README still holds `from`. */
function sub(code: string, from: string, to: string): string {
  expect(code, `the quick start no longer contains ${from}`).toContain(from);
  return code.replaceAll(from, to);
}

describe('the shipped types', () => {
  it('the quick starts type-check against the installed packages (strict, NodeNext)', () => {
    const [fastifyEsm] = quickStart('fastify-plugin');
    const [expressEsm] = quickStart('express-mw');
    writeFileSync(join(project, 'fastify.mts'), fastifyEsm!);
    writeFileSync(join(project, 'express.mts'), expressEsm!);
    writeFileSync(
      join(project, 'core.mts'),
      `import { ScgiProxy, listErrorCodes, type ScgiError } from 'scgi-core';
import { fastifyScgi, type FastifyScgiOptions } from 'fastify-scgi';
import { scgiProxy, type ExpressScgiOptions } from 'express-scgi';
const o: FastifyScgiOptions = { upstream: 'unix:/x.sock', prefix: '/app', connectTimeout: 5 };
const e: ExpressScgiOptions = { spawn: { command: 'python3' }, respondOnError: true };
const p = new ScgiProxy({ upstream: ['127.0.0.1:9000', { address: 'unix:/x.sock', weight: 2 }] });
const codes: string[] = listErrorCodes().map((c) => c.code);
const handle = (err: ScgiError): number => err.statusCode;
export { o, e, p, codes, handle, fastifyScgi, scgiProxy };
`,
    );
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          target: 'ES2022',
          noEmit: true,
          // The packages' own declarations are checked too, not only their use.
          skipLibCheck: false,
          types: ['node'],
        },
        files: ['fastify.mts', 'express.mts', 'core.mts'],
      }),
    );
    execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', project], {
      cwd: project,
      encoding: 'utf8',
      stdio: 'pipe',
    });
  });
});

describe.skipIf(!has('python3'))(
  'the README quick starts, installed, against the Python example backend',
  () => {
    let backend: Backend;
    const children = new Set<ChildProcess>();
    beforeAll(async () => {
      backend = await startPythonBackend({ socket: 'unix' });
    });
    afterAll(async () => {
      for (const c of children) c.kill('SIGKILL');
      await backend?.stop();
    });

    /** Runs `file` (written with `code`) in the project; resolves with the app's /env answer. */
    async function serve(file: string, code: string, port: number, path: string, cmd?: string[]) {
      if (code !== '') writeFileSync(join(project, file), code);
      const [command, ...args] = cmd ?? [process.execPath, file];
      const child = spawn(command!, args, {
        cwd: project,
        env: cleanEnv(),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.add(child);
      let output = '';
      const collect = (d: Buffer) => {
        output += d.toString();
      };
      child.stdout!.on('data', collect);
      child.stderr!.on('data', collect);
      try {
        const deadline = Date.now() + 15_000;
        for (;;) {
          if (child.exitCode !== null)
            throw new Error(`${file} exited ${child.exitCode}:\n${output}`);
          try {
            const res = await fetch(`http://127.0.0.1:${port}${path}`);
            return { status: res.status, env: (await res.json()) as Record<string, string> };
          } catch (err) {
            if (Date.now() > deadline) throw new Error(`${file} never answered: ${err}\n${output}`);
            await delay(50);
          }
        }
      } finally {
        child.kill('SIGTERM');
        await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
        children.delete(child);
      }
    }

    const variants = [
      { label: 'fastify-scgi, import', dir: 'fastify-plugin', block: 0, file: 'fastify.mjs' },
      { label: 'fastify-scgi, require()', dir: 'fastify-plugin', block: 1, file: 'fastify.cjs' },
      {
        label: 'express-scgi on Express 5, import',
        dir: 'express-mw',
        block: 0,
        file: 'express5.mjs',
      },
      {
        label: 'express-scgi on Express 5, require()',
        dir: 'express-mw',
        block: 1,
        file: 'express5.cjs',
      },
      {
        label: 'express-scgi on Express 4, import',
        dir: 'express-mw',
        block: 0,
        file: 'express4.mjs',
        express4: true,
      },
      {
        label: 'express-scgi on Express 4, require()',
        dir: 'express-mw',
        block: 1,
        file: 'express4.cjs',
        express4: true,
      },
    ];

    it.each(variants)('$label', async ({ dir, block, file, express4 }) => {
      const port = await getFreePort();
      let code = quickStart(dir)[block]!;
      expect(code.includes('require(')).toBe(file.endsWith('.cjs'));
      code = sub(code, 'unix:/run/app.sock', backend.address);
      if (dir === 'fastify-plugin')
        code = sub(code, 'port: 3000', `port: ${port}, host: '127.0.0.1'`);
      else code = sub(code, 'app.listen(3000)', `app.listen(${port}, '127.0.0.1')`);
      if (express4) {
        code = code.startsWith('import')
          ? sub(code, "from 'express'", "from 'express4'")
          : sub(code, "require('express')", "require('express4')");
      }
      const { status, env } = await serve(file, code, port, '/app/env/x?q=1');
      expect(status).toBe(200);
      expect(env.SCRIPT_NAME).toBe('/app');
      expect(env.PATH_INFO).toBe('/env/x');
      expect(env.QUERY_STRING).toBe('q=1');
    });

    it('scgi-core with node:http, import', async () => {
      const port = await getFreePort();
      let code = sub(quickStart('scgi-core')[0]!, 'unix:/run/app.sock', backend.address);
      code = sub(code, '.listen(3000)', `.listen(${port}, '127.0.0.1')`);
      const { status, env } = await serve('core.mjs', code, port, '/env/x');
      expect(status).toBe(200);
      expect(env.SCRIPT_NAME).toBe('');
      expect(env.PATH_INFO).toBe('/env/x');
    });

    it('npx fastify-scgi from the installed tarball', async () => {
      const port = await getFreePort();
      const args = ['--upstream', backend.address, '--prefix', '/app', '--port', String(port)];
      const { status, env } = await serve('', '', port, '/app/env', [
        join(project, 'node_modules/.bin/fastify-scgi'),
        ...args,
      ]);
      expect(status).toBe(200);
      expect(env.SCRIPT_NAME).toBe('/app');
      expect(env.PATH_INFO).toBe('/env');
    });
  },
);
