/**
 * Summarizes a V8 CPU profile (`node --cpu-prof` writes `*.cpuprofile`): the functions with the
 * most self time, with file:line, and their inclusive ("total") time. Lines in the built
 * packages (dist/*.js) are mapped back to the TypeScript sources through the `.js.map` files.
 *
 *   node bench/profile-summary.mjs bench/results/fastify-tiny.cpuprofile [--top 25] [--json]
 *
 * Self time of a sample is the time until the next sample (as Chrome DevTools counts it).
 * Percentages are of the busy time: `(idle)` (the event loop waiting) is reported apart.
 */
import { existsSync, readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const maps = new Map();

/** The source map next to a built file, if any (cached; null when absent or unreadable). */
function sourceMapFor(file) {
  if (maps.has(file)) return maps.get(file);
  let map = null;
  if (file.endsWith('.js') && existsSync(`${file}.map`)) {
    try {
      map = new SourceMap(JSON.parse(readFileSync(`${file}.map`, 'utf8')));
    } catch {
      map = null;
    }
  }
  maps.set(file, map);
  return map;
}

/** `path:line` for a call frame (1-based line), repo-relative, mapped to .ts where possible. */
function location(frame, root) {
  const { url, lineNumber, columnNumber } = frame;
  if (!url) return '';
  if (!url.startsWith('file://')) return `${url}:${lineNumber + 1}`;
  const file = fileURLToPath(url);
  const map = sourceMapFor(file);
  if (map !== null && lineNumber >= 0) {
    const entry = map.findEntry(lineNumber, Math.max(0, columnNumber));
    if (entry?.originalSource) {
      const source = entry.originalSource.startsWith('file://')
        ? fileURLToPath(entry.originalSource)
        : resolve(dirname(file), entry.originalSource);
      return `${relative(root, source)}:${entry.originalLine + 1}`;
    }
  }
  return `${relative(root, file)}:${lineNumber + 1}`;
}

/**
 * @param {{ nodes: any[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }} profile
 * @param {{ top?: number, root?: string }} options
 */
export function summarizeProfile(profile, { top = 25, root = process.cwd() } = {}) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const child of n.children ?? []) parent.set(child, n.id);
  const keyOf = (n) => {
    const f = n.callFrame;
    return `${f.functionName}|${f.url}|${f.lineNumber}|${f.columnNumber}`;
  };

  const { samples, timeDeltas } = profile;
  const self = new Map();
  const total = new Map();
  let busyUs = 0;
  let idleUs = 0;
  for (let i = 0; i < samples.length; i++) {
    // Sample i lasts until sample i + 1; the last one gets the mean interval.
    const us =
      i + 1 < samples.length
        ? timeDeltas[i + 1]
        : (profile.endTime - profile.startTime) / Math.max(1, samples.length);
    const node = byId.get(samples[i]);
    if (node === undefined || us <= 0) continue;
    if (node.callFrame.functionName === '(idle)') {
      idleUs += us;
      continue;
    }
    busyUs += us;
    const key = keyOf(node);
    self.set(key, (self.get(key) ?? 0) + us);
    // Inclusive time: once per function per stack, so recursion is not counted twice.
    const seen = new Set();
    for (let id = node.id; id !== undefined; id = parent.get(id)) {
      const k = keyOf(byId.get(id));
      if (seen.has(k)) continue;
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + us);
    }
  }
  const frames = new Map(profile.nodes.map((n) => [keyOf(n), n.callFrame]));
  const pct = (us) => (busyUs > 0 ? Math.round((us / busyUs) * 1000) / 10 : 0);
  const ms = (us) => Math.round(us / 100) / 10;
  const rows = [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([key, us]) => {
      const frame = frames.get(key);
      return {
        function: frame.functionName || '(anonymous)',
        location: location(frame, root),
        selfMs: ms(us),
        selfPct: pct(us),
        totalMs: ms(total.get(key) ?? 0),
        totalPct: pct(total.get(key) ?? 0),
      };
    });
  return {
    durationMs: ms(profile.endTime - profile.startTime),
    busyMs: ms(busyUs),
    idleMs: ms(idleUs),
    samples: samples.length,
    top: rows,
  };
}

/** Plain-text table of a summary (also used by bench/run.mjs). */
export function formatSummary(summary, { markdown = false } = {}) {
  const header = ['#', 'self ms', 'self %', 'total %', 'function', 'location'];
  const rows = summary.top.map((r, i) => [
    String(i + 1),
    r.selfMs.toFixed(1),
    r.selfPct.toFixed(1),
    r.totalPct.toFixed(1),
    r.function,
    r.location || '(native)',
  ]);
  const intro = `${summary.samples} samples over ${summary.durationMs} ms: busy ${summary.busyMs} ms, idle ${summary.idleMs} ms; % of busy time`;
  if (markdown) {
    const esc = (c) => String(c).replaceAll('|', '\\|');
    const lines = [header, ['---:', '---:', '---:', '---:', '---', '---'], ...rows];
    return `${intro}\n\n${lines.map((r) => `| ${r.map(esc).join(' | ')} |`).join('\n')}`;
  }
  const widths = header.map((_, i) => Math.max(...[header, ...rows].map((r) => r[i].length)));
  const left = new Set([4, 5]);
  const line = (r) =>
    r.map((c, i) => (left.has(i) ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [intro, line(header), ...rows.map(line)].join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: 'string', default: '25' }, json: { type: 'boolean', default: false } },
  });
  if (positionals.length !== 1) {
    console.error('usage: node bench/profile-summary.mjs FILE.cpuprofile [--top 25] [--json]');
    process.exit(2);
  }
  const root = fileURLToPath(new URL('..', import.meta.url));
  const summary = summarizeProfile(JSON.parse(readFileSync(positionals[0], 'utf8')), {
    top: Number(values.top),
    root,
  });
  console.log(values.json ? JSON.stringify(summary, null, 2) : formatSummary(summary));
}
