import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeRequestPath,
  removeDotSegments,
  scriptNameProblem,
  splitRequestTarget,
  splitScriptName,
} from '../src/cgi/request-path.js';

const latin1 = (b: Buffer) => b.toString('latin1');

/** RFC 3986 §5.2.4, transcribed step by step, as the reference model. */
function rfcRemoveDotSegments(input: string): string {
  let out = '';
  const dropLast = () => {
    out = out.slice(0, Math.max(0, out.lastIndexOf('/')));
  };
  while (input.length > 0) {
    if (input.startsWith('../')) input = input.slice(3);
    else if (input.startsWith('./')) input = input.slice(2);
    else if (input.startsWith('/./')) input = input.slice(2);
    else if (input === '/.') input = '/';
    else if (input.startsWith('/../')) {
      input = input.slice(3);
      dropLast();
    } else if (input === '/..') {
      input = '/';
      dropLast();
    } else if (input === '.' || input === '..') input = '';
    else {
      const next = input.indexOf('/', input.startsWith('/') ? 1 : 0);
      const segment = next === -1 ? input : input.slice(0, next);
      out += segment;
      input = input.slice(segment.length);
    }
  }
  return out;
}

describe('splitRequestTarget', () => {
  it.each([
    ['/', '/', '/', ''],
    ['/a?b=1&c', '/a?b=1&c', '/a', 'b=1&c'],
    ['/a?b=1#frag', '/a?b=1', '/a', 'b=1'],
    ['/a#frag?x', '/a', '/a', ''],
    ['/p?', '/p?', '/p', ''],
    ['/p?a?b', '/p?a?b', '/p', 'a?b'],
    ['/%2F?%20', '/%2F?%20', '/%2F', '%20'],
    ['http://host.test/p?q=1', '/p?q=1', '/p', 'q=1', 'host.test'],
    ['HTTPS://user@host.test:8443/a/b#f', '/a/b', '/a/b', '', 'user@host.test:8443'],
    ['http://host.test', '/', '/', '', 'host.test'],
    ['http://host.test?x', '/?x', '/', 'x', 'host.test'],
    ['*', '*', '*', ''],
    ['host.test:443', 'host.test:443', 'host.test:443', ''],
    ['', '', '', ''],
  ])('%j -> uri %j, path %j, query %j, authority %j', (target, uri, path, query, authority?) => {
    const expected =
      authority === undefined ? { uri, path, query } : { uri, path, query, authority };
    expect(splitRequestTarget(target)).toEqual(expected);
  });
});

describe('decodeRequestPath', () => {
  it.each([
    ['/', '/'],
    ['/a/b', '/a/b'],
    ['/a%2Fb', '/a/b'],
    ['/%E9t%c3%A9', '/\xe9t\xc3\xa9'],
    ['/%zz/%4/a%', '/%zz/%4/a%'],
    ['/%2e%2e/x', '/x'],
    ['/a/..%2f..%2fb', '/b'],
    ['/a/%2E/b', '/a/b'],
    ['/a//b', '/a//b'],
    ['/a//../b', '/a/b'],
    ['/a/./b/.', '/a/b/'],
    ['/a/b/..', '/a/'],
    ['/a/b/../', '/a/'],
    ['/../a', '/a'],
    ['/../../..', '/'],
    ['/.', '/'],
    ['/..', '/'],
    ['/...', '/...'],
    ['/a/.b/..c/b..', '/a/.b/..c/b..'],
    ['/a/b/c/./../../g', '/a/g'],
    ['/caf\xe9', '/caf\xe9'],
  ])('%j -> %j', (raw, expected) => {
    expect(latin1(decodeRequestPath(raw))).toBe(expected);
  });

  it('takes a string with code points above U+00FF as UTF-8', () => {
    expect(decodeRequestPath('/\u20ac%20').toString('utf8')).toBe('/\u20ac ');
  });

  it.each(['/%00', '/a%00b', '/a\0', '/%2e%00'])('refuses a NUL byte: %j', (raw) => {
    expect(() => decodeRequestPath(raw)).toThrow(
      expect.objectContaining({ code: 'SCGI_ERR_PATH_NUL' }),
    );
  });

  it.each([
    '',
    '*',
    'a/b',
    'host:80',
    '%2Fa',
  ])('refuses a path not starting with "/": %j', (raw) => {
    expect(() => decodeRequestPath(raw)).toThrow(
      expect.objectContaining({ code: 'SCGI_ERR_BAD_PATH' }),
    );
  });
});

describe('splitScriptName', () => {
  const split = (path: string, prefix: string) =>
    latin1(splitScriptName(decodeRequestPath(path), prefix));

  it.each([
    ['/app', '/app', ''],
    ['/app/', '/app', '/'],
    ['/app/x/y', '/app', '/x/y'],
    ['/app//x', '/app', '//x'],
    ['/a/b/c', '/a/b', '/c'],
    ['/x', '', '/x'],
    ['/', '', '/'],
    ['/caf%C3%A9/x', '/café', '/x'],
  ])('%j under %j -> PATH_INFO %j', (path, prefix, info) => {
    expect(split(path, prefix)).toBe(info);
  });

  it.each([
    ['/app2', '/app'],
    ['/ap', '/app'],
    ['/', '/app'],
    ['/APP/x', '/app'],
    ['/app/../admin', '/app'],
    ['/app/%2e%2e/admin', '/app'],
    ['/app/..%2Fadmin', '/app'],
    ['/app/x/../../admin', '/app'],
  ])('refuses %j under %j', (path, prefix) => {
    expect(() => split(path, prefix)).toThrow(
      expect.objectContaining({ code: 'SCGI_ERR_BAD_PATH' }),
    );
  });

  it('accepts the prefix as bytes', () => {
    expect(latin1(splitScriptName(Buffer.from('/app/x'), Buffer.from('/app')))).toBe('/x');
  });
});

describe('scriptNameProblem', () => {
  it.each(['', '/app', '/a/b', '/café', '/a.b', '/%41'])('accepts %j', (name) => {
    expect(scriptNameProblem(name)).toBeNull();
  });
  it.each([
    '/',
    'app',
    '/app/',
    '/a//b',
    '/a/./b',
    '/a/..',
    '/a?b',
    '/a#b',
    '/a\0',
    '/a\nb',
  ])('refuses %j', (name) => {
    expect(scriptNameProblem(name)).toEqual(expect.any(String));
  });
});

// Segments chosen to hit every case: plain, dots, encoded dots and slashes, empty, high bytes.
const segment = fc.constantFrom(
  'a',
  'b',
  '',
  '.',
  '..',
  '...',
  '%2e',
  '%2E%2e',
  '.%2e',
  '..%2f',
  '%2f..',
  'x%2F..%2F..',
  '%E9',
  '%zz',
  'app',
  'app2',
);
const rawPath = fc.array(segment, { maxLength: 12 }).map((s) => `/${s.join('/')}`);

describe('properties', () => {
  it('matches the RFC 3986 §5.2.4 reference on the decoded bytes', () => {
    fc.assert(
      fc.property(rawPath, (raw) => {
        const decoded = latin1(Buffer.from(decodeURIComponentBytes(raw)));
        expect(latin1(decodeRequestPath(raw))).toBe(rfcRemoveDotSegments(decoded));
      }),
      { numRuns: 2000 },
    );
  });

  it('never leaves a "." or ".." segment, and always starts with "/"', () => {
    fc.assert(
      fc.property(rawPath, (raw) => {
        const out = latin1(decodeRequestPath(raw));
        expect(out.startsWith('/')).toBe(true);
        expect(out.split('/').some((s) => s === '.' || s === '..')).toBe(false);
        expect(out).not.toMatch(/\/\.\.?(\/|$)/);
      }),
      { numRuns: 2000 },
    );
  });

  it('is idempotent', () => {
    fc.assert(
      fc.property(rawPath, (raw) => {
        const once = decodeRequestPath(raw);
        expect(latin1(removeDotSegments(Buffer.from(once)))).toBe(latin1(once));
      }),
    );
  });

  it('never escapes a non-empty scriptName', () => {
    const prefix = fc.constantFrom('/app', '/app/a', '/a');
    fc.assert(
      fc.property(rawPath, prefix, (raw, scriptName) => {
        const decoded = decodeRequestPath(raw);
        let info: Buffer;
        try {
          info = splitScriptName(decoded, scriptName);
        } catch (err) {
          expect((err as { code: string }).code).toBe('SCGI_ERR_BAD_PATH');
          return;
        }
        const path = latin1(decoded);
        expect(path === scriptName || path.startsWith(`${scriptName}/`)).toBe(true);
        expect(scriptName + latin1(info)).toBe(path);
      }),
      { numRuns: 2000 },
    );
  });
});

/** Percent-decoding to bytes, written independently of the code under test. */
function decodeURIComponentBytes(raw: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const hex = raw.slice(i + 1, i + 3);
    if (raw[i] === '%' && /^[0-9a-fA-F]{2}$/.test(hex)) {
      out.push(Number.parseInt(hex, 16));
      i += 2;
    } else {
      out.push(raw.charCodeAt(i));
    }
  }
  return out;
}
