/**
 * The answers of the suite's app, in one place: the uWSGI app (WSGI_APP in backends.mjs) is
 * generated from them and the framework-alone fronts (bench/fronts/*-alone.mjs) send the same
 * bytes. No imports and no side effects, so front processes can load it.
 */

/** Per path: the exact text, or a fill character repeated `size` times. */
export const BODIES = Object.freeze({
  '/tiny': { text: 'hello tiny' },
  '/64k': { fill: 'x', size: 64 * 1024 },
  '/16m': { fill: 'y', size: 16 * 1024 * 1024 },
});

/** The Content-Type of every 200 answer. */
export const CONTENT_TYPE = 'application/octet-stream';

const sizeOf = (body) => (body.text === undefined ? body.size : Buffer.byteLength(body.text));

export const SIZES = Object.freeze({
  tiny: sizeOf(BODIES['/tiny']),
  '64k': sizeOf(BODIES['/64k']),
  '16m': sizeOf(BODIES['/16m']),
});
export const UPLOAD_SIZE = 16 * 1024 * 1024;

/** The body of `path` as a Buffer (built on each call: callers keep it). */
export function bodyBuffer(path) {
  const body = BODIES[path];
  return body.text === undefined ? Buffer.alloc(body.size, body.fill) : Buffer.from(body.text);
}

/** The body of `path` as a Python bytes expression, for the WSGI app. */
export function pythonBytes(path) {
  const body = BODIES[path];
  return body.text === undefined ? `b"${body.fill}" * ${body.size}` : `b"${body.text}"`;
}

/** The body of `path` as a PHP expression, for the PHP-FPM script (bench/lib/fastcgi.mjs). */
export function phpString(path) {
  const body = BODIES[path];
  return body.text === undefined
    ? `str_repeat('${body.fill}', ${body.size})`
    : `'${body.text.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
}
