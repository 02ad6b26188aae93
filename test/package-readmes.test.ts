// What the registry shows and ships for each package: a README that stands on its own (no links
// into the monorepo), whose generated parts (scripts/docs.mjs) are up to date, whose error table
// is the registry of codes (listErrorCodes), and a LICENSE identical to the root one.
import { readFileSync } from 'node:fs';
import { listErrorCodes, PROXY_OPTIONS } from 'scgi-core';
import { describe, expect, it } from 'vitest';
import { badLinks, PACKAGE_READMES, render } from '../scripts/docs.mjs';

const read = (path: string) => readFileSync(new URL(`../${path}`, import.meta.url), 'utf8');
const rootReadme = read('README.md');

describe.each(PACKAGE_READMES)('packages/$dir', ({ dir, name, level }) => {
  const readme = read(`packages/${dir}/README.md`);

  it('README is up to date with scripts/docs.mjs (run `node scripts/docs.mjs`)', () => {
    const fresh = render(readme, {
      descriptors: PROXY_OPTIONS,
      codes: listErrorCodes(),
      rootReadme,
      level,
    });
    expect(readme).toBe(fresh);
  });

  it('README error table lists every code with its status, and no other', () => {
    const rows = new Map<string, number>();
    for (const m of readme.matchAll(/^\|\s*`(SCGI_ERR_[A-Z0-9_]+)`\s*\|\s*(\d{3})\s*\|/gm))
      rows.set(m[1]!, Number(m[2]));
    expect(Object.fromEntries(rows)).toEqual(
      Object.fromEntries(listErrorCodes().map((e) => [e.code, e.statusCode])),
    );
  });

  it('README links resolve on the registry page (absolute URLs or its own headings)', () => {
    expect(badLinks(readme)).toEqual([]);
    expect(readme.startsWith(`# ${name}\n`)).toBe(true);
  });

  it('README has an install line, the compatibility and a quick start', () => {
    expect(readme).toContain(`\nnpm i ${name}\n`);
    expect(readme).toMatch(/\n## Compatibility\n[\s\S]*>= 20\.19/);
    expect(readme).toContain('\n## Quick start\n');
  });

  it('LICENSE is the root LICENSE', () => {
    expect(read(`packages/${dir}/LICENSE`)).toBe(read('LICENSE'));
    expect(read('LICENSE')).toMatch(
      /^MIT License\n\nCopyright \(c\) \d{4} scgi-proxy contributors\n/,
    );
  });

  it('package.json has what the registry shows and a stranger needs', () => {
    const pkg = JSON.parse(read(`packages/${dir}/package.json`));
    expect(pkg.name).toBe(name);
    expect(pkg.license).toBe('MIT');
    expect(pkg.description.length).toBeGreaterThan(20);
    expect(pkg.keywords).toEqual(expect.arrayContaining(['scgi', 'proxy']));
    expect(pkg.engines.node).toBe(JSON.parse(read('package.json')).engines.node);
    expect(pkg.files).toEqual(expect.arrayContaining(['dist', 'README.md', 'LICENSE']));
  });
});
