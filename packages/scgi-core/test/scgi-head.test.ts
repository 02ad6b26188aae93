import type { IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildCgiEnv } from '../src/cgi/env.js';
import { ScgiError } from '../src/errors.js';
import { encodeBuiltScgiHead } from '../src/scgi/built-head.js';
import {
  decodeScgiHead,
  encodeScgiHead,
  type ScgiHead,
  ScgiHeadDecoder,
  type ScgiHeadDecoderOptions,
} from '../src/scgi/head.js';
import { encodeNetstring } from '../src/scgi/netstring.js';
import type { EnvPair, EnvValue } from '../src/types.js';

const oracle = createRequire(import.meta.url)('netstring') as {
  nsPayload(buf: Buffer): Buffer | number;
};

const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');
/** A netstring holding the given latin1 text: a head as a peer could send it. */
const head = (text: string): Buffer => encodeNetstring(bytes(text));
/** The same, with `|` standing for NUL to keep the tables readable. */
const wire = (text: string): Buffer => head(text.replaceAll('|', '\0'));

const MALFORMED = 'SCGI_ERR_HEAD_MALFORMED';
const CONTENT_LENGTH = 'SCGI_ERR_HEAD_CONTENT_LENGTH';
const DUPLICATE = 'SCGI_ERR_HEAD_DUPLICATE';
const EMPTY_NAME = 'SCGI_ERR_HEAD_EMPTY_NAME';
const NUL = 'SCGI_ERR_HEAD_NUL';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ScgiError);
    return (err as ScgiError).code;
  }
  return undefined;
}

/** The bytes a string value must become: latin1 when every char is < 256, else UTF-8. */
function expectedBytes(value: EnvValue): Buffer {
  if (typeof value !== 'string') return value;
  let latin1 = true;
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) > 0xff) latin1 = false;
  return Buffer.from(value, latin1 ? 'latin1' : 'utf8');
}

type Outcome = { head: unknown; rest: string } | { error: string } | { incomplete: true };

function describeHead(h: ScgiHead): unknown {
  return {
    pairs: h.pairs.map(([n, v]) => [n, v.toString('hex')]),
    env: { ...h.env },
    contentLength: h.contentLength,
  };
}

function feed(chunks: Buffer[], options?: ScgiHeadDecoderOptions): Outcome {
  const decoder = new ScgiHeadDecoder(options);
  let result: ScgiHead | null = null;
  try {
    for (const chunk of chunks) result = decoder.push(chunk) ?? result;
  } catch (err) {
    expect(err).toBeInstanceOf(ScgiError);
    return { error: (err as ScgiError).code };
  }
  if (result === null) return { incomplete: true };
  expect(decoder.done).toBe(true);
  expect(decoder.head).toBe(result);
  return { head: describeHead(result), rest: decoder.rest.toString('hex') };
}

const SPEC_HEAD =
  '70:CONTENT_LENGTH\x0027\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00REQUEST_URI\x00/deepthought\x00,';
const SPEC_BODY = 'What is the answer to life?';

describe('encodeScgiHead', () => {
  it('matches the example of the SCGI protocol document byte for byte', () => {
    const env: EnvPair[] = [
      ['CONTENT_LENGTH', '27'],
      ['SCGI', '1'],
      ['REQUEST_METHOD', 'POST'],
      ['REQUEST_URI', '/deepthought'],
    ];
    expect(encodeScgiHead(env)).toEqual(bytes(SPEC_HEAD));
    // The same from a plain object, a Map and a generator.
    expect(encodeScgiHead(Object.fromEntries(env))).toEqual(bytes(SPEC_HEAD));
    expect(encodeScgiHead(new Map(env))).toEqual(bytes(SPEC_HEAD));
    expect(
      encodeScgiHead(
        (function* () {
          yield* env;
        })(),
      ),
    ).toEqual(bytes(SPEC_HEAD));
  });

  it('inserts SCGI=1 after CONTENT_LENGTH and moves CONTENT_LENGTH first', () => {
    const env: EnvPair[] = [
      ['REQUEST_METHOD', 'POST'],
      ['REQUEST_URI', '/deepthought'],
      ['CONTENT_LENGTH', Buffer.from('27')],
    ];
    expect(encodeScgiHead(env)).toEqual(bytes(SPEC_HEAD));
  });

  it('keeps a given SCGI=1 where it is', () => {
    const out = encodeScgiHead({ A: 'x', SCGI: '1', CONTENT_LENGTH: '0' });
    expect(out).toEqual(wire('CONTENT_LENGTH|0|A|x|SCGI|1|'));
    expect(encodeScgiHead({ SCGI: Buffer.from('1'), CONTENT_LENGTH: '0' })).toEqual(
      wire('CONTENT_LENGTH|0|SCGI|1|'),
    );
  });

  it('encodes the smallest head and empty values', () => {
    expect(encodeScgiHead({ CONTENT_LENGTH: '0' })).toEqual(
      bytes('24:CONTENT_LENGTH\x000\x00SCGI\x001\x00,'),
    );
    expect(encodeScgiHead({ CONTENT_LENGTH: '0', QUERY_STRING: '', X: Buffer.alloc(0) })).toEqual(
      wire('CONTENT_LENGTH|0|SCGI|1|QUERY_STRING||X||'),
    );
  });

  it('writes strings with a char >= 256 as UTF-8, others as latin1', () => {
    const out = encodeScgiHead({ CONTENT_LENGTH: '0', U: 'é€', L: 'é', NAMÉ: 'x' });
    const payload = Buffer.concat([
      bytes('CONTENT_LENGTH\x000\x00SCGI\x001\x00U\x00'),
      Buffer.from([0xc3, 0xa9, 0xe2, 0x82, 0xac]),
      bytes('\x00L\x00\xe9\x00NAM\xc9\x00x\x00'),
    ]);
    expect(out).toEqual(encodeNetstring(payload));
    expect(decodeScgiHead(out).pairs[2]).toEqual(['U', Buffer.from('é€', 'utf8')]);
  });

  it('roundtrips raw bytes that are not UTF-8 (0xE9) exactly', () => {
    const pathInfo = Buffer.from([0x2f, 0x63, 0x61, 0x66, 0xe9]); // "/caf" + 0xE9
    const out = encodeScgiHead({ CONTENT_LENGTH: '0', PATH_INFO: pathInfo, Q: 'a€' });
    const { pairs, env } = decodeScgiHead(out);
    expect(pairs[2]).toEqual(['PATH_INFO', pathInfo]);
    expect(env.PATH_INFO).toBe('/caf\u00e9');
    expect(pairs[3]).toEqual(['Q', Buffer.from('a€', 'utf8')]);
  });

  it('roundtrips a latin1 string made from bytes exactly', () => {
    const raw = Buffer.from([0x2f, 0xe9, 0x80, 0xff, 0x20]);
    const out = encodeScgiHead({ CONTENT_LENGTH: '0', PATH_INFO: raw.toString('latin1') });
    expect(decodeScgiHead(out).pairs[2]![1]).toEqual(raw);
    expect(decodeScgiHead(out).env.PATH_INFO).toBe(raw.toString('latin1'));
  });

  it('regression: a name with a char >= 256 next to a Buffer value is written as UTF-8', () => {
    const out = encodeScgiHead([
      ['CONTENT_LENGTH', '0'],
      ['Ā', Buffer.from([0xe9])],
    ]);
    const payload = Buffer.concat([
      bytes('CONTENT_LENGTH\x000\x00SCGI\x001\x00'),
      Buffer.from([0xc4, 0x80, 0, 0xe9, 0]),
    ]);
    expect(out).toEqual(encodeNetstring(payload));
  });

  it('does not mutate its input', () => {
    const env = { B: 'b', CONTENT_LENGTH: '1' };
    const frozen = Object.freeze([...Object.entries(env)] as EnvPair[]);
    encodeScgiHead(env);
    encodeScgiHead(frozen);
    expect(Object.entries(env)).toEqual([
      ['B', 'b'],
      ['CONTENT_LENGTH', '1'],
    ]);
  });

  describe('errors', () => {
    const many = (extra: Record<string, EnvValue>) => {
      // More than 32 names takes the Set path of duplicate detection.
      const env: Array<[string, EnvValue]> = [['CONTENT_LENGTH', '0']];
      for (let i = 0; i < 40; i++) env.push([`HTTP_X_${i}`, 'v']);
      return [...env, ...Object.entries(extra)];
    };
    const cl = (v: EnvValue): EnvPair => ['CONTENT_LENGTH', v];
    const plus = (...pairs: EnvPair[]): EnvPair[] => [cl('0'), ...pairs];
    const cases: Array<[string, EnvPair[], string]> = [
      ['empty name', plus(['', 'x']), EMPTY_NAME],
      ['duplicate name', plus(['A', '1'], ['A', '2']), DUPLICATE],
      ['duplicate CONTENT_LENGTH', plus(cl('0')), DUPLICATE],
      ['duplicate among many names', many({ HTTP_X_7: 'again' }), DUPLICATE],
      ['NUL in name', plus(['A\0B', 'x']), NUL],
      ['NUL in string value', plus(['A', 'x\0y']), NUL],
      ['NUL in Buffer value', plus(['A', Buffer.from([0x61, 0, 0x62])]), NUL],
      ['NUL in CONTENT_LENGTH', [cl('0\0')], NUL],
      ['missing CONTENT_LENGTH', [['SCGI', '1']], CONTENT_LENGTH],
      ['empty environment', [], CONTENT_LENGTH],
      ['CONTENT_LENGTH "01"', [cl('01')], CONTENT_LENGTH],
      ['CONTENT_LENGTH "-1"', [cl('-1')], CONTENT_LENGTH],
      ['CONTENT_LENGTH "1.0"', [cl('1.0')], CONTENT_LENGTH],
      ['CONTENT_LENGTH " 1"', [cl(' 1')], CONTENT_LENGTH],
      ['CONTENT_LENGTH "1 "', [cl('1 ')], CONTENT_LENGTH],
      ['CONTENT_LENGTH "+1"', [cl('+1')], CONTENT_LENGTH],
      ['CONTENT_LENGTH ""', [cl('')], CONTENT_LENGTH],
      ['CONTENT_LENGTH over 2^53-1', [cl('9007199254740992')], CONTENT_LENGTH],
      ['CONTENT_LENGTH Buffer "01"', [cl(Buffer.from('01'))], CONTENT_LENGTH],
      ['SCGI=2', plus(['SCGI', '2']), MALFORMED],
      ['SCGI=""', plus(['SCGI', '']), MALFORMED],
      ['SCGI=Buffer "2"', plus(['SCGI', Buffer.from('2')]), MALFORMED],
      ['value neither string nor Buffer', plus(['A', 5 as never]), MALFORMED],
    ];
    for (const [name, env, code] of cases) {
      it(`${name} -> ${code}`, () => {
        expect(codeOf(() => encodeScgiHead(env))).toBe(code);
      });
    }

    it('names the offending variable', () => {
      expect(() =>
        encodeScgiHead([
          ['CONTENT_LENGTH', '0'],
          ['HTTP_X', 'a\0'],
        ]),
      ).toThrow('SCGI header HTTP_X contains a NUL byte');
      expect(() => encodeScgiHead({ CONTENT_LENGTH: ' 1' })).toThrow('got " 1"');
    });

    it('accepts the largest safe CONTENT_LENGTH', () => {
      const out = encodeScgiHead({ CONTENT_LENGTH: String(Number.MAX_SAFE_INTEGER) });
      expect(decodeScgiHead(out).contentLength).toBe(Number.MAX_SAFE_INTEGER);
    });
  });
});

describe('ScgiHeadDecoder and decodeScgiHead', () => {
  it('decodes the SCGI protocol document example and leaves the body in rest', () => {
    const request = bytes(SPEC_HEAD + SPEC_BODY);
    const { pairs, env, contentLength, rest } = decodeScgiHead(request);
    expect(pairs).toEqual([
      ['CONTENT_LENGTH', bytes('27')],
      ['SCGI', bytes('1')],
      ['REQUEST_METHOD', bytes('POST')],
      ['REQUEST_URI', bytes('/deepthought')],
    ]);
    expect(env).toEqual({
      CONTENT_LENGTH: '27',
      SCGI: '1',
      REQUEST_METHOD: 'POST',
      REQUEST_URI: '/deepthought',
    });
    expect(contentLength).toBe(27);
    expect(rest).toEqual(bytes(SPEC_BODY));
    expect(rest.length).toBe(contentLength);
  });

  it('decodes incrementally and appends later bytes to rest', () => {
    const decoder = new ScgiHeadDecoder();
    expect(decoder.push(bytes(SPEC_HEAD.slice(0, 30)))).toBeNull();
    expect(decoder.done).toBe(false);
    expect(decoder.rest).toEqual(Buffer.alloc(0));
    const h = decoder.push(bytes(`${SPEC_HEAD.slice(30)}What`));
    expect(h?.contentLength).toBe(27);
    expect(decoder.push(bytes(' is'))).toBeNull();
    expect(decoder.rest).toEqual(bytes('What is'));
  });

  it('treats __proto__ as an ordinary name', () => {
    const { env } = decodeScgiHead(wire('CONTENT_LENGTH|0|SCGI|1|__proto__|x|'));
    expect(Object.getPrototypeOf(env)).toBeNull();
    expect(Object.entries(env)).toContainEqual(['__proto__', 'x']);
  });

  it('stays failed after an error', () => {
    const decoder = new ScgiHeadDecoder();
    expect(codeOf(() => decoder.push(wire('CONTENT_LENGTH|0|')))).toBe('SCGI_ERR_HEAD_MALFORMED');
    expect(codeOf(() => decoder.push(bytes('x')))).toBe('SCGI_ERR_HEAD_MALFORMED');
  });

  describe('errors', () => {
    const cases: Array<[string, Buffer, string]> = [
      ['odd number of strings', wire('CONTENT_LENGTH|0|SCGI|1|X|'), MALFORMED],
      ['missing trailing NUL', wire('CONTENT_LENGTH|0|SCGI|1'), MALFORMED],
      ['empty block', wire(''), MALFORMED],
      ['CONTENT_LENGTH not first', wire('SCGI|1|CONTENT_LENGTH|0|'), MALFORMED],
      ['missing SCGI', wire('CONTENT_LENGTH|0|'), MALFORMED],
      ['SCGI=2', wire('CONTENT_LENGTH|0|SCGI|2|'), MALFORMED],
      ['incomplete (one-shot)', bytes(SPEC_HEAD.slice(0, 40)), MALFORMED],
      ['duplicate name', wire('CONTENT_LENGTH|0|SCGI|1|A|x|A|y|'), DUPLICATE],
      ['duplicate SCGI', wire('CONTENT_LENGTH|0|SCGI|1|SCGI|1|'), DUPLICATE],
      ['empty name', wire('CONTENT_LENGTH|0|SCGI|1||x|'), EMPTY_NAME],
      ['CONTENT_LENGTH "01"', wire('CONTENT_LENGTH|01|SCGI|1|'), CONTENT_LENGTH],
      ['CONTENT_LENGTH empty', wire('CONTENT_LENGTH||SCGI|1|'), CONTENT_LENGTH],
      ['CONTENT_LENGTH "-1"', wire('CONTENT_LENGTH|-1|SCGI|1|'), CONTENT_LENGTH],
      [
        'CONTENT_LENGTH 17 digits',
        wire('CONTENT_LENGTH|12345678901234567|SCGI|1|'),
        CONTENT_LENGTH,
      ],
      ['netstring leading zero', bytes('01:x,'), 'SCGI_ERR_NETSTRING_LEADING_ZERO'],
      ['netstring length', bytes('x'), 'SCGI_ERR_NETSTRING_LENGTH'],
      ['netstring comma', bytes(SPEC_HEAD.replace(/,$/, ';')), 'SCGI_ERR_NETSTRING_COMMA'],
      ['netstring too long', bytes('65537:'), 'SCGI_ERR_NETSTRING_TOO_LONG'],
    ];
    for (const [name, input, code] of cases) {
      it(`${name} -> ${code}`, () => {
        expect(codeOf(() => decodeScgiHead(input))).toBe(code);
      });
    }

    it('applies maxLength to the head', () => {
      expect(codeOf(() => decodeScgiHead(bytes(SPEC_HEAD), { maxLength: 69 }))).toBe(
        'SCGI_ERR_NETSTRING_TOO_LONG',
      );
      expect(decodeScgiHead(bytes(SPEC_HEAD), { maxLength: 70 }).contentLength).toBe(27);
    });

    it('validates maxLength', () => {
      expect(codeOf(() => new ScgiHeadDecoder({ maxLength: -1 }))).toBe('SCGI_ERR_INVALID_OPTION');
      expect(codeOf(() => decodeScgiHead(bytes(SPEC_HEAD), { maxLength: 0.5 }))).toBe(
        'SCGI_ERR_INVALID_OPTION',
      );
    });
  });
});

describe('properties', () => {
  const noNul = (s: string) => !s.includes('\0');
  const anyString = fc.oneof(
    fc.string(),
    fc.string({ unit: 'binary' }),
    fc.uint8Array({ maxLength: 20 }).map((a) => Buffer.from(a).toString('latin1')),
  );
  const value: fc.Arbitrary<EnvValue> = fc.oneof(
    anyString.filter(noNul),
    fc.uint8Array({ maxLength: 20 }).map((a) => Buffer.from(a.map((b) => b || 1))),
  );
  const name = anyString.filter(
    (s) => s.length > 0 && noNul(s) && s !== 'CONTENT_LENGTH' && s !== 'SCGI',
  );
  const envArb = fc.record({
    // Unique by the bytes they become: two lone surrogates both encode as U+FFFD.
    pairs: fc.uniqueArray(fc.tuple(name, value), {
      maxLength: 40,
      selector: ([n]) => expectedBytes(n).toString('hex'),
    }),
    contentLength: fc.oneof(fc.nat(), fc.maxSafeNat()),
    clAt: fc.nat(),
    scgiAt: fc.option(fc.nat()),
  });
  type EnvCase = typeof envArb extends fc.Arbitrary<infer T> ? T : never;
  const build = (c: EnvCase): EnvPair[] => {
    const env: EnvPair[] = [...c.pairs];
    if (c.scgiAt !== null) env.splice(c.scgiAt % (env.length + 1), 0, ['SCGI', '1']);
    env.splice(c.clAt % (env.length + 1), 0, ['CONTENT_LENGTH', String(c.contentLength)]);
    return env;
  };

  it('refuses a repeated name, naming the first one repeated, on both detection paths', () => {
    // Few letters and lengths: names that share a length and hash slot, and repeats.
    const shortName = fc.string({
      unit: fc.constantFrom('A', 'B', '_'),
      minLength: 1,
      maxLength: 3,
    });
    fc.assert(
      fc.property(fc.array(shortName, { maxLength: 45 }), (names) => {
        const env: EnvPair[] = [['CONTENT_LENGTH', '0'], ...names.map((n): EnvPair => [n, 'v'])];
        const firstRepeat = names.find((n, i) => names.indexOf(n) < i);
        let thrown: unknown = null;
        try {
          encodeScgiHead(env);
        } catch (err) {
          thrown = err;
        }
        if (firstRepeat === undefined) {
          expect(thrown).toBeNull();
        } else {
          expect((thrown as ScgiError).code).toBe(DUPLICATE);
          expect((thrown as ScgiError).message).toBe(
            `SCGI header ${firstRepeat} appears more than once`,
          );
        }
      }),
      { numRuns: 500 },
    );
  });

  it('roundtrips any environment through encode and decode', () => {
    fc.assert(
      fc.property(envArb, fc.uint8Array({ maxLength: 10 }), (c, body) => {
        const env = build(c);
        const encoded = encodeScgiHead(env);
        expect(oracle.nsPayload(encoded)).toBeInstanceOf(Buffer);
        const decoded = decodeScgiHead(Buffer.concat([encoded, body]));
        // CONTENT_LENGTH moves first; a given SCGI keeps its place, a missing one follows it.
        const rest = env.filter(([n]) => n !== 'CONTENT_LENGTH');
        const expected = [
          ['CONTENT_LENGTH', bytes(String(c.contentLength))],
          ...(c.scgiAt === null ? [['SCGI', bytes('1')]] : []),
          ...rest.map(([n, v]) => [expectedBytes(n).toString('latin1'), expectedBytes(v)]),
        ];
        expect(decoded.pairs).toEqual(expected);
        expect(decoded.contentLength).toBe(c.contentLength);
        expect(decoded.rest).toEqual(Buffer.from(body));
        // Object input gives the same bytes as the pairs it holds (string names keep order
        // unless integer-like, so only compare when none is).
        if (!env.some(([n]) => /^(0|[1-9]\d*)$/.test(n))) {
          expect(encodeScgiHead(Object.fromEntries(env))).toEqual(encoded);
        }
      }),
    );
  });

  // Valid heads, corrupted heads, and noise: every error path of the decoder.
  const input = fc.oneof(
    envArb.map((c) => encodeScgiHead(build(c))),
    fc.tuple(envArb, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([c, at, byte]) => {
      const buf = Buffer.from(encodeScgiHead(build(c)));
      buf[at % buf.length] = byte;
      return buf;
    }),
    fc
      .array(fc.constantFrom('CONTENT_LENGTH', '0', '1', '01', 'SCGI', 'A', '', '\0'))
      .map((parts) => head(parts.join(''))),
    fc.uint8Array({ maxLength: 60 }).map((a) => Buffer.from(a)),
  );

  it('gives the same outcome for the input split at every offset', () => {
    fc.assert(
      fc.property(input, fc.uint8Array({ maxLength: 4 }), (buf, tail) => {
        const whole = Buffer.concat([buf, tail]);
        const expected = feed([whole]);
        for (let i = 0; i <= whole.length; i++) {
          expect(feed([whole.subarray(0, i), whole.subarray(i)])).toEqual(expected);
        }
      }),
      { numRuns: 60 },
    );
  });

  it('gives the same outcome for random multi-splits', () => {
    fc.assert(
      fc.property(input, fc.array(fc.nat(), { maxLength: 10 }), (buf, cuts) => {
        const points = [...new Set(cuts.map((x) => x % (buf.length + 1)))].sort((a, b) => a - b);
        const chunks = [0, ...points].map((p, i, all) => buf.subarray(p, all[i + 1]));
        expect(feed(chunks)).toEqual(feed([buf]));
      }),
    );
  });

  it('never throws anything but ScgiError, on decode or encode', () => {
    fc.assert(
      fc.property(input, fc.array(fc.tuple(anyString, value), { maxLength: 5 }), (buf, env) => {
        feed([buf], { maxLength: 100 });
        try {
          decodeScgiHead(buf);
        } catch (err) {
          expect(err).toBeInstanceOf(ScgiError);
        }
        try {
          encodeScgiHead(env);
        } catch (err) {
          expect(err).toBeInstanceOf(ScgiError);
        }
      }),
    );
  });
});

describe('encodeBuiltScgiHead', () => {
  const token = fc.string({
    unit: fc.constantFrom(...'abcXYZ019-_'.split('')),
    minLength: 1,
    maxLength: 12,
  });
  // Header values as Node hands them over: latin1, no NUL, CR or LF.
  const headerValue = fc
    .uint8Array({ maxLength: 24 })
    .map((a) =>
      Buffer.from(a.map((b) => (b === 0 || b === 10 || b === 13 ? 0x20 : b))).toString('latin1'),
    );
  const requestArb = fc.record({
    path: fc.webPath(),
    query: fc.option(fc.webQueryParameters()),
    method: fc.constantFrom('GET', 'POST', 'DELETE', 'PROPFIND'),
    headers: fc.array(fc.tuple(token, headerValue), { maxLength: 12 }),
    contentLength: fc.option(fc.nat()),
    // Params may hold any string: one above latin1 sends the head to the checking encoder.
    params: fc.option(
      fc.dictionary(
        token,
        fc.string({ maxLength: 12 }).filter((v) => !v.includes('\0')),
      ),
    ),
  });

  it('writes the same bytes as encodeScgiHead for any environment buildCgiEnv makes', () => {
    let built = 0;
    fc.assert(
      fc.property(requestArb, (r) => {
        const req = {
          method: r.method,
          url: r.query === null ? r.path : `${r.path}?${r.query}`,
          httpVersion: '1.1',
          rawHeaders: r.headers.flat(),
          headers: {},
          socket: {
            remoteAddress: '127.0.0.1',
            remotePort: 4000,
            localAddress: '127.0.0.1',
            localPort: 80,
          },
        } as unknown as IncomingMessage;
        let env: EnvPair[];
        try {
          env = buildCgiEnv(req, r.params === null ? {} : { params: Object.entries(r.params) }, {
            contentLength: r.contentLength,
          });
        } catch (err) {
          // A path or header buildCgiEnv refuses (400s): nothing to encode.
          expect(err).toBeInstanceOf(ScgiError);
          return;
        }
        built++;
        expect(encodeBuiltScgiHead(env).equals(encodeScgiHead(env))).toBe(true);
      }),
      { numRuns: 500 },
    );
    expect(built).toBeGreaterThan(250);
  });

  it('hands an environment in another order to encodeScgiHead, with its checks', () => {
    const env: EnvPair[] = [
      ['SCGI', '1'],
      ['CONTENT_LENGTH', '3'],
      ['A', 'b'],
    ];
    expect(encodeBuiltScgiHead(env).equals(encodeScgiHead(env))).toBe(true);
    expect(() =>
      encodeBuiltScgiHead([
        ['A', 'x'],
        ['A', 'y'],
      ]),
    ).toThrow(expect.objectContaining({ code: 'SCGI_ERR_HEAD_DUPLICATE' }));
  });

  it('sends a value above latin1 as UTF-8, as encodeScgiHead does', () => {
    const env: EnvPair[] = [
      ['CONTENT_LENGTH', '0'],
      ['SCGI', '1'],
      ['DOCUMENT_ROOT', '/srv/文字'],
    ];
    const head = encodeBuiltScgiHead(env);
    expect(head.equals(encodeScgiHead(env))).toBe(true);
    expect(head.includes(Buffer.from('/srv/文字', 'utf8'))).toBe(true);
  });
});
