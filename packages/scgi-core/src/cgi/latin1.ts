/**
 * Strings into request heads. Both wire protocols send a string as latin1 when every char code is
 * below 256 (so `buf.toString('latin1')` gives the same string back), else as UTF-8: SCGI
 * (scgi/head.ts) and FastCGI (fastcgi/records.ts) share these helpers.
 */
import type { EnvPair } from '../types.js';

/** True when every char code is below 256, i.e. latin1 encodes the string losslessly. */
export function isLatin1(s: string): boolean {
  // One native call settles the common all-ASCII case; only non-ASCII text is scanned in JS.
  if (Buffer.byteLength(s, 'utf8') === s.length) return true;
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return false;
  return true;
}

/**
 * Copies `s` into `out` at `off` as latin1 and returns the offset after it, or -1 when a char is
 * above 0xff (the string needs UTF-8). Short strings go char by char (no native call: a call per
 * string was the largest cost of encoding a head); long ones are checked, then written by one
 * native call.
 */
export function putLatin1(out: Buffer, off: number, s: string): number {
  const len = s.length;
  if (len > 64) {
    if (!isLatin1(s)) return -1;
    return off + out.write(s, off, len, 'latin1');
  }
  for (let k = 0; k < len; k++) {
    const c = s.charCodeAt(k);
    if (c > 0xff) return -1;
    out[off + k] = c;
  }
  return off + len;
}

/**
 * Copies the pairs of `list` into `out` at `off` as SCGI strings (`name NUL value NUL`, latin1
 * strings, Buffer values as they are), skipping the pair at index `skip` (-1: none). Returns the
 * offset after them, or -1 when a string needs UTF-8. The two SCGI encoders share it
 * (scgi/head.ts, scgi/built-head.ts).
 */
export function putPairs(out: Buffer, off: number, list: readonly EnvPair[], skip: number): number {
  for (let i = 0; i < list.length; i++) {
    if (i === skip) continue;
    const pair = list[i]!;
    off = putLatin1(out, off, pair[0]);
    if (off === -1) return -1;
    out[off++] = 0;
    const value = pair[1] as string | Uint8Array;
    if (typeof value === 'string') {
      off = putLatin1(out, off, value);
      if (off === -1) return -1;
    } else {
      out.set(value, off);
      off += value.length;
    }
    out[off++] = 0;
  }
  return off;
}
