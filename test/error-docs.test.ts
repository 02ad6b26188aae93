// Every error code of the registry is documented in the README with its status, and the README
// documents no code that does not exist.
import { readdirSync, readFileSync } from 'node:fs';
import { listErrorCodes } from 'scgi-core';
import { describe, expect, it } from 'vitest';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const rows = new Map<string, number>();
for (const m of readme.matchAll(/^\|\s*`(SCGI_ERR_[A-Z0-9_]+)`\s*\|\s*(\d{3})\s*\|/gm))
  rows.set(m[1]!, Number(m[2]));

describe('error code documentation', () => {
  it.each(
    listErrorCodes().map((e) => [e.code, e.statusCode] as const),
  )('%s is in the README table with status %i', (code, status) => {
    expect(rows.get(code)).toBe(status);
  });

  it('the README lists no unknown code', () => {
    const known = new Set(listErrorCodes().map((e) => e.code));
    expect([...rows.keys()].filter((c) => !known.has(c))).toEqual([]);
    expect(rows.size).toBe(known.size);
  });
});

// Every code is provoked by at least one test (a code nobody can trigger is either dead or untested).
describe('error code coverage', () => {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.name === 'node_modules' || e.name === 'dist') continue;
      const p = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(p);
      else if (p.endsWith('.test.ts') && !p.endsWith('error-docs.test.ts')) files.push(p);
    }
  };
  const root = new URL('..', import.meta.url).pathname;
  walk(`${root}test`);
  for (const pkg of ['scgi-core', 'fastify-plugin', 'express-mw'])
    walk(`${root}packages/${pkg}/test`);
  const corpus = files.map((f) => readFileSync(f, 'utf8')).join('\n');

  it.each(listErrorCodes().map((e) => e.code))('%s is asserted by a test', (code) => {
    expect(corpus).toContain(code);
  });
});
