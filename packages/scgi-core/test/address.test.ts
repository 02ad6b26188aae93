import { describe, expect, it } from 'vitest';
import { parseAddress } from '../src/upstream/address.js';

describe('parseAddress', () => {
  it.each([
    ['unix:/run/app.sock', { kind: 'unix', path: '/run/app.sock', label: 'unix:/run/app.sock' }],
    ['/run/app.sock', { kind: 'unix', path: '/run/app.sock', label: 'unix:/run/app.sock' }],
    ['unix:relative.sock', { kind: 'unix', path: 'relative.sock', label: 'unix:relative.sock' }],
    ['127.0.0.1:9000', { kind: 'tcp', host: '127.0.0.1', port: 9000, label: '127.0.0.1:9000' }],
    ['localhost:1', { kind: 'tcp', host: 'localhost', port: 1, label: 'localhost:1' }],
    ['[::1]:65535', { kind: 'tcp', host: '::1', port: 65535, label: '[::1]:65535' }],
  ])('parses %s', (input, expected) => {
    expect(parseAddress(input)).toEqual({ ...expected, scheme: 'scgi' });
  });

  it.each([
    ['fastcgi://127.0.0.1:9000', 'fastcgi', { kind: 'tcp', host: '127.0.0.1', port: 9000 }],
    [
      'fastcgi://unix:/run/php/php-fpm.sock',
      'fastcgi',
      { kind: 'unix', path: '/run/php/php-fpm.sock', label: 'unix:/run/php/php-fpm.sock' },
    ],
    ['FastCGI:///run/app.sock', 'fastcgi', { kind: 'unix', path: '/run/app.sock' }],
    ['scgi://[::1]:4000', 'scgi', { kind: 'tcp', host: '::1', port: 4000, label: '[::1]:4000' }],
    ['scgi://unix:/run/app.sock', 'scgi', { kind: 'unix', path: '/run/app.sock' }],
  ])('parses the scheme of %s', (input, scheme, expected) => {
    expect(parseAddress(input)).toMatchObject({ ...expected, scheme });
  });

  it.each([
    ['', 'non-empty'],
    ['unix:', 'empty socket path'],
    ['localhost', 'expected'],
    [':9000', 'expected'],
    ['host:0', 'out of range'],
    ['host:65536', 'out of range'],
    ['host:12ab', 'not a number'],
    ['::1:9000', 'brackets'],
    ['[::1]9000', 'expected [ipv6]:port'],
    ['[127.0.0.1]:80', 'not an IPv6'],
    ['unix:/a\0b', 'NUL'],
    ['http://127.0.0.1:80', 'unsupported scheme http://; the forms are unix:/path'],
    ['uwsgi://127.0.0.1:80', 'bare (SCGI) or after scgi:// or fastcgi://'],
    ['fastcgi://', 'nothing after fastcgi://'],
    ['fastcgi://localhost', 'fastcgi://localhost'],
  ])('rejects %j', (input, reason) => {
    let caught: unknown;
    try {
      parseAddress(input);
    } catch (err) {
      caught = err;
    }
    expect(caught).toMatchObject({ code: 'SCGI_ERR_INVALID_ADDRESS' });
    expect((caught as Error).message).toContain(reason);
  });
});
