// FastCGI name-value pairs, record headers and request framing (src/fastcgi/records.ts,
// src/fastcgi/encoder.ts): round trips at the 127/128 length boundary and across record
// splits, and typed errors for every malformed pair stream.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ScgiError } from '../src/errors.js';
import { RecordType, Role } from '../src/fastcgi/constants.js';
import {
  encodeBeginRequest,
  encodeGetValues,
  encodeParams,
  encodeRequest,
  encodeStdin,
  encodeStdinEnd,
  encodeStreamChunk,
} from '../src/fastcgi/encoder.js';
import {
  decodeBeginRequestBody,
  decodeEndRequestBody,
  decodePairs,
  encodePairs,
  encodeRecord,
  writeEndRequestBody,
} from '../src/fastcgi/records.js';

/** Records of a byte stream, parsed by hand (independent of src/fastcgi/record-reader.ts). */
function records(bytes: Buffer) {
  const out: { type: number; id: number; content: Buffer; padding: number }[] = [];
  let i = 0;
  while (i < bytes.length) {
    expect(bytes[i]).toBe(1);
    const length = bytes.readUInt16BE(i + 4);
    const padding = bytes[i + 6]!;
    out.push({
      type: bytes[i + 1]!,
      id: bytes.readUInt16BE(i + 2),
      content: bytes.subarray(i + 8, i + 8 + length),
      padding,
    });
    i += 8 + length + padding;
  }
  expect(i).toBe(bytes.length);
  return out;
}

/** Lengths that sit on the 1-byte / 4-byte boundary, plus a few others. */
const edgyLength = fc.oneof(
  fc.constantFrom(0, 1, 126, 127, 128, 129, 255, 256),
  fc.integer({ min: 0, max: 600 }),
);
const bytesOf = (n: number) => fc.uint8Array({ minLength: n, maxLength: n }).map(Buffer.from);
const pairArb = fc.tuple(
  edgyLength.chain((n) =>
    fc.string({ unit: 'binary-ascii', minLength: Math.max(1, n), maxLength: Math.max(1, n) }),
  ),
  edgyLength.chain(bytesOf),
);

const codeOf = (fn: () => unknown): string => {
  try {
    fn();
    return 'none';
  } catch (err) {
    expect(err).toBeInstanceOf(ScgiError);
    return (err as ScgiError).code;
  }
};

describe('name-value pairs', () => {
  it('round-trip with lengths around 127/128 and raw-byte values', () => {
    fc.assert(
      fc.property(fc.array(pairArb, { maxLength: 12 }), (pairs) => {
        const decoded = decodePairs(encodePairs(pairs));
        expect(decoded.map(([n, v]) => [n, v.toString('hex')])).toEqual(
          pairs.map(([n, v]) => [n, v.toString('hex')]),
        );
      }),
      { numRuns: 300 },
    );
  });

  it('uses a 1-byte length below 128 and a 4-byte length with the high bit from 128', () => {
    expect([...encodePairs([['A', 'x'.repeat(127)]]).subarray(0, 2)]).toEqual([1, 127]);
    expect([...encodePairs([['A', 'x'.repeat(128)]]).subarray(0, 5)]).toEqual([1, 0x80, 0, 0, 128]);
    const big = encodePairs([['B'.repeat(70_000), '']]);
    expect(big.readUInt32BE(0)).toBe((0x80000000 | 70_000) >>> 0);
    expect(decodePairs(big)[0]![0]).toHaveLength(70_000);
  });

  it('writes strings as latin1 when they fit, else UTF-8, and NUL bytes as they are', () => {
    const [[n1, v1], [, v2], [, v3]] = decodePairs(
      encodePairs([
        ['CAFÉ', 'é'],
        ['SNOW', '☃'],
        ['NUL', 'a\0b'],
      ]),
    ) as [[string, Buffer], [string, Buffer], [string, Buffer]];
    expect(n1).toBe('CAFÉ');
    expect(v1.toString('hex')).toBe('e9');
    expect(v2.toString('hex')).toBe(Buffer.from('☃').toString('hex'));
    expect(v3.toString('latin1')).toBe('a\0b');
  });

  it('a stream cut at any offset decodes to whole pairs or fails with SCGI_ERR_FASTCGI_PAIRS', () => {
    fc.assert(
      fc.property(fc.array(pairArb, { minLength: 1, maxLength: 4 }), (pairs) => {
        const stream = encodePairs(pairs);
        const boundaries = new Set<number>([0]);
        let at = 0;
        for (const p of pairs) {
          at += encodePairs([p]).length;
          boundaries.add(at);
        }
        for (let cut = 0; cut <= stream.length; cut++) {
          const code = codeOf(() => decodePairs(stream.subarray(0, cut)));
          expect(code).toBe(boundaries.has(cut) ? 'none' : 'SCGI_ERR_FASTCGI_PAIRS');
        }
      }),
      { numRuns: 40 },
    );
  });

  it('refuses a 4-byte length over maxLength before reading it', () => {
    const stream = Buffer.from([0x80, 0, 0x10, 0, 1, 0x41]); // a 4096-byte name, not there
    expect(codeOf(() => decodePairs(stream, { maxLength: 4095 }))).toBe('SCGI_ERR_FASTCGI_PAIRS');
    expect(() => decodePairs(stream, { maxLength: 4095 })).toThrow(/over the limit of 4095/);
    // 0xffffffff: 2^31-1 after the high bit, far past the stream.
    expect(codeOf(() => decodePairs(Buffer.from([0xff, 0xff, 0xff, 0xff, 0])))).toBe(
      'SCGI_ERR_FASTCGI_PAIRS',
    );
  });

  it('refuses pairs it cannot encode with SCGI_ERR_FASTCGI_PARAM', () => {
    expect(codeOf(() => encodePairs([['', 'x']]))).toBe('SCGI_ERR_FASTCGI_PARAM');
    expect(codeOf(() => encodePairs([['A', 42 as unknown as string]]))).toBe(
      'SCGI_ERR_FASTCGI_PARAM',
    );
  });
});

describe('request framing', () => {
  const params = fc.array(
    fc.tuple(
      fc.stringMatching(/^[A-Z_]{1,20}$/),
      fc.oneof(edgyLength.chain(bytesOf), fc.constant(Buffer.alloc(70_000, 0x61))),
    ),
    { maxLength: 6 },
  );

  it('encodeRequest: BEGIN_REQUEST, PARAMS records of <= 65,535 bytes, padding to 8, STDIN', () => {
    fc.assert(
      fc.property(
        params,
        fc.option(fc.integer({ min: 0, max: 140_000 }).chain(bytesOf), { nil: undefined }),
        fc.integer({ min: 1, max: 65535 }),
        fc.boolean(),
        fc.boolean(),
        (pairs, body, id, keepConn, pad) => {
          const out = encodeRequest(id, pairs, { keepConn, body, pad });
          const recs = records(out);
          expect(recs[0]!.type).toBe(RecordType.BEGIN_REQUEST);
          expect(decodeBeginRequestBody(recs[0]!.content)).toEqual({
            role: Role.RESPONDER,
            keepConn,
          });
          for (const r of recs) {
            expect(r.id).toBe(id);
            expect(r.content.length).toBeLessThanOrEqual(65535);
            if (pad) expect((r.content.length + r.padding) % 8).toBe(0);
            else expect(r.padding).toBe(0);
          }
          const stream = (type: number) => {
            const mine = recs.filter((r) => r.type === type);
            expect(mine.at(-1)!.content.length).toBe(0); // the empty record ends the stream
            expect(mine.slice(0, -1).every((r) => r.content.length > 0)).toBe(true);
            return Buffer.concat(mine.map((r) => r.content));
          };
          expect(stream(RecordType.PARAMS).equals(encodePairs(pairs))).toBe(true);
          expect(
            encodeParams(id, pairs, pad).equals(
              out.subarray(16, 16 + encodeParams(id, pairs, pad).length),
            ),
          ).toBe(true);
          if (body === undefined) {
            expect(recs.some((r) => r.type === RecordType.STDIN)).toBe(false);
          } else {
            expect(stream(RecordType.STDIN).equals(body)).toBe(true);
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('ends PARAMS records at pair boundaries, as PHP decodes each record on its own', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.stringMatching(/^[A-Z]{1,8}$/), fc.integer({ min: 0, max: 40_000 })), {
          minLength: 1,
          maxLength: 12,
        }),
        (spec) => {
          const pairs = spec.map(([n, len], i) => [`${n}${i}`, 'x'.repeat(len)] as const);
          const recs = records(encodeParams(1, pairs)).filter((r) => r.content.length > 0);
          // Every record holds whole pairs: it decodes without its neighbours.
          const decoded = recs.flatMap((r) => decodePairs(r.content).map(([n]) => n));
          expect(decoded).toEqual(pairs.map(([n]) => n));
          // As few records as that allows: two neighbours never fit in one.
          for (let i = 1; i < recs.length; i++) {
            const firstOfNext = encodePairs([
              pairs[decodePairs(Buffer.concat(recs.slice(0, i).map((r) => r.content))).length]!,
            ]);
            expect(recs[i - 1]!.content.length + firstOfNext.length).toBeGreaterThan(65535);
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('the one-pass path for arrays of pairs gives the bytes of the general path', () => {
    // An array of pairs (what the engine sends) takes encodeCommonRequest; a Map goes through
    // preparePairs. Strings mix ASCII, latin1 and chars above 0xff (which leave the one-pass
    // path midway), around the 127/128 length boundary; some streams pass one record.
    const text = fc.oneof(
      fc.string({ maxLength: 140 }),
      fc.string({ unit: 'binary', maxLength: 140 }),
      fc.integer({ min: 120, max: 135 }).map((n) => 'é'.repeat(n)),
      fc.constant('x'.repeat(66_000)),
    );
    const value = fc.oneof(text, fc.integer({ min: 0, max: 200 }).chain(bytesOf));
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.string({ minLength: 1, maxLength: 130 }), value), { maxLength: 8 }),
        fc.option(fc.constant(Buffer.alloc(0)), { nil: undefined }),
        fc.boolean(),
        fc.boolean(),
        (pairs, body, keepConn, pad) => {
          const options = { keepConn, body, pad };
          const viaArray = encodeRequest(7, pairs, options);
          const viaMap = encodeRequest(7, new Map(pairs), options);
          if (new Set(pairs.map(([n]) => n)).size === pairs.length) {
            expect(viaArray.equals(viaMap)).toBe(true);
          }
          const recs = records(viaArray).filter((r) => r.type === RecordType.PARAMS);
          const stream = Buffer.concat(recs.map((r) => r.content));
          expect(stream.equals(encodePairs(pairs))).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a small GET is one Buffer of BEGIN_REQUEST + PARAMS + empty PARAMS + empty STDIN', () => {
    const out = encodeRequest(1, { REQUEST_METHOD: 'GET' }, { body: Buffer.alloc(0) });
    expect(records(out).map((r) => [r.type, r.content.length])).toEqual([
      [RecordType.BEGIN_REQUEST, 8],
      [RecordType.PARAMS, 19],
      [RecordType.PARAMS, 0],
      [RecordType.STDIN, 0],
    ]);
  });

  it('encodeStdin frames a chunk as records of <= 65,535 bytes, without copying large ones', () => {
    const chunk = Buffer.alloc(200_000, 7);
    const pieces = encodeStdin(3, chunk);
    expect(pieces.some((p) => p.buffer === chunk.buffer)).toBe(true);
    const recs = records(Buffer.concat([...pieces, encodeStdinEnd(3)]));
    expect(recs.map((r) => r.content.length)).toEqual([65535, 65535, 65535, 3395, 0]);
    expect(encodeStreamChunk(RecordType.STDOUT, 1, Buffer.alloc(0))).toEqual([]);
    expect(records(Buffer.concat(encodeStdin(1, Buffer.from('hi'))))[0]!.padding).toBe(6);
  });

  it('refuses a request id outside 1..65535', () => {
    for (const id of [0, 65536, 1.5]) {
      expect(codeOf(() => encodeBeginRequest(id))).toBe('SCGI_ERR_INVALID_OPTION');
      expect(codeOf(() => encodeRequest(id, {}))).toBe('SCGI_ERR_INVALID_OPTION');
    }
  });

  it('BEGIN_REQUEST, END_REQUEST and GET_VALUES bodies', () => {
    expect([...encodeBeginRequest(258, Role.FILTER, true)]).toEqual([
      1, 1, 1, 2, 0, 8, 0, 0, 0, 3, 1, 0, 0, 0, 0, 0,
    ]);
    const end = Buffer.alloc(8);
    writeEndRequestBody(end, 0, 0xfffffffe, 3);
    expect(decodeEndRequestBody(end)).toEqual({ appStatus: 0xfffffffe, protocolStatus: 3 });
    const gv = records(encodeGetValues(['FCGI_MAX_CONNS']))[0]!;
    expect([gv.type, gv.id]).toEqual([RecordType.GET_VALUES, 0]);
    expect(decodePairs(gv.content).map(([n, v]) => [n, v.length])).toEqual([['FCGI_MAX_CONNS', 0]]);
    expect(encodeRecord(RecordType.STDOUT, 1, Buffer.from('abc')).length).toBe(16);
  });
});
