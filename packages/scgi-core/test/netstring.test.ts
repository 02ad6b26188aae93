import { createRequire } from 'node:module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ScgiError } from '../src/errors.js';
import {
  DEFAULT_NETSTRING_MAX_LENGTH,
  decodeNetstring,
  encodeNetstring,
  NetstringDecoder,
  type NetstringDecoderOptions,
} from '../src/scgi/netstring.js';

// The `netstring` package (CommonJS, 2011) serves as an independent oracle.
interface NetstringOracle {
  nsWrite(payload: Buffer | string): Buffer;
  nsPayload(buf: Buffer): Buffer | number;
}
const oracle = createRequire(import.meta.url)('netstring') as NetstringOracle;

const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');

/** The error code thrown by fn; fails the test if it throws something that is not ours. */
function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ScgiError);
    return (err as ScgiError).code;
  }
  return undefined;
}

type Outcome =
  | { payload: string; rest: string }
  | { error: string }
  | { incomplete: true; rest: string };

/** Feeds chunks to a fresh decoder and describes the end state in comparable form. */
function feed(chunks: Buffer[], options?: NetstringDecoderOptions): Outcome {
  const decoder = new NetstringDecoder(options);
  let payload: Buffer | null = null;
  try {
    for (const chunk of chunks) {
      const got = decoder.push(chunk);
      if (got !== null) {
        expect(payload).toBeNull();
        payload = got;
      }
    }
  } catch (err) {
    expect(err).toBeInstanceOf(ScgiError);
    return { error: (err as ScgiError).code };
  }
  if (payload === null) {
    expect(decoder.done).toBe(false);
    return { incomplete: true, rest: decoder.rest.toString('hex') };
  }
  expect(decoder.done).toBe(true);
  return { payload: payload.toString('hex'), rest: decoder.rest.toString('hex') };
}

/** Splits buf at the given (unsorted, possibly repeated) offsets. */
function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    chunks.push(buf.subarray(prev, p));
    prev = p;
  }
  chunks.push(buf.subarray(prev));
  return chunks;
}

describe('encodeNetstring', () => {
  it('frames a string as <len>:<payload>,', () => {
    expect(encodeNetstring('hello world!')).toEqual(bytes('12:hello world!,'));
  });

  it('encodes the empty payload as 0:,', () => {
    expect(encodeNetstring('')).toEqual(bytes('0:,'));
    expect(encodeNetstring(Buffer.alloc(0))).toEqual(bytes('0:,'));
  });

  it('counts UTF-8 bytes, not chars, for strings', () => {
    const out = encodeNetstring('é€😀');
    expect(out).toEqual(Buffer.concat([bytes('9:'), Buffer.from('é€😀', 'utf8'), bytes(',')]));
  });

  it('copies Buffer payloads byte for byte (including NUL and invalid UTF-8)', () => {
    const payload = Buffer.from([0x00, 0xe9, 0xff, 0x2c, 0x3a]);
    expect(encodeNetstring(payload)).toEqual(Buffer.concat([bytes('5:'), payload, bytes(',')]));
  });
});

describe('NetstringDecoder', () => {
  it('decodes a netstring in one chunk and keeps the bytes after the comma in rest', () => {
    const decoder = new NetstringDecoder();
    expect(decoder.done).toBe(false);
    const payload = decoder.push(bytes('5:hello,BODY'));
    expect(payload).toEqual(bytes('hello'));
    expect(decoder.done).toBe(true);
    expect(decoder.payload).toEqual(bytes('hello'));
    expect(decoder.rest).toEqual(bytes('BODY'));
  });

  it('returns views into a single input chunk instead of copies', () => {
    const input = bytes('5:hello,BODY');
    const decoder = new NetstringDecoder();
    const payload = decoder.push(input)!;
    expect(payload.buffer).toBe(input.buffer);
    expect(payload.byteOffset).toBe(input.byteOffset + 2);
    expect(decoder.rest.buffer).toBe(input.buffer);
  });

  it('accepts 0:, as the empty payload', () => {
    expect(feed([bytes('0:,')])).toEqual({ payload: '', rest: '' });
  });

  it('returns null until the comma arrives, byte by byte', () => {
    const decoder = new NetstringDecoder();
    const input = bytes('3:abc,x');
    for (let i = 0; i < 5; i++) expect(decoder.push(input.subarray(i, i + 1))).toBeNull();
    expect(decoder.push(input.subarray(5))).toEqual(bytes('abc'));
    expect(decoder.rest).toEqual(bytes('x'));
  });

  it('appends bytes pushed after completion to rest and returns null', () => {
    const decoder = new NetstringDecoder();
    decoder.push(bytes('1:a,'));
    expect(decoder.rest).toEqual(Buffer.alloc(0));
    expect(decoder.push(bytes('bo'))).toBeNull();
    expect(decoder.push(bytes('dy'))).toBeNull();
    expect(decoder.rest).toEqual(bytes('body'));
    expect(decoder.payload).toEqual(bytes('a'));
  });

  it('accepts exactly maxLength bytes and refuses one more', () => {
    expect(feed([bytes('3:abc,')], { maxLength: 3 })).toEqual({
      payload: bytes('abc').toString('hex'),
      rest: '',
    });
    expect(feed([bytes('4:abcd,')], { maxLength: 3 })).toEqual({
      error: 'SCGI_ERR_NETSTRING_TOO_LONG',
    });
    expect(feed([bytes('0:,')], { maxLength: 0 })).toEqual({ payload: '', rest: '' });
    expect(feed([bytes('1:a,')], { maxLength: 0 })).toEqual({
      error: 'SCGI_ERR_NETSTRING_TOO_LONG',
    });
  });

  it(`defaults maxLength to ${DEFAULT_NETSTRING_MAX_LENGTH}`, () => {
    const max = DEFAULT_NETSTRING_MAX_LENGTH;
    const ok = Buffer.concat([bytes(`${max}:`), Buffer.alloc(max, 0x61), bytes(',')]);
    expect(feed([ok])).toMatchObject({ rest: '' });
    expect(feed([bytes(`${max + 1}:`)])).toEqual({ error: 'SCGI_ERR_NETSTRING_TOO_LONG' });
  });

  it('stays failed: every later push rethrows the same error', () => {
    const decoder = new NetstringDecoder();
    let first: unknown;
    try {
      decoder.push(bytes('x'));
    } catch (err) {
      first = err;
    }
    expect((first as ScgiError).code).toBe('SCGI_ERR_NETSTRING_LENGTH');
    expect(() => decoder.push(bytes('1:a,'))).toThrow(first as Error);
    expect(decoder.done).toBe(false);
  });

  describe('errors', () => {
    const cases: Array<[string, string, string]> = [
      ['leading zero', '01:a,', 'SCGI_ERR_NETSTRING_LEADING_ZERO'],
      ['double zero', '00:,', 'SCGI_ERR_NETSTRING_LEADING_ZERO'],
      ['empty length', ':abc,', 'SCGI_ERR_NETSTRING_LENGTH'],
      ['letter in length', '1a:a,', 'SCGI_ERR_NETSTRING_LENGTH'],
      ['sign', '-1:a,', 'SCGI_ERR_NETSTRING_LENGTH'],
      ['space', ' 1:a,', 'SCGI_ERR_NETSTRING_LENGTH'],
      ['zero then junk', '0x', 'SCGI_ERR_NETSTRING_LENGTH'],
      ['missing comma', '3:abc;', 'SCGI_ERR_NETSTRING_COMMA'],
      ['payload longer than announced', '2:abc,', 'SCGI_ERR_NETSTRING_COMMA'],
      ['too long', '65537:', 'SCGI_ERR_NETSTRING_TOO_LONG'],
    ];
    for (const [name, input, code] of cases) {
      it(`${name}: ${JSON.stringify(input)} -> ${code}`, () => {
        expect(codeOf(() => new NetstringDecoder().push(bytes(input)))).toBe(code);
      });
    }

    it('refuses a too long length from its digits, before the colon', () => {
      const decoder = new NetstringDecoder({ maxLength: 100 });
      expect(decoder.push(bytes('10'))).toBeNull();
      expect(codeOf(() => decoder.push(bytes('1')))).toBe('SCGI_ERR_NETSTRING_TOO_LONG');
    });

    it('stops a never-ending stream of digits after a few digits', () => {
      for (const maxLength of [0, 9, 65536, Number.MAX_SAFE_INTEGER]) {
        const decoder = new NetstringDecoder({ maxLength });
        let pushed = 0;
        const code = codeOf(() => {
          for (; pushed < 1000; pushed++) decoder.push(bytes('1'));
        });
        expect(code).toBe('SCGI_ERR_NETSTRING_TOO_LONG');
        expect(pushed).toBeLessThanOrEqual(String(maxLength).length);
      }
    });

    it('validates maxLength', () => {
      for (const maxLength of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, '10']) {
        expect(codeOf(() => new NetstringDecoder({ maxLength } as never))).toBe(
          'SCGI_ERR_INVALID_OPTION',
        );
      }
      expect(codeOf(() => decodeNetstring(bytes('0:,'), -1))).toBe('SCGI_ERR_INVALID_OPTION');
    });
  });
});

describe('decodeNetstring', () => {
  it('returns payload and rest', () => {
    const { payload, rest } = decodeNetstring(bytes('3:abc,def'));
    expect(payload).toEqual(bytes('abc'));
    expect(rest).toEqual(bytes('def'));
  });

  it('throws HEAD_MALFORMED on incomplete input', () => {
    for (const input of ['', '3', '3:', '3:ab', '3:abc']) {
      expect(codeOf(() => decodeNetstring(bytes(input)))).toBe('SCGI_ERR_HEAD_MALFORMED');
    }
  });

  it('applies its maxLength argument', () => {
    expect(codeOf(() => decodeNetstring(bytes('3:abc,'), 2))).toBe('SCGI_ERR_NETSTRING_TOO_LONG');
  });
});

describe('oracle: the netstring package', () => {
  it('decodes what we encode', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (arr) => {
        const payload = Buffer.from(arr);
        const encoded = encodeNetstring(payload);
        expect(oracle.nsPayload(encoded)).toEqual(payload);
        expect(encoded).toEqual(oracle.nsWrite(payload));
      }),
    );
  });

  it('writes what we decode', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 8 }), (p, t) => {
        const { payload, rest } = decodeNetstring(
          Buffer.concat([oracle.nsWrite(Buffer.from(p)), Buffer.from(t)]),
        );
        expect(payload).toEqual(Buffer.from(p));
        expect(rest).toEqual(Buffer.from(t));
      }),
    );
  });

  it('agrees on strings (UTF-8)', () => {
    // Fixed cases: the oracle's string path is slow under a property run.
    for (const s of ['', 'abc', 'é', '€uro', '😀', '\ud800', 'a\0b']) {
      const written = oracle.nsWrite(s);
      expect(encodeNetstring(s)).toEqual(written);
      expect(decodeNetstring(written).payload).toEqual(Buffer.from(s, 'utf8'));
    }
  });
});

describe('properties', () => {
  // Inputs near the grammar, so that every state and error is reached, plus pure noise.
  const nearNetstring = fc.oneof(
    fc
      .tuple(fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ maxLength: 8 }))
      .map(([p, t]) => Buffer.concat([encodeNetstring(Buffer.from(p)), Buffer.from(t)])),
    fc
      .tuple(fc.stringMatching(/^[0-9]{0,3}[:,]?/), fc.uint8Array({ maxLength: 20 }))
      .map(([head, tail]) => Buffer.concat([bytes(head), Buffer.from(tail)])),
    fc.uint8Array({ maxLength: 60 }).map((a) => Buffer.from(a)),
  );

  it('roundtrips any payload, with any trailing bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 500 }), fc.uint8Array(), (p, t) => {
        const { payload, rest } = decodeNetstring(
          Buffer.concat([encodeNetstring(Buffer.from(p)), Buffer.from(t)]),
        );
        expect(payload).toEqual(Buffer.from(p));
        expect(rest).toEqual(Buffer.from(t));
      }),
    );
  });

  it('gives the same outcome for the input split at every offset', () => {
    fc.assert(
      fc.property(nearNetstring, fc.integer({ min: 0, max: 64 }), (input, maxLength) => {
        const options = { maxLength };
        const whole = feed([input], options);
        for (let i = 0; i <= input.length; i++) {
          expect(feed([input.subarray(0, i), input.subarray(i)], options)).toEqual(whole);
        }
      }),
    );
  });

  it('gives the same outcome for random multi-splits, including empty chunks', () => {
    fc.assert(
      fc.property(nearNetstring, fc.array(fc.nat(), { maxLength: 12 }), (input, cuts) => {
        const chunks = splitAt(input, cuts);
        chunks.splice(1, 0, Buffer.alloc(0));
        expect(feed(chunks)).toEqual(feed([input]));
      }),
    );
  });

  it('never throws anything but ScgiError on random bytes', () => {
    fc.assert(
      fc.property(nearNetstring, fc.nat({ max: 70000 }), (input, maxLength) => {
        // feed() asserts that any thrown error is an ScgiError.
        feed([input], { maxLength });
        try {
          decodeNetstring(input, maxLength);
        } catch (err) {
          expect(err).toBeInstanceOf(ScgiError);
        }
      }),
    );
  });
});
