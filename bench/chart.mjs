/**
 * Turns a suite result (bench/results/latest.json) into a bar chart (SVG, no dependencies) and a
 * markdown report. bench/run.mjs calls it after each run; it also runs on its own:
 *
 *   node bench/chart.mjs [--in bench/results/latest.json] [--no-docs]
 *
 * Writes chart.svg next to the JSON and, for a full run (not --quick) unless --no-docs, the
 * published copies docs/bench-chart.svg and docs/bench-results.md, and the results block of
 * docs/benchmarks.md.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import {
  checkTargets,
  ROUND_HEADER,
  renderTable,
  roundRow,
  SUMMARY_HEADER,
  summaryRows,
  TARGET_HEADER,
  targetRows,
} from './lib/report.mjs';
import { formatSummary } from './profile-summary.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DOCS = join(ROOT, 'docs');

const COLORS = {
  'fastify-unix': '#1f6fb4',
  'fastify-tcp': '#74a9d8',
  'fastify-heap': '#3c8dd9',
  'express-unix': '#2a9d4b',
  nginx: '#555555',
  'reply-from': '#e07b1a',
  'uwsgi-http': '#8e6bbf',
  'node-floor': '#b5b5b5',
  'fastify-floor': '#cfcfcf',
  'fastify-alone': '#a9c9e8',
  'express-alone': '#9fd3ad',
  'nginx-2w': '#222222',
  'fastify-2w': '#0e467a',
  'express-2w': '#17672f',
};

const CASE_TITLES = {
  tiny: 'tiny: GET, 10-byte body',
  '64k': '64k: GET, 64 KiB body',
  '16m': '16m: GET, 16 MiB body',
  upload: 'upload: POST 16 MiB, 8-byte answer',
};

/** The front a front's "x nginx" was taken against (JSON of older runs: nginx). */
const baselineOf = (front) => (front.baseline === undefined ? 'nginx' : front.baseline);

/**
 * The dashed baseline lines of a case: per baseline front that ran, its figure and the rows
 * (indexes into `entries`) from the first to the last front measured against it.
 */
function baselineSpans(c, entries) {
  const spans = [];
  for (const [base, f] of entries) {
    const rows = entries.flatMap(([, g], i) => (baselineOf(g) === base ? [i] : []));
    if (rows.length === 0 || !f.summary?.[c.metric]) continue;
    spans.push({
      base,
      value: f.summary[c.metric],
      first: Math.min(...rows),
      last: Math.max(...rows),
    });
  }
  return spans;
}

/**
 * "x nginx" of the 2-worker fronts is against nginx on 2 workers, of the FastCGI fronts against
 * nginx with keep-alive on the same backend: says so, if it happened.
 */
function baselineSentence(result) {
  const byBase = new Map();
  for (const c of result.cases) {
    for (const [name, f] of Object.entries(c.fronts)) {
      const base = baselineOf(f);
      if (base === null || base === 'nginx') continue;
      if (!byBase.has(base)) byBase.set(base, new Set());
      if (name !== base) byBase.get(base).add(name);
    }
  }
  return [...byBase]
    .map(([base, names]) => {
      const label = result.plan.fronts?.[base] ?? base;
      if (names.size === 0) return ` The "x nginx" of ${base} (${label}) is against itself (1.00).`;
      const why =
        base === 'nginx-2w' ? 'so both sides run on 2 workers' : 'in front of the same backend';
      return (
        ` For ${[...names].join(', ')}, "x nginx" is against ${base} (${label}) in the same round, ` +
        `${why}; ${base}'s own is 1.00.`
      );
    })
    .join('');
}

const esc = (s) =>
  String(s).replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
const num = (n) => Math.round(n).toLocaleString('en-US');

/** Horizontal bars per case: the median, a whisker for min-max over rounds, nginx dashed. */
export function renderSvg(result) {
  const width = 900;
  const labelW = 210;
  const barX = labelW + 10;
  const barW = 380;
  const barH = 16;
  const gap = 6;
  const parts = [];
  let y = 34;
  parts.push(
    `<text x="16" y="22" class="title">SCGI proxies in front of the same uWSGI app (higher is better)</text>`,
  );
  for (const c of result.cases) {
    const unit = c.metric === 'reqPerSec' ? 'req/s' : 'MB/s';
    const entries = Object.entries(c.fronts);
    const max = Math.max(1e-9, ...entries.flatMap(([, f]) => f.rounds.map((r) => r[c.metric])));
    const scale = (v) => (v / max) * barW;
    y += 20;
    parts.push(
      `<text x="16" y="${y}" class="case">${esc(CASE_TITLES[c.name] ?? c.name)} — ${unit}, ${c.connections} connections</text>`,
    );
    y += 8;
    const top = y;
    for (const [name, f] of entries) {
      const base = baselineOf(f);
      const s = f.summary;
      const values = f.rounds.map((r) => r[c.metric]);
      const value = s[c.metric] ?? 0;
      const mid = y + barH / 2;
      parts.push(
        `<text x="${labelW}" y="${mid + 4}" class="label" text-anchor="end">${esc(f.label ?? name)}</text>`,
        `<rect x="${barX}" y="${y}" width="${scale(value).toFixed(1)}" height="${barH}" fill="${COLORS[name] ?? '#888'}"/>`,
      );
      if (values.length > 1) {
        const x1 = barX + scale(Math.min(...values));
        const x2 = barX + scale(Math.max(...values));
        parts.push(
          `<line x1="${x1.toFixed(1)}" y1="${mid}" x2="${x2.toFixed(1)}" y2="${mid}" class="whisker"/>`,
          `<line x1="${x1.toFixed(1)}" y1="${mid - 4}" x2="${x1.toFixed(1)}" y2="${mid + 4}" class="whisker"/>`,
          `<line x1="${x2.toFixed(1)}" y1="${mid - 4}" x2="${x2.toFixed(1)}" y2="${mid + 4}" class="whisker"/>`,
        );
      }
      const ratio =
        s.vsBaseline && name !== base && name !== 'nginx'
          ? ` · ${s.vsBaseline.median.toFixed(2)}× ${base}`
          : '';
      const shown = c.metric === 'reqPerSec' ? num(value) : value.toFixed(0);
      parts.push(
        `<text x="${barX + barW + 8}" y="${mid + 4}" class="value">${shown} ${unit}${ratio} · p99 ${s.p99Ms?.toFixed(1) ?? '-'} ms</text>`,
      );
      y += barH + gap;
    }
    // Each baseline's line across the bars of the fronts measured against it.
    for (const span of baselineSpans(c, entries)) {
      const x = (barX + scale(span.value)).toFixed(1);
      const y1 = top + span.first * (barH + gap) - 4;
      const y2 = top + span.last * (barH + gap) + barH + 4;
      parts.push(`<line x1="${x}" y1="${y1}" x2="${x}" y2="${y2}" class="baseline"/>`);
    }
  }
  y += 24;
  const v = result.versions ?? {};
  parts.push(
    `<text x="16" y="${y}" class="foot">${esc(
      `${result.date.slice(0, 10)} · ${result.cpu}, ${result.cores} cores · Node ${result.node} · ${v.nginx ?? 'nginx ?'} · uWSGI ${v.uwsgi ?? '?'} · ${result.plan.rounds} round(s) of ${result.plan.duration} s, median; whiskers: min-max; dashed: nginx${
        hasOtherBaseline(result)
          ? ' (next to the 2-worker fronts: nginx on 2 workers; FastCGI: nginx with keep-alive)'
          : ''
      }`,
    )}</text>`,
  );
  y += 12;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}" font-family="system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif">
<style>
  .title { font-size: 15px; font-weight: 600; fill: #222; }
  .case { font-size: 13px; font-weight: 600; fill: #222; }
  .label, .value { font-size: 12px; fill: #333; }
  .foot { font-size: 10.5px; fill: #666; }
  .whisker { stroke: #111; stroke-width: 1; }
  .baseline { stroke: #000; stroke-width: 1; stroke-dasharray: 3 3; }
</style>
<rect width="100%" height="100%" fill="#ffffff"/>
${parts.join('\n')}
</svg>
`;
}

const hasOtherBaseline = (result) => baselineSentence(result) !== '';

/** Names the fronts that ran on some cases only (they are absent from the other tables). */
function partialSentence(result) {
  const all = new Set(result.cases.flatMap((c) => Object.keys(c.fronts)));
  const partial = [...all].filter((name) => result.cases.some((c) => !c.fronts[name]));
  if (partial.length === 0) return '';
  const where = (name) =>
    result.cases
      .filter((c) => c.fronts[name])
      .map((c) => c.name)
      .join(', ');
  return `Measured on some cases only: ${partial.map((n) => `${n} (${where(n)})`).join(', ')}. `;
}

/** The markdown report: targets, one table per case, the profile, the microbenchmarks. */
export function renderMarkdown(result, { chartPath, readmePath }) {
  const v = result.versions ?? {};
  const labels = Object.fromEntries(
    result.cases.flatMap((c) => Object.entries(c.fronts).map(([n, f]) => [n, f.label ?? n])),
  );
  const out = [
    '# Benchmark results',
    '',
    `Generated by \`npm run bench\` (bench/run.mjs, then bench/chart.mjs) on ${result.date}; do not edit by hand.`,
    `Method, fronts and caveats: [bench/README.md](${readmePath}). Raw figures: \`bench/results/latest.json\`.`,
    '',
    `Machine: ${result.cpu}, ${result.cores} cores, load average ${result.loadavgAtStart.join(' ')} at start, ${result.loadavgAtEnd?.join(' ') ?? '?'} at the end; ` +
      `Node ${result.node}, ${v.uwsgi ? `uWSGI ${v.uwsgi}` : ''}, ${v.nginx ?? ''}, ${v.python ?? ''}, ` +
      `fastify ${v.fastify}, express ${v.express}, @fastify/reply-from ${v['@fastify/reply-from']}, autocannon ${v.autocannon}.`,
    '',
    `Plan: ${result.plan.rounds} round(s) of ${result.plan.duration} s per front and case after a ${result.plan.warmup} s warm-up, ` +
      'fronts interleaved (A B C, then C B A); figures are medians over rounds. "x nginx" is the median of the per-round ' +
      "ratios to nginx on the case's main figure (req/s; MB/s for 16m and upload), with their range." +
      `${baselineSentence(result)} CPU% is of one core ` +
      '(/proc utime+stime over the round, summed over all processes of a front); peak RSS is VmHWM, reset before each round. ' +
      `${partialSentence(result)}Total time of the run: ${result.seconds} s.`,
    '',
    `![benchmark chart](${chartPath})`,
    '',
  ];
  if (result.targets?.length) {
    out.push(
      '## Targets',
      '',
      renderTable(TARGET_HEADER, targetRows(result.targets), { markdown: true }),
      '',
    );
  }
  out.push('## Results', '');
  for (const c of result.cases) {
    out.push(
      `### ${CASE_TITLES[c.name] ?? c.name} (${c.connections} connections)`,
      '',
      renderTable(SUMMARY_HEADER, summaryRows(c, labels), { markdown: true }),
      '',
    );
  }
  if (result.profile) {
    const p = result.profile;
    out.push(
      `## Where fastify-scgi spends its CPU (${p.case}, \`node --cpu-prof\`)`,
      '',
      `Top ${p.summary.top.length} functions by self time, from one ${result.plan.duration} s round on a separate front ` +
        `(${Math.round(p.reqPerSecWhileProfiled).toLocaleString('en-US')} req/s while profiled). Profile: \`${p.file}\`; ` +
        'summarize again with `node bench/profile-summary.mjs FILE`.',
      '',
      formatSummary(p.summary, { markdown: true }),
      '',
    );
  }
  if (result.core) {
    out.push(
      '## scgi-core microbenchmarks (bench/core.mjs)',
      '',
      renderTable(
        ['case', 'ops/s', 'µs/op', 'naive ops/s', 'ours/naive', 'spread'],
        result.core.cases.map((c) => [
          c.name,
          num(c.opsPerSec),
          c.usPerOp.toFixed(3),
          c.naiveOpsPerSec === null ? '-' : num(c.naiveOpsPerSec),
          c.ratio === null ? '-' : `${c.ratio.toFixed(2)}x`,
          `${(c.spread * 100).toFixed(1)}%`,
        ]),
        { markdown: true },
      ),
      '',
    );
  }
  if (result.warnings.length) {
    out.push('## Warnings from this run', '', ...result.warnings.map((w) => `- ${w}`), '');
  }
  out.push('## Every round', '', '<details><summary>per-round figures</summary>', '');
  for (const c of result.cases) {
    const rows = [];
    for (let i = 0; i < result.plan.rounds; i++) {
      for (const [name, f] of Object.entries(c.fronts))
        if (f.rounds[i]) rows.push(roundRow(name, f.rounds[i]));
    }
    out.push(`**${c.name}**`, '', renderTable(ROUND_HEADER, rows, { markdown: true }), '');
  }
  out.push('</details>', '');
  return out.join('\n');
}

const BLOCK_START = '<!-- bench-results:start (bench/chart.mjs writes this block) -->';
const BLOCK_END = '<!-- bench-results:end -->';

/**
 * The results block of docs/benchmarks.md: the chart, the targets, and one row per front with
 * its main figure and "x nginx" per case (the full tables stay in docs/bench-results.md). Links
 * are relative to docs/.
 */
export function renderSummaryBlock(result) {
  const cases = result.cases;
  const names = [...new Set(cases.flatMap((c) => Object.keys(c.fronts)))];
  const label = (name) =>
    cases.map((c) => c.fronts[name]?.label).find((l) => l !== undefined) ?? name;
  const cell = (c, name) => {
    const s = c.fronts[name]?.summary;
    if (!s) return '-';
    const value =
      c.metric === 'mbPerSec'
        ? `${s.mbPerSec.toFixed(0)} MB/s`
        : `${Math.round(s.reqPerSec).toLocaleString('en-US')} req/s`;
    const ratio = s.vsBaseline ? ` (${s.vsBaseline.median.toFixed(2)}x)` : '';
    return `${value}${ratio}`;
  };
  const header = ['front', ...cases.map((c) => c.name)];
  const rows = names.map((name) => [label(name), ...cases.map((c) => cell(c, name))]);
  const lines = [
    BLOCK_START,
    '',
    `Last full run: ${result.date.slice(0, 10)}, ${result.cpu}, ${result.cores} cores, Node ${result.node}. ` +
      'Medians over rounds; in brackets the ratio to nginx in the same rounds (2-worker fronts: to nginx on 2 workers). ' +
      'Every figure, CPU and memory column, the profile and the method: [bench-results.md](bench-results.md).',
    '',
    '![benchmark chart](bench-chart.svg)',
    '',
    renderTable(header, rows, { markdown: true }),
    '',
  ];
  if (result.targets?.length) {
    lines.push(renderTable(TARGET_HEADER, targetRows(result.targets), { markdown: true }), '');
  }
  lines.push(BLOCK_END);
  return lines.join('\n');
}

/** Replaces the results block of docs/benchmarks.md (between the markers); null when there is none. */
function updateSummaryBlock(block) {
  const path = join(DOCS, 'benchmarks.md');
  const text = readFileSync(path, 'utf8');
  const start = text.indexOf(BLOCK_START);
  const end = text.indexOf(BLOCK_END);
  if (start === -1 || end === -1 || end < start) return null;
  writeFileSync(path, text.slice(0, start) + block + text.slice(end + BLOCK_END.length));
  return path;
}

/**
 * Writes `<outDir>/chart.svg` and `<outDir>/results.md`; with `publish`, also
 * docs/bench-chart.svg, docs/bench-results.md and the results block of docs/benchmarks.md. Returns the
 * paths written.
 */
export function writeCharts(result, { outDir, publish }) {
  const svg = renderSvg(result);
  const written = [];
  const write = (path, text) => {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
    written.push(path);
  };
  write(join(outDir, 'chart.svg'), svg);
  const readme = join(ROOT, 'bench/README.md');
  write(
    join(outDir, 'results.md'),
    renderMarkdown(result, { chartPath: 'chart.svg', readmePath: relative(outDir, readme) }),
  );
  if (publish) {
    write(join(DOCS, 'bench-chart.svg'), svg);
    write(
      join(DOCS, 'bench-results.md'),
      renderMarkdown(result, { chartPath: 'bench-chart.svg', readmePath: relative(DOCS, readme) }),
    );
    const updated = updateSummaryBlock(renderSummaryBlock(result));
    if (updated !== null) written.push(updated);
  }
  return written;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const { values } = parseArgs({
    options: {
      in: { type: 'string', default: join(ROOT, 'bench/results/latest.json') },
      'no-docs': { type: 'boolean', default: false },
    },
  });
  const input = resolve(values.in);
  const result = JSON.parse(readFileSync(input, 'utf8'));
  // The targets as report.mjs defines them now (a JSON from before a new target lacks it).
  result.targets = checkTargets(result);
  const written = writeCharts(result, {
    outDir: dirname(input),
    publish: !values['no-docs'] && !result.quick,
  });
  console.log(`written: ${written.join(', ')}`);
}
