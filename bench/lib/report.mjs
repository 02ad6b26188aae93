/**
 * Figures to text: medians over rounds, the targets the project holds itself to, and the tables
 * printed by bench/run.mjs and written by bench/chart.mjs (same rows, plain or markdown).
 */

export function median(values) {
  const sorted = values
    .filter((v) => typeof v === 'number' && Number.isFinite(v))
    .sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export const round3 = (x) => (x === null || x === undefined ? null : Math.round(x * 1000) / 1000);

/** Medians of every per-round figure, the ratio to the baseline and the spread. */
export function summarize(rounds, metric) {
  const pick = (f) => median(rounds.map(f));
  const primary = rounds.map((r) => r[metric]);
  const ratios = rounds.map((r) => r.vsBaseline).filter((v) => v !== null && v !== undefined);
  const p99Ratios = rounds.map((r) => r.p99VsBaseline).filter((v) => v !== null && v !== undefined);
  const mid = median(primary);
  return {
    reqPerSec: round3(pick((r) => r.reqPerSec)),
    mbPerSec: round3(pick((r) => r.mbPerSec)),
    p50Ms: round3(pick((r) => r.p50Ms)),
    p99Ms: round3(pick((r) => r.p99Ms)),
    cpu: {
      front: round3(pick((r) => r.cpu.front)),
      backend: round3(pick((r) => r.cpu.backend)),
      load: round3(pick((r) => r.cpu.load)),
    },
    frontCpuUsPerReq: round3(pick((r) => r.frontCpuUsPerReq)),
    peakRssMb: round3(Math.max(...rounds.map((r) => r.peakRssMb ?? 0))),
    failures: rounds.reduce((n, r) => n + r.errors + r.timeouts + r.non2xx, 0),
    vsBaseline:
      ratios.length === 0
        ? null
        : {
            median: round3(median(ratios)),
            min: round3(Math.min(...ratios)),
            max: round3(Math.max(...ratios)),
          },
    p99VsBaseline: p99Ratios.length === 0 ? null : round3(median(p99Ratios)),
    spread: mid ? round3((Math.max(...primary) - Math.min(...primary)) / mid) : null,
  };
}

/**
 * The engine's targets (issue 13): front CPU per request against the bare Node loop measured in
 * the same run, req/s against the HTTP proxies of each framework, and nginx on tiny.
 */
function engineTargets(get, ratioOf) {
  const out = [];
  const cpuRatio = (caseName, a, b) => {
    const ra = get(caseName, a)?.rounds;
    const rb = get(caseName, b)?.rounds;
    if (!ra || !rb) return null;
    const r = ra.map((x, i) =>
      rb[i]?.frontCpuUsPerReq ? x.frontCpuUsPerReq / rb[i].frontCpuUsPerReq : null,
    );
    return round3(median(r.filter((v) => v !== null)));
  };
  for (const caseName of ['tiny', '64k']) {
    out.push({
      target: `fastify-scgi front CPU per request <= 1.25x node-floor's (${caseName})`,
      value: cpuRatio(caseName, 'fastify-unix', 'node-floor'),
      want: 1.25,
      atMost: true,
    });
    out.push({
      target: `fastify-scgi >= 1.0x reply-from req/s (${caseName})`,
      value: ratioOf(caseName, 'fastify-unix', 'reply-from'),
      want: 1.0,
    });
    out.push({
      target: `express-scgi >= 1.0x http-proxy-middleware req/s (${caseName})`,
      value: ratioOf(caseName, 'express-unix', 'hpm'),
      want: 1.0,
    });
  }
  out.push({
    target: 'fastify-scgi >= 0.9x nginx req/s (tiny)',
    value: get('tiny', 'fastify-unix')?.summary.vsBaseline?.median ?? null,
    want: 0.9,
  });
  return out;
}

/**
 * The project's targets, checked against the medians of one run (null when a front or case was
 * not measured). Ratios are medians of per-round ratios: both fronts of a pair ran back to back.
 */
export function checkTargets(result) {
  const get = (caseName, front) => result.cases.find((c) => c.name === caseName)?.fronts[front];
  const ratioOf = (caseName, a, b) => {
    const ra = get(caseName, a)?.rounds;
    const rb = get(caseName, b)?.rounds;
    if (!ra || !rb) return null;
    const metric = result.cases.find((c) => c.name === caseName).metric;
    return round3(median(ra.map((r, i) => (rb[i] ? r[metric] / rb[i][metric] : null))));
  };
  const out = [];
  for (const caseName of ['tiny', '64k']) {
    out.push({
      target: `fastify-scgi >= 1.0x nginx req/s (${caseName})`,
      value: get(caseName, 'fastify-unix')?.summary.vsBaseline?.median ?? null,
      want: 1.0,
    });
    out.push({
      target: `fastify-scgi p99 <= nginx p99 (${caseName}), as p99 ratio`,
      value: get(caseName, 'fastify-unix')?.summary.p99VsBaseline ?? null,
      want: 1.0,
      atMost: true,
    });
    out.push({
      target: `fastify-scgi >= 2.0x reply-from req/s (${caseName})`,
      value: ratioOf(caseName, 'fastify-unix', 'reply-from'),
      want: 2.0,
    });
    out.push({
      target: `express-scgi >= 0.8x fastify-scgi req/s (${caseName})`,
      value: ratioOf(caseName, 'express-unix', 'fastify-unix'),
      want: 0.8,
    });
  }
  out.push({
    target: 'fastify-scgi >= 1.0x nginx MB/s (16 MiB response)',
    value: get('16m', 'fastify-unix')?.summary.vsBaseline?.median ?? null,
    want: 1.0,
  });
  out.push({
    target: 'fastify-scgi >= 1.0x nginx MB/s (16 MiB upload)',
    value: get('upload', 'fastify-unix')?.summary.vsBaseline?.median ?? null,
    want: 1.0,
  });
  // Both sides on 2 workers: fastify-2w's "x nginx" is against nginx-2w when that ran too.
  const vs2w = (caseName, front) => {
    const f = get(caseName, front);
    return f?.baseline === 'nginx-2w' ? f.summary : null;
  };
  for (const caseName of ['tiny', '64k']) {
    out.push({
      target: `fastify-scgi 2 workers >= 1.0x nginx 2 workers req/s (${caseName})`,
      value: vs2w(caseName, 'fastify-2w')?.vsBaseline?.median ?? null,
      want: 1.0,
    });
    out.push({
      target: `fastify-scgi 2 workers p99 <= nginx 2 workers p99 (${caseName})`,
      value: vs2w(caseName, 'fastify-2w')?.p99VsBaseline ?? null,
      want: 1.0,
      atMost: true,
    });
    out.push({
      target: `express-scgi 2 workers >= 0.8x fastify-scgi 2 workers req/s (${caseName})`,
      value: ratioOf(caseName, 'express-2w', 'fastify-2w'),
      want: 0.8,
    });
  }
  out.push(...engineTargets(get, ratioOf));
  out.push(...fastcgiTargets(get, ratioOf));
  for (const t of out) {
    t.met = t.value === null ? null : t.atMost ? t.value <= t.want : t.value >= t.want;
  }
  return out;
}

/**
 * The FastCGI targets of issue 14: against nginx with keep-alive on the same backend, against
 * reply-from on the same Python app; on PHP-FPM's 4 children with 32 connections (tiny), the
 * keep-alive throughput with a p99 no higher than nginx's without keep-alive; and the gain
 * keep-alive gives fastify-scgi on the Python FastCGI server (nginx got 1.7x on flup's).
 */
function fastcgiTargets(get, ratioOf) {
  const vsOwn = (caseName, front) => {
    const f = get(caseName, front);
    return f?.baseline && f.baseline !== 'nginx' ? f.summary : null;
  };
  const p99Ratio = (caseName, a, b) => {
    const ra = get(caseName, a)?.rounds;
    const rb = get(caseName, b)?.rounds;
    if (!ra || !rb) return null;
    return round3(median(ra.map((r, i) => (rb[i]?.p99Ms > 0 ? r.p99Ms / rb[i].p99Ms : null))));
  };
  const out = [];
  for (const caseName of ['tiny', '64k']) {
    for (const [app, front] of [
      ['PHP-FPM', 'fastify-fcgi-php'],
      ['Python', 'fastify-fcgi-py'],
    ]) {
      out.push({
        target: `fastify-scgi FastCGI >= 1.0x nginx keep-alive req/s (${app}, ${caseName})`,
        value: vsOwn(caseName, front)?.vsBaseline?.median ?? null,
        want: 1.0,
      });
    }
    out.push({
      target: `fastify-scgi FastCGI >= 1.5x reply-from req/s (same Python app, ${caseName})`,
      value: ratioOf(caseName, 'fastify-fcgi-py', 'reply-from-py'),
      want: 1.5,
    });
  }
  out.push({
    target: 'PHP-FPM 4 children: fastify-scgi FastCGI p99 <= nginx without keep-alive p99 (tiny)',
    value: p99Ratio('tiny', 'fastify-fcgi-php', 'nginx-fcgi-php'),
    want: 1.0,
    atMost: true,
  });
  out.push({
    target: 'fastify-scgi FastCGI keep-alive >= 1.7x keepAlive: false req/s (Python, tiny)',
    value: ratioOf('tiny', 'fastify-fcgi-py', 'fastify-fcgi-noka-py'),
    want: 1.7,
  });
  return out;
}

const int = (n) => (n === null ? '-' : Math.round(n).toLocaleString('en-US'));
const fixed = (n, d) => (n === null ? '-' : n.toFixed(d));

export const SUMMARY_HEADER = [
  'front',
  'req/s',
  'MB/s',
  'p50 ms',
  'p99 ms',
  'x nginx',
  'front CPU%',
  'CPU µs/req',
  'backend CPU%',
  'loadgen CPU%',
  'peak RSS MB',
  'failed',
];

/** One summary row per front of a case. */
export function summaryRows(caseResult, labels = {}) {
  const rows = [];
  for (const [name, front] of Object.entries(caseResult.fronts)) {
    const s = front.summary;
    const ratio = s.vsBaseline
      ? `${s.vsBaseline.median.toFixed(2)} (${s.vsBaseline.min.toFixed(2)}-${s.vsBaseline.max.toFixed(2)})`
      : '-';
    rows.push([
      labels[name] ?? name,
      int(s.reqPerSec),
      fixed(s.mbPerSec, 1),
      fixed(s.p50Ms, 2),
      fixed(s.p99Ms, 2),
      ratio,
      fixed(s.cpu.front, 0),
      fixed(s.frontCpuUsPerReq, 0),
      fixed(s.cpu.backend, 0),
      fixed(s.cpu.load, 0),
      fixed(s.peakRssMb, 0),
      String(s.failures),
    ]);
  }
  return rows;
}

/** One row per front and round (console progress and the appendix of the markdown). */
export const ROUND_WIDTHS = [5, 12, 7, 7, 7, 7, 7];
export const ROUND_HEADER = [
  'round',
  'front',
  'req/s',
  'MB/s',
  'p50 ms',
  'p99 ms',
  'x nginx',
  'front CPU%',
  'backend CPU%',
  'loadgen CPU%',
  'peak RSS MB',
];

export function roundRow(name, r) {
  return [
    String(r.round + 1),
    name,
    int(r.reqPerSec),
    fixed(r.mbPerSec, 1),
    fixed(r.p50Ms, 2),
    fixed(r.p99Ms, 2),
    r.vsBaseline === null ? '-' : r.vsBaseline.toFixed(2),
    fixed(r.cpu.front, 0),
    fixed(r.cpu.backend, 0),
    fixed(r.cpu.load, 0),
    fixed(r.peakRssMb, 0),
  ];
}

const LEFT = new Set(['front', 'target', 'function', 'location', 'case', 'impl']);

/** Aligned plain text, or a GitHub markdown table. */
export function renderTable(header, rows, { markdown = false, minWidths = [] } = {}) {
  if (markdown) {
    const align = header.map((h) => (LEFT.has(h) ? '---' : '---:'));
    const esc = (cell) => String(cell).replaceAll('|', '\\|');
    return [header, align, ...rows].map((r) => `| ${r.map(esc).join(' | ')} |`).join('\n');
  }
  const widths = header.map((_, i) =>
    Math.max(minWidths[i] ?? 0, ...[header, ...rows].map((r) => String(r[i]).length)),
  );
  const line = (r) =>
    r
      .map((cell, i) =>
        LEFT.has(header[i]) ? String(cell).padEnd(widths[i]) : String(cell).padStart(widths[i]),
      )
      .join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function targetRows(targets) {
  return targets.map((t) => [
    t.target,
    t.value === null ? 'not measured' : t.value.toFixed(2),
    `${t.atMost ? '<=' : '>='} ${String(t.want)}`,
    t.met === null ? '-' : t.met ? 'met' : 'NOT met',
  ]);
}
export const TARGET_HEADER = ['target', 'measured', 'wanted', 'verdict'];
