import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';
import SkipSummaryReporter from './test/helpers/skip-summary.js';

const src = (p: string) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  resolve: {
    // Tests run against the TypeScript sources; test/exports.test.ts checks the built packages.
    alias: {
      'scgi-core/adapter': src('./packages/scgi-core/src/adapter.ts'),
      'scgi-core': src('./packages/scgi-core/src/index.ts'),
      'fastify-scgi': src('./packages/fastify-plugin/src/index.ts'),
      'express-scgi': src('./packages/express-mw/src/index.ts'),
    },
  },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // vitest's own output and summary first, then one line naming what skipped and why.
    reporters: ['default', new SkipSummaryReporter()],
  },
});
