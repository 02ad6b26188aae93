// The FastCGI response decoder (src/fastcgi/decoder.ts) and its record reader: every split of
// the input gives the same STDOUT, STDERR and END_REQUEST, padding is skipped wherever it falls,
// and every protocol violation is a typed SCGI_ERR_FASTCGI_* error (502), never another throw.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ScgiError } from '../src/errors.js';
import { RecordType } from '../src/fastcgi/constants.js';
import { FastcgiResponseDecoder } from '../src/fastcgi/decoder.js';
import { writeHeader } from '../src/fastcgi/records.js';

/** A record with an explicit padding length (any 0..255, as the spec allows). */
function record(type: number, id: number, content: Buffer, padding = 0, version = 1): Buffer {
  const out = Buffer.alloc(8 + content.length + padding, 0xee); // padding bytes are garbage
  writeHeader(out, 0, type, id, content.length, padding);
  out[0] = version;
  content.copy(out, 8);
  return out;
}
const endRequest = (id: number, appStatus: number, protocolStatus: number, padding = 0) => {
  const body = Buffer.alloc(8);
  body.writeUInt32BE(appStatus, 0);
  body[4] = protocolStatus;
  return record(RecordType.END_REQUEST, id, body, padding);
};

interface Result {
  stdout: Buffer;
  stderr: Buffer;
  end: { appStatus: number; protocolStatus: number } | null;
  reusable: boolean;
  error: string | null;
}

/** Feeds `chunks` to a decoder for request `id`, then signals EOF when `eof`. */
function decode(chunks: Buffer[], id = 1, eof = true): Result {
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  let end: Result['end'] = null;
  const d = new FastcgiResponseDecoder(
    {
      onStdout: (c) => stdout.push(Buffer.from(c)),
      onStderr: (c) => stderr.push(Buffer.from(c)),
      onEnd: (e) => {
        end = e;
      },
    },
    id,
  );
  let error: string | null = null;
  try {
    for (const c of chunks) d.push(c);
    if (eof) d.end();
  } catch (err) {
    if (!(err instanceof ScgiError)) throw err; // never a throw of another kind
    expect(err.statusCode).toBe(502);
    error = err.code;
  }
  return {
    stdout: Buffer.concat(stdout),
    stderr: Buffer.concat(stderr),
    end,
    reusable: d.reusable,
    error,
  };
}

/** Splits `bytes` at the given offsets. */
function splitAt(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of [...points, bytes.length]) {
    out.push(bytes.subarray(prev, p));
    prev = p;
  }
  return out;
}

const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map(Buffer.from);

/** A valid response: STDOUT and STDERR records in any order, empty STDOUT, END_REQUEST. */
const responseArb = (maxContent: number, maxRecords: number) =>
  fc
    .record({
      id: fc.integer({ min: 1, max: 65535 }),
      parts: fc.array(
        fc.record({
          stderr: fc.boolean(),
          content: bytes(maxContent).filter((b) => b.length > 0),
          padding: fc.integer({ min: 0, max: 255 }),
        }),
        { maxLength: maxRecords },
      ),
      appStatus: fc.integer({ min: 0, max: 0xffffffff }),
      protocolStatus: fc.integer({ min: 0, max: 3 }),
      endPadding: fc.integer({ min: 0, max: 16 }),
    })
    .map((r) => {
      const stream = Buffer.concat([
        ...r.parts.map((p) =>
          record(p.stderr ? RecordType.STDERR : RecordType.STDOUT, r.id, p.content, p.padding),
        ),
        record(RecordType.STDOUT, r.id, Buffer.alloc(0), 3),
        endRequest(r.id, r.appStatus, r.protocolStatus, r.endPadding),
      ]);
      const of = (err: boolean) =>
        Buffer.concat(r.parts.filter((p) => p.stderr === err).map((p) => p.content));
      return { ...r, stream, stdout: of(false), stderr: of(true) };
    });

const expectComplete = (
  result: Result,
  r: ReturnType<typeof responseArb> extends fc.Arbitrary<infer T> ? T : never,
) => {
  expect(result.error).toBeNull();
  expect(result.stdout.equals(r.stdout)).toBe(true);
  expect(result.stderr.equals(r.stderr)).toBe(true);
  expect(result.end).toEqual({ appStatus: r.appStatus, protocolStatus: r.protocolStatus });
  expect(result.reusable).toBe(true);
};

describe('FastcgiResponseDecoder: splits', () => {
  it('gives the same result for a small response split at EVERY offset, and byte by byte', () => {
    fc.assert(
      fc.property(responseArb(24, 4), (r) => {
        for (let cut = 0; cut <= r.stream.length; cut++) {
          expectComplete(decode([r.stream.subarray(0, cut), r.stream.subarray(cut)], r.id), r);
        }
        expectComplete(
          decode(
            [...r.stream].map((b) => Buffer.from([b])),
            r.id,
          ),
          r,
        );
      }),
      { numRuns: 150 },
    );
  });

  it('gives the same result for large responses split at random offsets', () => {
    fc.assert(
      fc.property(responseArb(65535, 5), fc.array(fc.nat(), { maxLength: 30 }), (r, cuts) =>
        expectComplete(decode(splitAt(r.stream, cuts), r.id), r),
      ),
      { numRuns: 40 },
    );
  });

  it('hands STDOUT over as views into the pushed chunk (zero-copy)', () => {
    const chunk = Buffer.concat([
      record(RecordType.STDOUT, 1, Buffer.from('hello')),
      endRequest(1, 0, 0),
    ]);
    const seen: Buffer[] = [];
    const d = new FastcgiResponseDecoder({ onStdout: (c) => seen.push(c), onEnd: () => {} });
    d.push(chunk);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.buffer).toBe(chunk.buffer);
    expect(seen[0]!.toString()).toBe('hello');
  });

  it('truncated anywhere before the end of END_REQUEST: SCGI_ERR_FASTCGI_TRUNCATED at EOF', () => {
    fc.assert(
      fc.property(responseArb(40, 3), (r) => {
        for (let cut = 0; cut < r.stream.length; cut++) {
          const result = decode([r.stream.subarray(0, cut)], r.id);
          expect(result.error).toBe('SCGI_ERR_FASTCGI_TRUNCATED');
          expect(result.end).toBeNull();
          expect(result.reusable).toBe(false);
        }
      }),
      { numRuns: 30 },
    );
  });

  it('reset() readies a reusable connection for the next request id', () => {
    const ends: number[] = [];
    const d = new FastcgiResponseDecoder(
      { onStdout: () => {}, onEnd: (e) => ends.push(e.appStatus) },
      1,
    );
    d.push(endRequest(1, 7, 0));
    expect(d.reusable).toBe(true);
    d.reset(2);
    d.push(endRequest(2, 8, 0));
    expect(ends).toEqual([7, 8]);
  });
});

describe('FastcgiResponseDecoder: protocol violations', () => {
  const ok = record(RecordType.STDOUT, 1, Buffer.from('Status: 200 OK\r\n\r\n'));
  const cases: [string, Buffer[], string, RegExp][] = [
    [
      'version 0',
      [record(RecordType.STDOUT, 1, Buffer.from('x'), 0, 0)],
      'SCGI_ERR_FASTCGI_VERSION',
      /version 0/,
    ],
    [
      'version 2 after a good record',
      [ok, record(RecordType.STDOUT, 1, Buffer.alloc(0), 0, 2)],
      'SCGI_ERR_FASTCGI_VERSION',
      /version 2/,
    ],
    [
      'unknown type 12',
      [record(12, 1, Buffer.alloc(0))],
      'SCGI_ERR_FASTCGI_RECORD',
      /unknown record type 12/,
    ],
    [
      'unknown type 0',
      [record(0, 1, Buffer.alloc(0))],
      'SCGI_ERR_FASTCGI_RECORD',
      /unknown record type 0/,
    ],
    [
      'a client-only type',
      [record(RecordType.STDIN, 1, Buffer.from('x'))],
      'SCGI_ERR_FASTCGI_RECORD',
      /STDIN from the application/,
    ],
    [
      'another request id',
      [record(RecordType.STDOUT, 2, Buffer.from('x'))],
      'SCGI_ERR_FASTCGI_RECORD',
      /request id 2/,
    ],
    [
      'an unasked management record',
      [record(RecordType.GET_VALUES_RESULT, 0, Buffer.alloc(0))],
      'SCGI_ERR_FASTCGI_RECORD',
      /management record/,
    ],
    [
      'STDOUT after END_REQUEST',
      [ok, endRequest(1, 0, 0), record(RecordType.STDOUT, 1, Buffer.from('x'))],
      'SCGI_ERR_FASTCGI_RECORD',
      /STDOUT after END_REQUEST/,
    ],
    [
      'a second END_REQUEST',
      [endRequest(1, 0, 0), endRequest(1, 0, 0)],
      'SCGI_ERR_FASTCGI_RECORD',
      /after END_REQUEST/,
    ],
    [
      'END_REQUEST of 7 bytes',
      [record(RecordType.END_REQUEST, 1, Buffer.alloc(7))],
      'SCGI_ERR_FASTCGI_RECORD',
      /7 bytes instead of 8/,
    ],
    [
      'END_REQUEST of 16 bytes',
      [record(RecordType.END_REQUEST, 1, Buffer.alloc(16))],
      'SCGI_ERR_FASTCGI_RECORD',
      /16 bytes/,
    ],
    [
      'STDOUT data after the empty STDOUT',
      [
        ok,
        record(RecordType.STDOUT, 1, Buffer.alloc(0)),
        record(RecordType.STDOUT, 1, Buffer.from('late')),
      ],
      'SCGI_ERR_FASTCGI_RECORD',
      /end of the STDOUT stream/,
    ],
    ['a close before END_REQUEST', [ok], 'SCGI_ERR_FASTCGI_TRUNCATED', /before END_REQUEST/],
    [
      'a close inside a header',
      [ok, ok.subarray(0, 5)],
      'SCGI_ERR_FASTCGI_TRUNCATED',
      /inside a record header \(5 of 8/,
    ],
  ];

  it.each(cases)('%s', (_name, chunks, code, message) => {
    const whole = Buffer.concat(chunks);
    // Same verdict whatever the split.
    for (let cut = 0; cut <= whole.length; cut++) {
      expect(decode([whole.subarray(0, cut), whole.subarray(cut)]).error).toBe(code);
    }
    const d = new FastcgiResponseDecoder({ onStdout: () => {}, onEnd: () => {} });
    const run = () => {
      d.push(whole);
      d.end();
    };
    expect(run).toThrow(message);
    expect(d.reusable).toBe(false);
    // A failed decoder stays failed.
    expect(() => d.push(ok)).toThrow(ScgiError);
  });

  it('bytes after END_REQUEST make the connection not reusable', () => {
    const result = decode([endRequest(1, 0, 0), Buffer.from([1])], 1, false);
    expect(result.end).toEqual({ appStatus: 0, protocolStatus: 0 });
    expect(result.reusable).toBe(false);
    // A partial header after END_REQUEST: not reusable either.
    expect(decode([endRequest(1, 0, 0)], 1, false).reusable).toBe(true);
    const d = new FastcgiResponseDecoder({ onStdout: () => {}, onEnd: () => {} });
    d.push(endRequest(1, 0, 0));
    expect(() => d.push(Buffer.from([1, 6]))).not.toThrow(); // an incomplete header so far
    expect(d.reusable).toBe(false);
  });

  it('management records reach onManagement when the client asked', () => {
    const got: [number, string][] = [];
    const d = new FastcgiResponseDecoder({
      onStdout: () => {},
      onEnd: () => {},
      onManagement: (type, content) => got.push([type, content.toString('hex')]),
    });
    const result = record(RecordType.GET_VALUES_RESULT, 0, Buffer.from([1, 1, 0x41, 0x31]), 4);
    for (const b of result) d.push(Buffer.from([b]));
    expect(got).toEqual([[RecordType.GET_VALUES_RESULT, '01014131']]);
    expect(() => d.push(record(RecordType.STDOUT, 0, Buffer.alloc(1)))).toThrow(
      /as a management record/,
    );
  });

  it('random corruption of a valid stream: a typed error or a valid parse, never another throw', () => {
    fc.assert(
      fc.property(
        responseArb(30, 3),
        fc.nat(),
        fc.integer({ min: 0, max: 255 }),
        fc.array(fc.nat(), { maxLength: 5 }),
        (r, at, value, cuts) => {
          const bad = Buffer.from(r.stream);
          bad[at % bad.length] = value;
          const result = decode(splitAt(bad, cuts), r.id);
          if (result.error === null) expect(result.end).not.toBeNull();
          else expect(result.error).toMatch(/^SCGI_ERR_FASTCGI_/);
        },
      ),
      { numRuns: 1000 },
    );
  });
});
