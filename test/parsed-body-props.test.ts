/**
 * Issue 12 §1, as properties: for random qs-style forms and random JSON documents, the backend
 * (examples/python/app.py /sha256, a real process) receives exactly the client's bytes, or the
 * request gets the typed SCGI_ERR_BODY_CONSUMED; never something else. With `verify:
 * keepRawBody` or the proxy mounted first, always the exact bytes. Express 4 and 5, one backend
 * and one app each for every property.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, startPythonBackend } from './helpers/backends.js';
import { has } from './helpers/binaries.js';
import {
  exact,
  type Outcome,
  type ParsedBodyFront,
  post,
  REFUSED,
  startParsedBodyFront,
} from './helpers/parsed-body.js';

const RUNS = 100;

// ---- forms: qs-style bracket keys, repeated keys, odd percent-encodings, `+` ------------------

const formName = fc.constantFrom('a', 'user', 'list', '__proto__', 'constructor', 'x_y', 'é');
const segment = fc.oneof(
  fc.constant('[]'),
  fc.nat({ max: 12 }).map((n) => `[${n}]`),
  fc.constantFrom('[name]', '[prototype]', '[__proto__]', '[a b]', '[%5B]'),
);
const valuePiece = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9._~-]{1,4}$/),
  fc.constantFrom('+', '%20', '%41', '%c3%a9', '%C3%A9', '%2B', '%26', '%3D', '%zz', '%', 'é', '='),
);
const pair = fc
  .tuple(
    formName,
    fc.array(segment, { maxLength: 4 }),
    fc.option(fc.array(valuePiece, { maxLength: 5 })),
  )
  .map(
    ([name, segs, value]) => name + segs.join('') + (value === null ? '' : `=${value.join('')}`),
  );
const form = fc
  .tuple(fc.array(pair, { minLength: 1, maxLength: 8 }), fc.constantFrom('&', '&&'))
  .map(([pairs, sep]) => pairs.join(sep));

// ---- JSON documents: big ints, escapes, whitespace, duplicate keys ---------------------------

const ws = fc.constantFrom('', ' ', '\n', '\t', '  \r\n');
const jsonNumber = fc.oneof(
  fc.bigInt({ min: -(10n ** 25n), max: 10n ** 25n }).map(String),
  fc.constantFrom('1e2', '100', '-0', '0.10', '1E+2', '12345678901234567890', '9007199254740993'),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => JSON.stringify(d)),
);
const jsonString = fc
  .array(
    fc.oneof(
      fc.string({ maxLength: 4 }).map((s) => s.replace(/["\\]/g, '')),
      fc.constantFrom(
        '\\u00e9',
        '\\u00E9',
        'é',
        '\\n',
        '\\"',
        '\\\\',
        '\\/',
        '\\ud83d\\ude00',
        '日',
      ),
    ),
    { maxLength: 4 },
  )
  .map((parts) => `"${parts.join('')}"`);
const key = fc.oneof(fc.constantFrom('"a"', '"id"', '"__proto__"', '"caf\\u00e9"'), jsonString);
const { doc } = fc.letrec<{ value: string; array: string; object: string; doc: string }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    jsonNumber,
    jsonString,
    fc.constantFrom('true', 'false', 'null'),
    tie('array'),
    tie('object'),
  ),
  array: fc
    .tuple(ws, fc.array(fc.tuple(tie('value'), ws), { maxLength: 4 }), ws)
    .map(([a, items, b]) => `[${a}${items.map(([v, w]) => v + w).join(',')}${b}]`),
  object: fc
    .tuple(ws, fc.array(fc.tuple(key, ws, tie('value'), ws), { maxLength: 4 }), ws)
    .map(
      ([a, members, b]) =>
        `{${a}${members.map(([k, w1, v, w2]) => `${k}${w1}:${w2}${v}`).join(',')}${b}}`,
    ),
  // body-parser's strict mode takes an object or an array at the top.
  doc: fc.oneof(tie('object'), tie('array')),
}));

const isExact = (o: Outcome, sent: string) => {
  try {
    expect(o).toEqual(exact(sent));
    return true;
  } catch {
    return false;
  }
};

let backend: Backend;
beforeAll(async () => {
  if (has('python3')) backend = await startPythonBackend({ socket: 'unix', threads: 16 });
});
afterAll(async () => {
  await backend?.stop();
});

describe.skipIf(!has('python3')).each([4, 5] as const)('Express %i', (version) => {
  let front: ParsedBodyFront;
  beforeAll(async () => {
    front = await startParsedBodyFront(version, backend.address);
  });
  afterAll(async () => {
    await front?.close();
  });

  const property = (type: string) => async (body: string) => {
    if (type === 'json') JSON.parse(body); // the generator writes valid JSON only
    const contentType = type === 'json' ? 'application/json' : 'application/x-www-form-urlencoded';
    for (const mount of ['keep', 'first']) {
      expect(await post(`${front.url}/${mount}/sha256`, body, contentType)).toEqual(exact(body));
    }
    const parsed = await post(`${front.url}/parsed/sha256`, body, contentType);
    if (!isExact(parsed, body)) expect(parsed).toEqual(REFUSED);
  };

  it('random nested forms: exact bytes or SCGI_ERR_BODY_CONSUMED', async () => {
    await fc.assert(fc.asyncProperty(form, property('form')), { numRuns: RUNS });
  });

  it('random JSON documents: exact bytes or SCGI_ERR_BODY_CONSUMED', async () => {
    await fc.assert(fc.asyncProperty(doc, property('json')), { numRuns: RUNS });
  });
});
