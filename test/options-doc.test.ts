// The README's option tables and the engine's descriptor table (PROXY_OPTIONS) say the same:
// every option is documented with its default, and the README documents no option that does not
// exist. Unknown keys are refused by the engine and both adapters, naming the closest option.
import { readFileSync } from 'node:fs';
import express from 'express';
import { scgiProxy } from 'express-scgi';
import Fastify from 'fastify';
import fastifyScgi from 'fastify-scgi';
import { PROXY_OPTION_NAMES, PROXY_OPTIONS, ScgiProxy } from 'scgi-core';
import { describe, expect, it } from 'vitest';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

/** name -> default cell, from the tables of the Options and Pools sections. */
function readmeDefaults(): Map<string, string> {
  const out = new Map<string, string>();
  for (const section of ['## Options', '## Pools of backends']) {
    const start = readme.indexOf(`\n${section}\n`);
    expect(start, section).toBeGreaterThan(-1);
    const end = readme.indexOf('\n## ', start + 1);
    for (const line of readme.slice(start, end).split('\n')) {
      if (!line.startsWith('| `')) continue;
      const [namesCell, defaultCell] = line
        .split('|')
        .slice(1, 3)
        .map((c) => c.trim());
      const names = [...namesCell!.matchAll(/`([A-Za-z]+)`/g)].map((m) => m[1]!);
      const defaults = names.length > 1 ? defaultCell!.split(/,\s*/) : [defaultCell!];
      expect(defaults.length, `defaults of ${names.join(', ')}`).toBe(names.length);
      for (const [i, n] of names.entries()) out.set(n, defaults[i]!);
    }
  }
  return out;
}

describe('option documentation', () => {
  const documented = readmeDefaults();
  it.each(
    PROXY_OPTIONS.map((d) => [d.name, d.default] as const),
  )('%s is in the README with default %s', (name, def) => {
    expect(documented.get(name)).toBe(def);
  });

  it('the README documents no option the engine does not take', () => {
    expect([...documented.keys()].filter((n) => !PROXY_OPTION_NAMES.has(n))).toEqual([]);
  });
});

describe('unknown option keys', () => {
  const refused = (make: () => unknown) => {
    try {
      make();
    } catch (err) {
      return err as { code: string; message: string };
    }
    throw new Error('no error');
  };

  it.each([
    [{ uptream: 'unix:/x.sock' }, 'uptream', 'upstream'],
    [{ upstream: 'unix:/x.sock', idleTimout: 5 }, 'idleTimout', 'idleTimeout'],
    [{ upstream: 'unix:/x.sock', maxbodysize: 5 }, 'maxbodysize', 'maxBodySize'],
    [
      { upstream: 'unix:/x.sock', healthCheck: { intervall: 5 } },
      'healthCheck.intervall',
      'interval',
    ],
    [{ upstream: [{ address: 'unix:/x.sock', wieght: 2 }] }, 'upstream[0].wieght', 'weight'],
    [{ spawn: { command: 'x', instance: 2 } }, 'spawn.instance', 'instances'],
  ])('the engine refuses %o naming the closest option', (options, key, guess) => {
    const err = refused(() => new ScgiProxy(options as never));
    expect(err.code).toBe('SCGI_ERR_INVALID_OPTION');
    expect(err.message).toContain(key);
    expect(err.message).toContain(`did you mean "${guess}"?`);
  });

  it('a key far from every option lists the options instead', () => {
    const err = refused(() => new ScgiProxy({ upstream: 'unix:/x.sock', zzz: 1 } as never));
    expect(err.message).toContain('zzz');
    expect(err.message).not.toContain('did you mean');
    expect(err.message).toContain('maxBodySize');
  });

  it('express-scgi refuses a misspelt adapter option and a misspelt engine option', () => {
    const a = refused(() => scgiProxy({ upstream: 'unix:/x.sock', respondOnErorr: true } as never));
    expect(a.code).toBe('SCGI_ERR_INVALID_OPTION');
    expect(a.message).toContain('did you mean "respondOnError"?');
    const b = refused(() => scgiProxy({ upstream: 'unix:/x.sock', conectTimeout: 1 } as never));
    expect(b.message).toContain('did you mean "connectTimeout"?');
    // The middleware still mounts as usual with correct options.
    express().use('/app', scgiProxy({ upstream: 'unix:/x.sock', respondOnError: true }));
  });

  it('fastify-scgi refuses a misspelt option at register time', async () => {
    const app = Fastify();
    app.register(fastifyScgi, { upstream: 'unix:/x.sock', prefx: '/app' } as never);
    const err = (await app.ready().then(
      () => null,
      (e: unknown) => e,
    )) as { code: string; message: string } | null;
    expect(err?.code).toBe('SCGI_ERR_INVALID_OPTION');
    expect(err?.message).toContain('did you mean "prefix"?');
    await app.close();
  });

  it('fastify-scgi accepts Fastify register options (logLevel) next to its own', async () => {
    const app = Fastify();
    await app.register(fastifyScgi, { upstream: 'unix:/x.sock', prefix: '/app', logLevel: 'warn' });
    await app.ready();
    await app.close();
  });
});

// Each package README (the registry's page) has a section per engine option and per adapter
// option, headed by its name, with `Type: ... · Default: ...` whose default is the table's.
describe('option documentation in the package READMEs', () => {
  const pkgReadme = (dir: string) =>
    readFileSync(new URL(`../packages/${dir}/README.md`, import.meta.url), 'utf8');

  /** Option name -> the default stated under its heading (`#### \`name\`` or `name(args)`). */
  function sections(text: string): Map<string, string> {
    const out = new Map<string, string>();
    for (const m of text.matchAll(
      /^#{2,4} `([A-Za-z]+)[(`][^\n]*\n\nType: `.*` · Default: (.+)$/gm,
    ))
      out.set(m[1]!, m[2]!);
    return out;
  }

  const ADAPTERS = [
    {
      dir: 'fastify-plugin',
      own: {
        prefix: "`''`",
        routes: '`true`',
        methods: 'the methods the app routes at registration',
        upstreams: 'none',
        exchangeLog: "`'info'`",
        rewriteEnv: 'none',
        onResponse: 'none',
        onError: 'none',
      },
    },
    {
      dir: 'express-mw',
      own: {
        respondOnError: '`false`',
        rewriteEnv: 'none',
        onResponse: 'none',
        onError: 'none',
        exchangeLog: "`'info'`",
      },
    },
    { dir: 'scgi-core', own: {} },
  ] as const;

  describe.each(ADAPTERS)('packages/$dir/README.md', ({ dir, own }) => {
    const documented = sections(pkgReadme(dir));
    it.each(
      PROXY_OPTIONS.map((d) => [d.name, d.default] as const),
    )('engine option %s has a section with default %s', (name, def) => {
      expect(documented.get(name)).toBe(def);
    });
    it.each(Object.entries(own))('adapter option %s has a section with default %s', (name, def) => {
      expect(documented.get(name)).toBe(def);
    });
    it('documents no option that does not exist', () => {
      const known = new Set([...PROXY_OPTION_NAMES, ...Object.keys(own)]);
      expect([...documented.keys()].filter((n) => !known.has(n))).toEqual([]);
    });
  });
});
