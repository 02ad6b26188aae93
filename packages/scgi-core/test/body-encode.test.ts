import { describe, expect, it } from 'vitest';
import { encodeParsedBody } from '../src/body-encode.js';

describe('encodeParsedBody', () => {
  it('passes bytes and strings through', () => {
    expect(encodeParsedBody(Buffer.from([0, 255]), 'application/octet-stream')).toEqual(
      Buffer.from([0, 255]),
    );
    expect(encodeParsedBody(new Uint8Array([1, 2]), undefined)).toEqual(Buffer.from([1, 2]));
    expect(encodeParsedBody('héllo', 'text/plain')).toEqual(Buffer.from('héllo', 'utf8'));
  });

  it('re-encodes JSON and urlencoded bodies', () => {
    expect(encodeParsedBody({ a: [1, 'é'] }, 'application/json; charset=utf-8').toString()).toBe(
      '{"a":[1,"é"]}',
    );
    expect(encodeParsedBody({ a: 1 }, 'application/vnd.api+json').toString()).toBe('{"a":1}');
    expect(encodeParsedBody(null, 'application/json').toString()).toBe('null');
    expect(
      encodeParsedBody({ a: 'x y', b: ['1', '2'] }, 'application/x-www-form-urlencoded').toString(),
    ).toBe('a=x%20y&b=1&b=2');
  });

  it('refuses what it cannot re-encode with SCGI_ERR_BODY_CONSUMED', () => {
    expect(() => encodeParsedBody({ file: 1 }, 'multipart/form-data; boundary=x')).toThrow(
      expect.objectContaining({ code: 'SCGI_ERR_BODY_CONSUMED', statusCode: 500 }),
    );
    expect(() => encodeParsedBody({}, undefined)).toThrow(
      expect.objectContaining({ code: 'SCGI_ERR_BODY_CONSUMED' }),
    );
  });
});
