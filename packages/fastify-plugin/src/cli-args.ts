/**
 * The command line of `fastify-scgi` (dist/cli.js): parsed with `node:util` `parseArgs`, checked
 * up front, so that a mistake is one line naming the flag and exit code 2 before anything starts.
 */
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { closest, distance } from 'fastest-levenshtein';
import { parseAddress } from 'scgi-core';

/** A mistake on the command line: printed as one line, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface StaticMount {
  /** URL prefix, `/static`. */
  readonly url: string;
  /** Absolute directory. */
  readonly dir: string;
}

export interface CliConfig {
  readonly help: boolean;
  readonly version: boolean;
  /** Addresses of existing SCGI backends (a pool when several); empty with `spawn`. */
  readonly upstream: readonly string[];
  /** The worker command line split into words, `{socket}` still in place; null with `upstream`. */
  readonly spawn: { readonly command: string; readonly args: readonly string[] } | null;
  readonly workers: number;
  /** Mount prefix for the plugin: '' (root) or `/app`. */
  readonly prefix: string;
  readonly port: number;
  readonly host: string;
  readonly statics: readonly StaticMount[];
  readonly logLevel: LogLevel;
  readonly headersTimeout: number;
  readonly requestTimeout: number;
}

export const DEFAULTS = Object.freeze({
  port: 8080,
  host: '127.0.0.1',
  workers: 2,
  logLevel: 'info' as LogLevel,
  // Node cuts a connection whose request head is not complete after headersTimeout, checked every
  // connectionsCheckingInterval (see cli.ts): 30 s + 5 s bounds a client that sends its headers
  // a byte at a time (slowloris) well under a minute. nginx's client_header_timeout is 60 s.
  headersTimeout: 30_000,
  // Node's own default, which Fastify turns off (its `requestTimeout` is 0): bounds a body sent
  // a byte at a time, where the proxy's idleTimeout restarts with every byte.
  requestTimeout: 300_000,
});

export const HELP = `Usage: fastify-scgi (--upstream ADDRESS... | --spawn "COMMAND {socket}") [options]

Serve an SCGI app (flup, uWSGI --scgi-socket, Python scgi...) over HTTP with Fastify: the
one-line version of an nginx "location /app { scgi_pass ...; }" block.

Backend (one of):
  -u, --upstream ADDRESS   SCGI backend: unix:/run/app.sock, /run/app.sock, host:port or
                           [::1]:port. Repeat it for a pool (round-robin, failover).
  -s, --spawn "COMMAND"    start and supervise the backend: a command line in which {socket}
                           becomes each worker's Unix socket (also $SCGI_SOCKET), e.g.
                           --spawn "python3 app.py --socket {socket}"
  -w, --workers N          workers for --spawn (default ${DEFAULTS.workers})

HTTP side:
  -P, --prefix PATH        mount path, sent to the app as SCRIPT_NAME (default: /, the root)
  -p, --port N             port to listen on (default ${DEFAULTS.port}; 0 picks a free one)
      --host ADDRESS       address to listen on (default ${DEFAULTS.host}; 0.0.0.0 for all)
      --static URL=DIR     serve the files of DIR at URL, e.g. --static /static=./public
                           (repeatable; GET and HEAD, with @fastify/static)
      --headers-timeout MS cut a client whose request head takes longer (default ${DEFAULTS.headersTimeout})
      --request-timeout MS cut a client whose whole request takes longer; 0 disables
                           (default ${DEFAULTS.requestTimeout})
      --log-level LEVEL    ${LOG_LEVELS.join(', ')} (default ${DEFAULTS.logLevel}); JSON lines on stdout

  -h, --help               this text
  -v, --version            the version

SIGTERM or SIGINT closes gracefully: requests in flight may finish (10 s), spawned workers are
stopped and their sockets removed, then the exit code is 0. Mistakes on the command line exit
with code 2, a failure at start with code 1.

Examples:
  fastify-scgi --upstream unix:/run/app.sock --prefix /app --port 8080
  fastify-scgi --spawn "uwsgi --plugin python3 --scgi-socket {socket} --wsgi-file app.py" -w 4
  fastify-scgi -u 127.0.0.1:9000 -u 127.0.0.1:9001 --static /static=./public
`;

const OPTIONS = {
  upstream: { type: 'string', short: 'u', multiple: true },
  spawn: { type: 'string', short: 's' },
  workers: { type: 'string', short: 'w' },
  prefix: { type: 'string', short: 'P' },
  port: { type: 'string', short: 'p' },
  host: { type: 'string' },
  static: { type: 'string', multiple: true },
  'log-level': { type: 'string' },
  'headers-timeout': { type: 'string' },
  'request-timeout': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const;

/** parseArgs' own messages are long and suggest `--`; ours name the flag and stop there. */
function usageFromParseError(err: unknown): UsageError {
  const e = err as { code?: string; message?: string };
  const quoted = /'([^']+)'/.exec(e.message ?? '')?.[1] ?? '';
  switch (e.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': {
      const flag = quoted.split('=')[0]!;
      const name = flag.replace(/^-+/, '');
      const guess = closest(name, Object.keys(OPTIONS));
      // The rule of scgi-core's option checks: a third of the length in edits, at least two.
      const near =
        name.length > 1 && distance(name, guess) <= Math.max(2, Math.floor(name.length / 3));
      const hint = near ? `; did you mean --${guess}?` : '';
      return new UsageError(`unknown option ${flag}${hint} (see --help)`);
    }
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      // "Option '-p, --port <value>' argument missing": name the long form.
      const flag = /--[\w-]+/.exec(quoted)?.[0] ?? quoted.split(' ')[0]!;
      if (/argument missing/.test(e.message ?? '')) return new UsageError(`${flag} needs a value`);
      if (/ambiguous/.test(e.message ?? '')) {
        return new UsageError(
          `${flag} needs a value (write ${flag}=VALUE for one that starts with -)`,
        );
      }
      return new UsageError(`${flag}: ${firstLine(e.message)}`);
    }
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return new UsageError(
        `unexpected argument ${JSON.stringify(quoted)} (options start with --)`,
      );
    default:
      return new UsageError(firstLine(e.message));
  }
}

function firstLine(text: string | undefined): string {
  return (text ?? 'invalid arguments').split('\n')[0]!;
}

function integer(
  flag: string,
  text: string | undefined,
  fallback: number,
  min: number,
  max: number,
) {
  if (text === undefined) return fallback;
  const n = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(
      `${flag} must be a whole number from ${min} to ${max}, not ${JSON.stringify(text)}`,
    );
  }
  return n;
}

/**
 * Splits a command line into words the way a POSIX shell would for plain words, single and
 * double quotes and backslashes, without expanding anything (no variables, globs or pipes): the
 * worker is started directly, not through a shell, so signals reach it and not a `sh -c`.
 */
export function splitCommand(line: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote === "'") {
      if (c === "'") quote = null;
      else word += c;
    } else if (quote === '"') {
      if (c === '"') quote = null;
      else if (c === '\\' && i + 1 < line.length && '"\\$`'.includes(line[i + 1]!))
        word += line[++i];
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === '\\') {
      if (i + 1 < line.length) word += line[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote !== null)
    throw new UsageError(`--spawn: unbalanced ${quote} quote in ${JSON.stringify(line)}`);
  if (inWord) words.push(word);
  return words;
}

function normalizePrefix(flag: string, text: string): string {
  const trimmed = text.replace(/\/+$/, '');
  if (trimmed !== '' && !trimmed.startsWith('/')) {
    throw new UsageError(`${flag} must start with /, e.g. /app (got ${JSON.stringify(text)})`);
  }
  return trimmed;
}

function parseStatic(text: string, cwd: string): StaticMount {
  const eq = text.indexOf('=');
  if (eq === -1)
    throw new UsageError(
      `--static takes URL=DIR, e.g. /static=./public (got ${JSON.stringify(text)})`,
    );
  const url = normalizePrefix('--static URL', text.slice(0, eq));
  if (url === '')
    throw new UsageError('--static URL cannot be the root: give a path such as /static');
  const given = text.slice(eq + 1);
  if (given === '') throw new UsageError(`--static ${text}: DIR is empty`);
  const dir = resolve(cwd, given);
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    // missing: reported below
  }
  if (!isDir) throw new UsageError(`--static ${text}: ${given} is not a directory`);
  return { url, dir };
}

/** Parses and checks the arguments (without the `node` and script paths). */
export function parseCli(argv: readonly string[], cwd = process.cwd()): CliConfig {
  let values: ReturnType<typeof parseArgs<{ options: typeof OPTIONS }>>['values'];
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: OPTIONS,
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw usageFromParseError(err);
  }
  const help = values.help === true;
  const version = values.version === true;
  const upstream = values.upstream ?? [];
  const base = { help, version, upstream, spawn: null, workers: DEFAULTS.workers, prefix: '' };
  if (help || version) {
    return {
      ...base,
      port: DEFAULTS.port,
      host: DEFAULTS.host,
      statics: [],
      logLevel: DEFAULTS.logLevel,
      headersTimeout: DEFAULTS.headersTimeout,
      requestTimeout: DEFAULTS.requestTimeout,
    };
  }
  if (upstream.length === 0 && values.spawn === undefined) {
    throw new UsageError(
      'give the backend with --upstream ADDRESS or --spawn "COMMAND {socket}" (see --help)',
    );
  }
  if (upstream.length > 0 && values.spawn !== undefined) {
    throw new UsageError('--upstream and --spawn cannot be used together');
  }
  for (const address of upstream) {
    try {
      parseAddress(address);
    } catch (err) {
      throw new UsageError(`--upstream: ${(err as Error).message}`);
    }
  }
  let spawn: CliConfig['spawn'] = null;
  if (values.spawn !== undefined) {
    const words = splitCommand(values.spawn);
    if (words.length === 0)
      throw new UsageError('--spawn needs a command, e.g. "python3 app.py {socket}"');
    spawn = { command: words[0]!, args: words.slice(1) };
  } else if (values.workers !== undefined) {
    throw new UsageError(
      '--workers goes with --spawn (with --upstream, the backend sizes its own pool)',
    );
  }
  const logLevel = values['log-level'] ?? DEFAULTS.logLevel;
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new UsageError(
      `--log-level must be one of ${LOG_LEVELS.join(', ')}, not ${JSON.stringify(logLevel)}`,
    );
  }
  const host = values.host ?? DEFAULTS.host;
  if (host === '') throw new UsageError('--host cannot be empty');
  const headersTimeout = integer(
    '--headers-timeout',
    values['headers-timeout'],
    DEFAULTS.headersTimeout,
    1,
    3_600_000,
  );
  const requestTimeout = integer(
    '--request-timeout',
    values['request-timeout'],
    DEFAULTS.requestTimeout,
    0,
    86_400_000,
  );
  // Node refuses a requestTimeout shorter than headersTimeout (it could never apply).
  if (requestTimeout !== 0 && requestTimeout < headersTimeout) {
    throw new UsageError('--request-timeout must be 0 or at least --headers-timeout');
  }
  return {
    ...base,
    spawn,
    workers: integer('--workers', values.workers, DEFAULTS.workers, 1, 256),
    prefix: normalizePrefix('--prefix', values.prefix ?? ''),
    port: integer('--port', values.port, DEFAULTS.port, 0, 65_535),
    host,
    statics: (values.static ?? []).map((s) => parseStatic(s, cwd)),
    logLevel: logLevel as LogLevel,
    headersTimeout,
    requestTimeout,
  };
}
