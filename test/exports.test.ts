// The built packages load the way users load them: `import` and `require()` (Node >= 20.19
// loads ESM through require), through their `exports` maps, with the documented names.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const run = (code: string, type: 'module' | 'commonjs') =>
  execFileSync(
    process.execPath,
    [type === 'module' ? '--input-type=module' : '--input-type=commonjs', '-e', code],
    {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  ).trim();

describe('package exports', () => {
  it.each([
    [
      'scgi-core',
      [
        'ScgiProxy',
        'buildCgiEnv',
        'phpFrontController',
        'encodeScgiHead',
        'decodeScgiHead',
        'CgiResponseParser',
        'createScgiServer',
        'encodeNetstring',
        'NetstringDecoder',
        'ScgiError',
        'listErrorCodes',
        'createFastcgiServer',
        'encodeRequest',
        'FastcgiResponseDecoder',
      ],
    ],
    ['fastify-scgi', ['default', 'fastifyScgi']],
    ['express-scgi', ['default', 'scgiProxy']],
  ])('%s loads with import and require', (name, names) => {
    const viaImport = JSON.parse(
      run(
        `const m = await import('${name}'); console.log(JSON.stringify(Object.keys(m)))`,
        'module',
      ),
    );
    const viaRequire = JSON.parse(
      run(`const m = require('${name}'); console.log(JSON.stringify(Object.keys(m)))`, 'commonjs'),
    );
    for (const n of names) {
      expect(viaImport).toContain(n);
      expect(viaRequire).toContain(n);
    }
  });

  it.each([
    'scgi-core',
    'fastify-plugin',
    'express-mw',
  ])('%s: exports map lists types first', (dir) => {
    const pkg = JSON.parse(readFileSync(`${root}/packages/${dir}/package.json`, 'utf8'));
    expect(Object.keys(pkg.exports['.'])[0]).toBe('types');
    expect(pkg.type).toBe('module');
  });

  it('require() of the Fastify plugin gives a usable plugin', () => {
    const out = run(
      `const Fastify = require('fastify'); const { fastifyScgi } = require('fastify-scgi');
       const app = Fastify(); app.register(fastifyScgi, { upstream: 'unix:/nonexistent.sock', prefix: '/x' });
       app.inject({ url: '/x/y' }).then((r) => { console.log(r.statusCode, r.json().code); return app.close(); });`,
      'commonjs',
    );
    expect(out).toBe('502 SCGI_ERR_CONNECT');
  });
});
