import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { connectionOptions, HOP_BY_HOP_HEADERS } from '../src/cgi/hop-by-hop.js';
import {
  CgiResponseParser,
  type CgiResponseParserOptions,
  parseCgiResponseHead,
} from '../src/cgi/response-parser.js';
import { ScgiError } from '../src/errors.js';
import type { CgiResponseHead } from '../src/types.js';

const bytes = (text: string): Buffer => Buffer.from(text, 'latin1');

function parse(text: string | Buffer, options?: CgiResponseParserOptions) {
  const result = parseCgiResponseHead(typeof text === 'string' ? bytes(text) : text, options);
  if (result === null) throw new Error('head incomplete');
  return result;
}

/** The `code` of what `fn` throws; fails the test when it throws nothing. */
function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ScgiError);
    return (err as ScgiError).code;
  }
  throw new Error('expected an error');
}

const codeOfHead = (text: string, options?: CgiResponseParserOptions) =>
  codeOf(() => parseCgiResponseHead(bytes(text), options));

/** Feeds `pieces` in turn; returns the head and every byte after it (rest + later pieces). */
function feed(pieces: Buffer[], options?: CgiResponseParserOptions) {
  const parser = new CgiResponseParser(options);
  let head: CgiResponseHead | null = null;
  const after: Buffer[] = [];
  for (const piece of pieces) {
    if (head !== null) after.push(piece);
    else {
      head = parser.push(piece);
      if (head !== null) after.push(parser.rest);
    }
  }
  return { head, rest: Buffer.concat(after), done: parser.done };
}

describe('CgiResponseParser: status', () => {
  it('takes the status and reason from a Status header, which is not forwarded', () => {
    const { head, rest } = parse('Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\n');
    expect(head).toEqual({
      statusCode: 404,
      statusMessage: 'Not Found',
      headers: { 'content-type': 'text/plain' },
      hopByHop: [],
      nph: false,
    });
    expect(rest).toEqual(Buffer.alloc(0));
  });

  it('accepts a Status without a reason phrase', () => {
    const { head } = parse('Status: 404\r\n\r\n');
    expect([head.statusCode, head.statusMessage]).toEqual([404, '']);
    expect(parse('Status:503 \r\n\r\n').head.statusMessage).toBe('');
    expect(parse('Status: 500   Oops  \r\n\r\n').head.statusMessage).toBe('Oops');
  });

  it.each([
    ['HTTP/1.0 200 OK', 200, 'OK'],
    ['HTTP/1.1 418 I am a teapot', 418, 'I am a teapot'],
    ['HTTP/1.1 204', 204, ''],
    ['HTTP/1.1 301 ', 301, ''],
  ])('reads an NPH status line %j', (line, statusCode, statusMessage) => {
    const { head } = parse(`${line}\r\nX-A: 1\r\n\r\n`);
    expect(head).toEqual({
      statusCode,
      statusMessage,
      headers: { 'x-a': '1' },
      hopByHop: [],
      nph: true,
    });
  });

  it('answers 302 Found for a Location without a Status', () => {
    const { head } = parse('Location: http://example.com/next\r\n\r\n');
    expect(head).toEqual({
      statusCode: 302,
      statusMessage: 'Found',
      headers: { location: 'http://example.com/next' },
      hopByHop: [],
      nph: false,
    });
  });

  it('keeps the Status of a Location response, in either order', () => {
    for (const text of [
      'Status: 301 Moved Permanently\r\nLocation: /new\r\n\r\n',
      'Location: /new\r\nStatus: 301 Moved Permanently\r\n\r\n',
    ]) {
      const { head } = parse(text);
      expect(head).toMatchObject({ statusCode: 301, statusMessage: 'Moved Permanently' });
      expect(head.headers).toEqual({ location: '/new' });
    }
    expect(parse('HTTP/1.1 303 See Other\nLocation: /x\n\n').head.statusCode).toBe(303);
  });

  it('answers 200 with an empty reason when the backend sent no status', () => {
    const { head } = parse('Content-Type: text/html\r\n\r\n');
    expect([head.statusCode, head.statusMessage, head.nph]).toEqual([200, '', false]);
  });

  it.each([
    ['Status: abc'],
    ['Status: 99'],
    ['Status: 099 Low'],
    ['Status: 600'],
    ['Status: 100 Continue'],
    ['Status: 101 Switching Protocols'],
    ['Status: 199'],
    ['Status: 20'],
    ['Status: 2000'],
    ['Status: 200OK'],
    ['Status: 2x0'],
    ['Status:'],
    ['Status:   '],
    ['HTTP/1.1 abc'],
    ['HTTP/1.1 101 Switching Protocols'],
    ['HTTP/1.1 600 Nope'],
    ['HTTP/1.1 20 OK'],
    ['HTTP/1.1  200 OK'],
    ['HTTP/1.1'],
    ['HTTP/2 200'],
    ['HTTP/1.2 200 OK'],
    ['HTTP/1.1 200 O\x00K'],
  ])('rejects the bad status %j', (line) => {
    expect(codeOfHead(`${line}\r\nX-A: 1\r\n\r\n`)).toBe('SCGI_ERR_RESPONSE_STATUS');
  });

  it('rejects a duplicate Status header and a Status after an NPH line', () => {
    expect(codeOfHead('Status: 200 OK\r\nStatus: 200 OK\r\n\r\n')).toBe('SCGI_ERR_RESPONSE_STATUS');
    expect(codeOfHead('HTTP/1.1 200 OK\r\nStatus: 404\r\n\r\n')).toBe('SCGI_ERR_RESPONSE_STATUS');
  });

  it('only reads an NPH status line on the first line', () => {
    expect(codeOfHead('X-A: 1\r\nHTTP/1.1 200 OK\r\n\r\n')).toBe('SCGI_ERR_RESPONSE_HEADER');
  });
});

describe('CgiResponseParser: lines and fields', () => {
  it('accepts CRLF, bare LF and both mixed', () => {
    const expected = { 'x-a': '1', 'x-b': '2' };
    for (const text of [
      'X-A: 1\r\nX-B: 2\r\n\r\nbody',
      'X-A: 1\nX-B: 2\n\nbody',
      'X-A: 1\nX-B: 2\r\n\nbody',
      'X-A: 1\r\nX-B: 2\n\r\nbody',
    ]) {
      const { head, rest } = parse(text);
      expect(head.headers).toEqual(expected);
      expect(rest).toEqual(bytes('body'));
    }
  });

  it.each(['\r\n', '\n'])('reads an empty head %j as 200 without headers', (text) => {
    const { head, rest } = parse(`${text}body`);
    expect(head).toEqual({
      statusCode: 200,
      statusMessage: '',
      headers: {},
      hopByHop: [],
      nph: false,
    });
    expect(rest).toEqual(bytes('body'));
  });

  it('lower-cases names and trims optional whitespace around values', () => {
    const { head } = parse(
      'Content-TYPE:\t text/plain; charset=utf-8 \t\r\nX-Empty:\r\nX-B:b\r\n\r\n',
    );
    expect(head.headers).toEqual({
      'content-type': 'text/plain; charset=utf-8',
      'x-empty': '',
      'x-b': 'b',
    });
  });

  it('keeps every Set-Cookie apart, in order, and joins other repeats with ", "', () => {
    const { head } = parse(
      'Set-Cookie: a=1\r\nVary: Accept\r\nset-cookie: b=2; Expires=Wed, 21 Oct 2015 07:28:00 GMT\r\n' +
        'VARY: Cookie\r\nSET-COOKIE: c=3\r\nvary: Origin\r\n\r\n',
    );
    expect(head.headers).toEqual({
      'set-cookie': ['a=1', 'b=2; Expires=Wed, 21 Oct 2015 07:28:00 GMT', 'c=3'],
      vary: 'Accept, Cookie, Origin',
    });
  });

  it('makes a single Set-Cookie an array', () => {
    expect(parse('Set-Cookie: a=1\n\n').head.headers).toEqual({ 'set-cookie': ['a=1'] });
  });

  it('drops hop-by-hop headers, including names listed in Connection, and names them', () => {
    const { head } = parse(
      'Connection: close, X-Internal\r\nKeep-Alive: timeout=5\r\nX-Internal: secret\r\n' +
        'Transfer-Encoding: chunked\r\nUpgrade: h2c\r\nTE: trailers\r\nTrailer: X-Sum\r\n' +
        'Proxy-Connection: keep-alive\r\nX-Kept: 1\r\nConnection: X-Other,,keep-alive\r\n' +
        'X-Other: 2\r\nX-Other: 3\r\n\r\n',
    );
    expect(head.headers).toEqual({ 'x-kept': '1' });
    expect(head.hopByHop).toEqual([
      'connection',
      'keep-alive',
      'transfer-encoding',
      'upgrade',
      'te',
      'trailer',
      'proxy-connection',
      'x-internal',
      'x-other',
    ]);
  });

  it('lists in hopByHop only the Connection options the backend actually sent', () => {
    const { head } = parse('Connection: close, x-absent\r\nX-A: 1\r\n\r\n');
    expect(head.headers).toEqual({ 'x-a': '1' });
    expect(head.hopByHop).toEqual(['connection']);
  });

  it('keeps one Content-Length when repeats are identical', () => {
    expect(parse('Content-Length: 5\r\nContent-Length: 5\r\n\r\n').head.headers).toEqual({
      'content-length': '5',
    });
  });

  it.each([
    'Content-Length: 5\r\nContent-Length: 6',
    'Content-Length: 5\r\nContent-Length: 05',
    'Content-Length: abc',
    'Content-Length: -1',
    'Content-Length: 1.0',
    'Content-Length: 5, 5',
    'Content-Length:',
    'Content-Length: 1234567890123456',
  ])('rejects the Content-Length in %j', (lines) => {
    expect(codeOfHead(`${lines}\r\n\r\n`)).toBe('SCGI_ERR_RESPONSE_HEADER');
  });

  it('keeps obs-text, decoded as latin1 so the bytes go out unchanged', () => {
    const raw = Buffer.concat([
      bytes('X-Name: caf'),
      Buffer.from('é ü', 'utf8'),
      bytes('\xff\r\n\r\n'),
    ]);
    const value = parse(raw).head.headers['x-name'] as string;
    expect(Buffer.from(value, 'latin1')).toEqual(
      Buffer.concat([bytes('caf'), Buffer.from('é ü'), bytes('\xff')]),
    );
  });

  it('stores headers named __proto__ and constructor as plain keys, inheriting nothing', () => {
    const { head } = parse('__proto__: x\r\nconstructor: y\r\nConstructor: z\r\n\r\n');
    expect(Object.keys(head.headers)).toEqual(['__proto__', 'constructor']);
    expect(Object.getOwnPropertyDescriptor(head.headers, '__proto__')?.value).toBe('x');
    expect(head.headers.constructor).toBe('y, z');
    expect('toString' in head.headers).toBe(false);
    expect({ ...head.headers }).toEqual(head.headers);
  });

  it.each([
    ['obs-fold with a space', 'X-A: 1\r\n  continued'],
    ['obs-fold with a tab', 'X-A: 1\r\n\tcontinued'],
    ['a first line starting with whitespace', ' X-A: 1'],
    ['a line without a colon', 'X-A 1'],
    ['an empty name', ': value'],
    ['a space before the colon', 'X-A : 1'],
    ['a tab before the colon', 'X-A\t: 1'],
    ['a space inside the name', 'X A: 1'],
    ['a NUL in the value', 'X-A: a\x00b'],
    ['a bare CR inside the value', 'X-A: a\rb'],
    ['two CRs before the LF', 'X-A: a\r\r'],
    ['a DEL in the value', 'X-A: a\x7fb'],
    ['a vertical tab in the value', 'X-A: a\x0bb'],
    ['a parenthesis in the name', 'X(A): 1'],
    ['obs-text in the name', 'X-\xc4: 1'],
    ['a NUL in the name', 'X\x00: 1'],
    ['a CR alone on a line', '\r\r'],
  ])('rejects %s', (_name, line) => {
    expect(codeOfHead(`${line}\r\nX-B: 2\r\n\r\n`)).toBe('SCGI_ERR_RESPONSE_HEADER');
  });

  it('does not echo raw backend bytes into error messages', () => {
    try {
      parseCgiResponseHead(bytes('X-A: \x1b[31mred\r\n\r\n'));
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).not.toContain('\x1b');
      expect((err as Error).message).toContain('0x1b');
    }
  });
});

describe('CgiResponseParser: chunks and body', () => {
  it('returns the head and the exact body bytes from a single chunk', () => {
    const body = Buffer.from([0, 13, 10, 13, 10, 255, 65]);
    const { head, rest } = parse(
      Buffer.concat([bytes('Status: 201 Created\r\nX-A: 1\r\n\r\n'), body]),
    );
    expect(head.statusCode).toBe(201);
    expect(rest).toEqual(body);
  });

  it('handles a split between CR and LF, inside the terminator', () => {
    const parser = new CgiResponseParser();
    expect(parser.push(bytes('X-A: 1\r'))).toBe(null);
    expect(parser.push(bytes('\n\r'))).toBe(null);
    expect(parser.done).toBe(false);
    expect(parser.rest).toEqual(Buffer.alloc(0));
    expect(parser.push(bytes('\nbody'))?.headers).toEqual({ 'x-a': '1' });
    expect(parser.done).toBe(true);
    expect(parser.rest).toEqual(bytes('body'));
  });

  it('returns null while the head is incomplete', () => {
    expect(parseCgiResponseHead(bytes('Status: 200 OK\r\nX-A: 1\r\n'))).toBe(null);
    expect(parseCgiResponseHead(Buffer.alloc(0))).toBe(null);
  });

  it('refuses a push after the head is complete, and rethrows its first error once failed', () => {
    const parser = new CgiResponseParser();
    parser.push(bytes('\r\n'));
    expect(() => parser.push(bytes('more'))).toThrow(/already complete/);

    const failed = new CgiResponseParser();
    let first: unknown;
    try {
      failed.push(bytes('bad line\n'));
    } catch (err) {
      first = err;
    }
    expect((first as ScgiError).code).toBe('SCGI_ERR_RESPONSE_HEADER');
    expect(() => failed.push(bytes('\r\n'))).toThrow(first as Error);
    expect(failed.done).toBe(false);
  });

  it('parses heads larger than the first decoded window, lines crossing its edges', () => {
    for (let pad = 1000; pad < 1030; pad++) {
      const text = `X-Pad: ${'p'.repeat(pad)}\r\nX-B: 2\r\n${'X-Many: m\n'.repeat(300)}\r\nbody`;
      const { head, rest } = parse(text);
      expect(head.headers['x-pad']).toHaveLength(pad);
      expect(head.headers['x-b']).toBe('2');
      expect(head.headers['x-many']).toBe(Array(300).fill('m').join(', '));
      expect(rest).toEqual(bytes('body'));
      const input = bytes(text);
      for (const cut of [1, 1023, 1024, 1025, 2047, 2048, 3000, input.length - 5]) {
        expect(feed([input.subarray(0, cut), input.subarray(cut)])).toEqual({
          head,
          rest,
          done: true,
        });
      }
    }
  });

  it('stays linear when a large head comes one byte at a time', () => {
    const line = `X-Long: ${'v'.repeat(1000)}\r\n`;
    const input = bytes(`${line.repeat(60)}\r\nbody`);
    const started = performance.now();
    const { head, rest } = feed([...input].map((b) => Buffer.of(b)));
    expect(performance.now() - started).toBeLessThan(2000);
    expect(head?.headers['x-long']).toHaveLength(60 * 1000 + 59 * 2);
    expect(rest).toEqual(bytes('body'));
  });
});

describe('CgiResponseParser: size limit and options', () => {
  it('accepts a head of exactly maxHeadSize bytes and refuses one byte more', () => {
    const head = 'X-A: 123456\r\n\r\n'; // 15 bytes
    expect(parse(`${head}body`, { maxHeadSize: 15 }).rest).toEqual(bytes('body'));
    expect(codeOfHead(`${head}body`, { maxHeadSize: 14 })).toBe('SCGI_ERR_RESPONSE_HEAD_TOO_LARGE');
    expect(codeOfHead('X-A: 1234567\r\n\r\n', { maxHeadSize: 15 })).toBe(
      'SCGI_ERR_RESPONSE_HEAD_TOO_LARGE',
    );
  });

  it('fails as soon as the buffered bytes cannot fit, without waiting for more', () => {
    const parser = new CgiResponseParser({ maxHeadSize: 16 });
    expect(parser.push(bytes('X-A: 1\r\nX-B: '))).toBe(null); // 13 bytes
    expect(parser.push(bytes('12'))).toBe(null); // 15: one LF could still end the head
    expect(codeOf(() => parser.push(bytes('3')))).toBe('SCGI_ERR_RESPONSE_HEAD_TOO_LARGE');
  });

  it('trips the default limit on a stream without any newline', () => {
    const parser = new CgiResponseParser();
    const chunk = Buffer.alloc(8192, 0x61);
    for (let i = 0; i < 7; i++) expect(parser.push(chunk)).toBe(null);
    const err = (() => {
      try {
        parser.push(chunk);
      } catch (e) {
        return e as ScgiError;
      }
    })();
    expect(err?.code).toBe('SCGI_ERR_RESPONSE_HEAD_TOO_LARGE');
    expect(err?.statusCode).toBe(502);
    expect(err?.message).toContain('65536');
  });

  it('counts the terminator in the head size', () => {
    expect(codeOfHead('X-A: 1\r\n\r\n', { maxHeadSize: 9 })).toBe(
      'SCGI_ERR_RESPONSE_HEAD_TOO_LARGE',
    );
    expect(parse('X-A: 1\r\n\r\n', { maxHeadSize: 10 }).head.headers).toEqual({ 'x-a': '1' });
  });

  it.each([
    0,
    -1,
    1.5,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    2 ** 53,
    '100',
    true,
  ])('rejects maxHeadSize %s', (maxHeadSize) => {
    const options = { maxHeadSize } as unknown as CgiResponseParserOptions;
    expect(codeOf(() => new CgiResponseParser(options))).toBe('SCGI_ERR_INVALID_OPTION');
  });

  it('uses the default for an undefined maxHeadSize', () => {
    const input = bytes(`X-A: ${'a'.repeat(65536 - 9)}\r\n\r\n`); // exactly 65536 bytes
    expect(parse(input, { maxHeadSize: undefined }).head.headers['x-a']).toHaveLength(65536 - 9);
    expect(codeOf(() => parse(Buffer.concat([bytes('X'), input])))).toBe(
      'SCGI_ERR_RESPONSE_HEAD_TOO_LARGE',
    );
  });

  it('leaves the options object alone', () => {
    const options = Object.freeze({ maxHeadSize: 100 });
    expect(parse('\n', options).head.statusCode).toBe(200);
    expect(options).toEqual({ maxHeadSize: 100 });
  });
});

describe('hop-by-hop', () => {
  it('exports the fixed lower-case set and parses Connection options', () => {
    expect([...HOP_BY_HOP_HEADERS].sort()).toEqual([
      'connection',
      'keep-alive',
      'proxy-connection',
      'te',
      'trailer',
      'transfer-encoding',
      'upgrade',
    ]);
    expect(connectionOptions(' Close ,\tX-Trace\t,, keep-alive')).toEqual([
      'close',
      'x-trace',
      'keep-alive',
    ]);
    expect(connectionOptions('')).toEqual([]);
  });
});

// --- properties ----------------------------------------------------------------------------

const TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const RESERVED = new Set(['status', 'content-length', 'location', ...HOP_BY_HOP_HEADERS]);
const arbName = fc.oneof(
  fc.constantFrom('Set-Cookie', 'set-cookie', 'X-A', 'x-a', 'Content-Type', 'Vary'),
  fc
    .string({ unit: fc.constantFrom(...TOKEN_CHARS), minLength: 1, maxLength: 12 })
    .filter((n) => !RESERVED.has(n.toLowerCase())),
);
const arbValue = fc
  .array(
    fc.oneof(
      fc.integer({ min: 0x20, max: 0x7e }),
      fc.integer({ min: 0x80, max: 0xff }),
      fc.constant(9),
    ),
    {
      maxLength: 24,
    },
  )
  .map((codes) => String.fromCharCode(...codes));
const arbEol = fc.constantFrom('\r\n', '\n');
const arbStatus = fc.oneof(
  fc.constant(null),
  fc.record({
    nph: fc.boolean(),
    code: fc.integer({ min: 200, max: 599 }),
    reason: fc.constantFrom('', 'OK', 'Not Found'),
  }),
);
const arbHead = fc.record({
  status: arbStatus,
  fields: fc.array(fc.tuple(arbName, arbValue, fc.constantFrom(':', ': ', ':\t'), arbEol), {
    maxLength: 8,
  }),
  end: arbEol,
  body: fc.uint8Array({ maxLength: 40 }),
});

type ArbHead = typeof arbHead extends fc.Arbitrary<infer T> ? T : never;

function render(h: ArbHead): { input: Buffer; body: Buffer } {
  let text = '';
  if (h.status?.nph)
    text += `HTTP/1.1 ${h.status.code}${h.status.reason ? ` ${h.status.reason}` : ''}\r\n`;
  for (const [name, value, sep, eol] of h.fields) text += `${name}${sep}${value}${eol}`;
  if (h.status && !h.status.nph) text += `Status: ${h.status.code} ${h.status.reason}\n`;
  const body = Buffer.from(h.body);
  return { input: Buffer.concat([bytes(`${text}${h.end}`), body]), body };
}

/** What the head must be, computed independently of the parser. */
function model(h: ArbHead): CgiResponseHead {
  // A Map: fast-check likes names such as `constructor` and `__proto__`.
  const headers = new Map<string, string | string[]>();
  for (const [name, raw] of h.fields) {
    const key = name.toLowerCase();
    const value = raw.replace(/^[ \t]+|[ \t]+$/g, '');
    const prev = headers.get(key);
    if (key === 'set-cookie') headers.set(key, [...((prev as string[] | undefined) ?? []), value]);
    else headers.set(key, prev === undefined ? value : `${prev}, ${value}`);
  }
  return {
    statusCode: h.status?.code ?? 200,
    statusMessage: h.status?.reason ?? '',
    headers: Object.fromEntries(headers),
    hopByHop: [],
    nph: h.status?.nph ?? false,
  };
}

/** An ScgiError code, or the head and the bytes after it. */
function outcome(pieces: Buffer[], options?: CgiResponseParserOptions) {
  try {
    const { head, rest } = feed(pieces, options);
    return { head, rest: head === null ? null : rest.toString('hex') };
  } catch (err) {
    if (!(err instanceof ScgiError)) throw err;
    return { error: err.code };
  }
}

function splitAt(input: Buffer, offsets: number[]): Buffer[] {
  const cuts = [...new Set(offsets)].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const cut of cuts) {
    pieces.push(input.subarray(from, cut));
    from = cut;
  }
  pieces.push(input.subarray(from));
  return pieces;
}

describe('CgiResponseParser: properties', () => {
  it('parses generated valid heads to the model, whole or split at every offset', () => {
    fc.assert(
      fc.property(arbHead, (h) => {
        const { input, body } = render(h);
        const expected = model(h);
        const whole = parse(input);
        expect(whole.head).toEqual(expected);
        expect(whole.rest).toEqual(body);
        for (let cut = 0; cut <= input.length; cut++) {
          const { head, rest } = feed([input.subarray(0, cut), input.subarray(cut)]);
          expect(head).toEqual(expected);
          expect(rest).toEqual(body);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('gives the same head and body for any multi-split', () => {
    fc.assert(
      fc.property(
        arbHead.chain((h) => {
          const { input } = render(h);
          return fc.tuple(
            fc.constant(h),
            fc.array(fc.integer({ min: 0, max: input.length }), { maxLength: 12 }),
          );
        }),
        ([h, offsets]) => {
          const { input, body } = render(h);
          const { head, rest } = feed(splitAt(input, offsets));
          expect(head).toEqual(model(h));
          expect(rest).toEqual(body);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('only ever throws an ScgiError on random bytes, with the same outcome however they are split', () => {
    const arbByte = fc.oneof(
      {
        weight: 3,
        arbitrary: fc.constantFrom(...bytes('\r\n\n:  \tHTTP/1.1 200 Status: Location\x00')),
      },
      { weight: 2, arbitrary: fc.integer({ min: 0, max: 255 }) },
    );
    fc.assert(
      fc.property(
        fc.array(arbByte, { maxLength: 80 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        fc.option(fc.integer({ min: 1, max: 64 }), { nil: undefined }),
        (list, cuts, maxHeadSize) => {
          const input = Buffer.from(list);
          const options = { maxHeadSize };
          const whole = outcome([input], options);
          const split = outcome(
            splitAt(
              input,
              cuts.map((c) => c % (input.length + 1)),
            ),
            options,
          );
          expect(split).toEqual(whole);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
