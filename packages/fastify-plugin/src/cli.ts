#!/usr/bin/env node
/**
 * `fastify-scgi`: an SCGI app behind Fastify in one command, for development and small
 * deployments, where an nginx `location` with `scgi_pass` (and maybe a static `alias`) would do.
 * Flags are parsed and checked in cli-args.ts; this file only builds the server, and closes it
 * on SIGTERM / SIGINT.
 */
import { readFileSync } from 'node:fs';
import Fastify, { type FastifyInstance } from 'fastify';
import type { ScgiProxyOptions } from 'scgi-core';
import { type CliConfig, HELP, parseCli, UsageError } from './cli-args.js';
import fastifyScgi from './index.js';

/** Exit codes: 2 for a mistake on the command line (as getopt tools do), 1 for a failed start. */
const EXIT_USAGE = 2;
const EXIT_FAILED = 1;
/**
 * A close that takes longer than this is given up: the plugin's closeGrace (10 s) plus the
 * workers' SIGTERM-to-SIGKILL delay (5 s) and some slack.
 */
const FORCE_EXIT_MS = 20_000;
/** Codes of scgi-core that mean the options given were wrong, not that the start failed. */
const USAGE_CODES = new Set(['SCGI_ERR_INVALID_OPTION', 'SCGI_ERR_INVALID_ADDRESS']);

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  return String(pkg.version);
}

function fail(message: string, code: number): never {
  process.stderr.write(`fastify-scgi: ${message}\n`);
  process.exit(code);
}

/**
 * Node checks the request-head and request deadlines of open connections every
 * connectionsCheckingInterval (30 s by default): a shorter period keeps the cut close to the
 * deadline. A quarter of headersTimeout, between 100 ms and 5 s.
 */
function checkingInterval(headersTimeout: number): number {
  return Math.min(5000, Math.max(100, Math.floor(headersTimeout / 4)));
}

function proxyOptions(config: CliConfig): ScgiProxyOptions {
  if (config.spawn === null) {
    return { upstream: config.upstream.length === 1 ? config.upstream[0]! : config.upstream };
  }
  return {
    spawn: { command: config.spawn.command, args: config.spawn.args, instances: config.workers },
  };
}

function create(config: CliConfig): FastifyInstance {
  return Fastify({
    logger: { level: config.logLevel },
    // Fastify sets the server's requestTimeout from its own option after creating the server
    // (0 unless given), so both carry it; headersTimeout and the checking interval only exist
    // as Node server options.
    requestTimeout: config.requestTimeout,
    http: {
      headersTimeout: config.headersTimeout,
      requestTimeout: config.requestTimeout,
      connectionsCheckingInterval: checkingInterval(config.headersTimeout),
    },
  });
}

async function mount(app: FastifyInstance, config: CliConfig): Promise<void> {
  await app.register(fastifyScgi, { ...proxyOptions(config), prefix: config.prefix });
  if (config.statics.length > 0) {
    // Loaded only when asked for: the plugin and the CLI without --static never pay for it.
    const { default: fastifyStatic } = await import('@fastify/static');
    for (const [i, mount] of config.statics.entries()) {
      await app.register(fastifyStatic, {
        root: mount.dir,
        prefix: mount.url,
        // `reply.sendFile` may be decorated once per instance.
        decorateReply: i === 0,
      });
    }
  }
}

async function main(argv: readonly string[]): Promise<void> {
  let config: CliConfig;
  try {
    config = parseCli(argv);
  } catch (err) {
    if (err instanceof UsageError) fail(err.message, EXIT_USAGE);
    throw err;
  }
  if (config.help) {
    process.stdout.write(HELP);
    return;
  }
  if (config.version) {
    process.stdout.write(`${version()}\n`);
    return;
  }

  let app: FastifyInstance | undefined;
  let closing: Promise<void> | undefined;
  const shutdown = (signal: NodeJS.Signals) => {
    if (closing !== undefined) {
      // A second signal: leave now. scgi-core's exit cleanup still stops spawned workers.
      app?.log.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(EXIT_FAILED);
    }
    app?.log.info({ signal }, 'closing: requests in flight may finish');
    setTimeout(() => {
      app?.log.error('close took too long: exiting');
      process.exit(EXIT_FAILED);
    }, FORCE_EXIT_MS).unref();
    // Fastify answers new requests 503 while closing, the plugin lets requests in flight finish
    // within closeGrace, then stops spawned workers and removes their sockets.
    closing = (app?.close() ?? Promise.resolve()).then(
      () => process.exit(0),
      (err: Error) => {
        app?.log.error({ err }, 'close failed');
        process.exit(EXIT_FAILED);
      },
    );
  };
  // Installed before the workers start: a signal during start-up closes what started so far.
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);

  try {
    app = create(config);
    await mount(app, config);
    const url = await app.listen({ port: config.port, host: config.host });
    const backend = config.spawn === null ? config.upstream : app.scgiProxy.options.spawn?.sockets;
    app.log.info(
      { url, prefix: config.prefix || '/', backend, static: config.statics },
      'fastify-scgi ready',
    );
  } catch (err) {
    const e = err as { code?: string; message?: string };
    await app?.close().catch(() => {});
    if (closing !== undefined) return;
    const code = e.code !== undefined && USAGE_CODES.has(e.code) ? EXIT_USAGE : EXIT_FAILED;
    fail(`${e.code !== undefined ? `${e.code}: ` : ''}${e.message ?? String(err)}`, code);
  }
}

main(process.argv.slice(2)).catch((err: Error) => fail(err.stack ?? String(err), EXIT_FAILED));
