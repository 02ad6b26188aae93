/**
 * A vitest reporter that ends the run with one line: how many tests were skipped and which
 * Debian packages would run them, e.g.
 * `skipped 12 tests: install uwsgi-core uwsgi-plugin-python3 nginx-light to run them`.
 *
 * It comes after vitest's own reporter in vitest.config.ts, so vitest's output and its summary
 * stay as they are (CI reads those); this line follows them. The packages come from the skip
 * lines test/helpers/binaries.ts prints while a test file is collected, and only from files in
 * which something was skipped. Nothing is printed when nothing was skipped.
 */
import type { UserConsoleLog } from 'vitest';
import type { Reporter, TestModule, Vitest } from 'vitest/node';
import { DEBIAN_PACKAGES, packagesOfSkipLine } from './binaries.js';

/** `.ci/run`'s order, so the line reads the same from run to run. */
const ORDER = Object.values(DEBIAN_PACKAGES).flatMap((p) => p.split(' '));
const rank = (p: string) => (ORDER.includes(p) ? ORDER.indexOf(p) : ORDER.length);

export default class SkipSummaryReporter implements Reporter {
  private vitest: Vitest | undefined;
  /** Skip lines by the id of the task (file, suite or test) that printed them. */
  private readonly lines = new Map<string, Set<string>>();
  /** Skip lines printed outside any task. */
  private readonly loose = new Set<string>();

  onInit(vitest: Vitest): void {
    this.vitest = vitest;
    this.lines.clear();
    this.loose.clear();
  }

  onUserConsoleLog(log: UserConsoleLog): void {
    const packages = packagesOfSkipLine(log.content);
    if (packages === undefined) return;
    if (log.taskId === undefined) {
      for (const p of packages) this.loose.add(p);
      return;
    }
    const set = this.lines.get(log.taskId) ?? new Set<string>();
    for (const p of packages) set.add(p);
    this.lines.set(log.taskId, set);
  }

  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let skipped = 0;
    const packages = new Set<string>();
    for (const module of testModules) {
      const ids = new Set<string>([module.id]);
      for (const suite of module.children.allSuites()) ids.add(suite.id);
      let here = 0;
      for (const test of module.children.allTests()) {
        ids.add(test.id);
        if (test.result().state === 'skipped') here++;
      }
      if (here === 0) continue;
      skipped += here;
      for (const id of ids) for (const p of this.lines.get(id) ?? []) packages.add(p);
    }
    if (skipped === 0) return;
    if (packages.size === 0) for (const p of this.loose) packages.add(p);
    const what = `skipped ${skipped} test${skipped === 1 ? '' : 's'}`;
    const line =
      packages.size === 0
        ? what
        : `${what}: install ${[...packages].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b)).join(' ')} to run them`;
    (this.vitest?.logger ?? console).log(line);
  }
}
