// Every error code of the registry is documented in the README with its status, and the README
// documents no code that does not exist.
import { readFileSync } from 'node:fs';
import { listErrorCodes } from 'scgi-core';
import { describe, expect, it } from 'vitest';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const rows = new Map<string, number>();
for (const m of readme.matchAll(/^\|\s*`(SCGI_ERR_[A-Z0-9_]+)`\s*\|\s*(\d{3})\s*\|/gm))
  rows.set(m[1]!, Number(m[2]));

describe('error code documentation', () => {
  it.each(listErrorCodes().map((e) => [e.code, e.statusCode] as const))(
    '%s is in the README table with status %i',
    (code, status) => {
      expect(rows.get(code)).toBe(status);
    },
  );

  it('the README lists no unknown code', () => {
    const known = new Set(listErrorCodes().map((e) => e.code));
    expect([...rows.keys()].filter((c) => !known.has(c))).toEqual([]);
    expect(rows.size).toBe(known.size);
  });
});
