/**
 * First-draft implementations, as a library without profiling would write them: the baselines
 * that `core.mjs` compares scgi-core against. They do no validation at all (scgi-core checks NUL
 * bytes, duplicates, CONTENT_LENGTH, header syntax...), so the comparison flatters them.
 */

const NUL = Buffer.from([0]);

/** One Buffer per name and value, concatenated, then the netstring prefix in a second concat. */
export function naiveEncodeScgiHead(pairs) {
  const pieces = [];
  for (const [name, value] of pairs) {
    pieces.push(
      Buffer.from(name),
      NUL,
      typeof value === 'string' ? Buffer.from(value) : value,
      NUL,
    );
  }
  const payload = Buffer.concat(pieces);
  return Buffer.concat([Buffer.from(`${payload.length}:`), payload, Buffer.from(',')]);
}

/** Buffers the chunks, decodes everything, splits on strings; same result shape as scgi-core. */
export class NaiveCgiParser {
  buffered = null;
  rest = null;

  push(chunk) {
    this.buffered = this.buffered === null ? chunk : Buffer.concat([this.buffered, chunk]);
    const text = this.buffered.toString();
    const end = text.indexOf('\r\n\r\n');
    if (end === -1) return null;
    let statusCode = 200;
    let statusMessage = '';
    const headers = {};
    for (const line of text.slice(0, end).split('\r\n')) {
      const [rawName, ...parts] = line.split(': ');
      const name = rawName.toLowerCase();
      const value = parts.join(': ');
      if (name === 'status') {
        statusCode = Number.parseInt(value, 10);
        statusMessage = value.slice(4);
      } else if (name === 'set-cookie') {
        headers[name] ??= [];
        headers[name].push(value);
      } else {
        headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
      }
    }
    this.rest = this.buffered.subarray(end + 4);
    return { statusCode, statusMessage, headers };
  }
}
