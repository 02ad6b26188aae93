// Writes the generated parts of the package READMEs (the registry's page of each package): one
// section per engine option with its type and default, and the error-code table. The sources are
// the engine's descriptor table (PROXY_OPTIONS, packages/scgi-core/src/engine/options.ts), the error
// registry (listErrorCodes, packages/scgi-core/src/errors.ts) and, for the prose, the root
// README's option and error tables, which test/options-doc.test.ts and test/error-docs.test.ts
// already hold to those two. test/package-readmes.test.ts checks the output is up to date.
//
//   npm run build && node scripts/docs.mjs          rewrite the READMEs
//   node scripts/docs.mjs --check                   exit 1 when a README is out of date
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The package READMEs with generated blocks, and the heading level of their option sections. */
export const PACKAGE_READMES = Object.freeze([
  { dir: 'scgi-core', name: 'scgi-core', level: 3 },
  { dir: 'fastify-plugin', name: 'fastify-scgi', level: 4 },
  { dir: 'express-mw', name: 'express-scgi', level: 4 },
]);

/** `| \`name\` | cells... |` rows of the tables in the section under `heading`. */
function tableRows(readme, heading) {
  const start = readme.indexOf(`\n${heading}\n`);
  if (start === -1) throw new Error(`README has no "${heading}" section`);
  const end = readme.indexOf('\n## ', start + 1);
  return readme
    .slice(start, end === -1 ? undefined : end)
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .map((line) =>
      line
        .split('|')
        .slice(1, -1)
        .map((c) => c.trim()),
    );
}

/** Option name -> its meaning, from the root README's Options and Pools tables. */
export function optionMeanings(rootReadme) {
  const out = new Map();
  for (const section of ['## Options', '## Pools of backends']) {
    for (const [names, , meaning] of tableRows(rootReadme, section)) {
      for (const m of names.matchAll(/`([A-Za-z]+)`/g)) out.set(m[1], meaning);
    }
  }
  return out;
}

/** Error code -> its meaning, from the root README's Errors table. */
export function errorMeanings(rootReadme) {
  const out = new Map();
  for (const [code, , meaning] of tableRows(rootReadme, '## Errors')) {
    out.set(code.replaceAll('`', ''), meaning);
  }
  return out;
}

/** One section per engine option: heading, type and default, then what it does. */
export function renderOptions(descriptors, meanings, level) {
  const hashes = '#'.repeat(level);
  return descriptors
    .map((d) => {
      const type = d.type;
      if (type === undefined) throw new Error(`scripts/docs.mjs: no type for option ${d.name}`);
      const meaning = meanings.get(d.name);
      if (meaning === undefined) {
        throw new Error(`option ${d.name} is not in the root README's tables: document it there`);
      }
      // A table cell read as a sentence.
      const text = meaning.charAt(0).toUpperCase() + meaning.slice(1);
      return `${hashes} \`${d.name}\`\n\nType: \`${type}\` · Default: ${d.default}\n\n${text}\n`;
    })
    .join('\n');
}

/** The error table: every code of the registry, in its order, with status and meaning. */
export function renderErrors(codes, meanings) {
  const rows = codes.map(({ code, statusCode }) => {
    const meaning = meanings.get(code);
    if (meaning === undefined) {
      throw new Error(`error ${code} is not in the root README's table: document it there`);
    }
    return `| \`${code}\` | ${statusCode} | ${meaning} |`;
  });
  return ['| code | status | meaning |', '| --- | ---: | --- |', ...rows, ''].join('\n');
}

const marker = (name, end) =>
  end
    ? `<!-- generated:${name}:end -->`
    : `<!-- generated:${name}:start (scripts/docs.mjs writes this block) -->`;

/** Replaces the text between the start and end markers of block `name`. */
export function replaceBlock(text, name, body) {
  const start = text.indexOf(marker(name, false));
  const end = text.indexOf(marker(name, true));
  if (start === -1 || end === -1 || end < start) {
    throw new Error(`no generated:${name} block (start and end markers) in the README`);
  }
  return `${text.slice(0, start + marker(name, false).length)}\n\n${body}\n${text.slice(end)}`;
}

/** GitHub's and npm's anchor for a heading. */
export function slug(heading) {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\- _]/gu, '')
    .replaceAll(' ', '-');
}

/**
 * Links a package README may hold: absolute URLs, and anchors of its own headings. A relative
 * link into the monorepo (`../../README.md`) is dead on the registry's page.
 */
export function badLinks(text) {
  const anchors = new Set(
    [...text.matchAll(/^#{1,6} (.+)$/gm)].map((m) => slug(m[1].replace(/`/g, ''))),
  );
  const bad = [];
  for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
    const href = m[1];
    if (/^https?:\/\//.test(href)) continue;
    if (href.startsWith('#') && anchors.has(href.slice(1))) continue;
    bad.push(href);
  }
  return bad;
}

/** The README of `pkg` with its generated blocks brought up to date. */
export function render(text, { descriptors, codes, rootReadme, level }) {
  let out = replaceBlock(
    text,
    'options',
    renderOptions(descriptors, optionMeanings(rootReadme), level),
  );
  out = replaceBlock(out, 'errors', renderErrors(codes, errorMeanings(rootReadme)));
  const bad = badLinks(out);
  if (bad.length > 0)
    throw new Error(`links that do not resolve on the registry: ${bad.join(' ')}`);
  return out;
}

async function main(check) {
  const core = await import(pathToFileURL(`${ROOT}packages/scgi-core/dist/index.js`).href).catch(
    () => {
      throw new Error('scgi-core is not built: run `npx tsc -b` first');
    },
  );
  const rootReadme = readFileSync(`${ROOT}README.md`, 'utf8');
  const stale = [];
  for (const { dir, level } of PACKAGE_READMES) {
    const path = `${ROOT}packages/${dir}/README.md`;
    const text = readFileSync(path, 'utf8');
    const next = render(text, {
      descriptors: core.PROXY_OPTIONS,
      codes: core.listErrorCodes(),
      rootReadme,
      level,
    });
    if (next === text) continue;
    stale.push(`packages/${dir}/README.md`);
    if (!check) writeFileSync(path, next);
  }
  if (check && stale.length > 0) {
    process.stderr.write(`out of date (run node scripts/docs.mjs): ${stale.join(', ')}\n`);
    process.exitCode = 1;
  } else if (!check) {
    process.stdout.write(stale.length > 0 ? `updated ${stale.join(', ')}\n` : 'up to date\n');
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main(process.argv.includes('--check'));
}
