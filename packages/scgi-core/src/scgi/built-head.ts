/**
 * The SCGI head of an environment the engine built itself (engine/proxy.ts): not exported from
 * the package, since it trusts its input where {@link encodeScgiHead} checks it.
 */
import { putLatin1, putPairs } from '../cgi/latin1.js';
import type { EnvPair } from '../types.js';
import { encodeScgiHead } from './head.js';

/**
 * {@link encodeScgiHead} for an environment made by `buildCgiEnv` (cgi/env.ts), which already
 * holds the rules: CONTENT_LENGTH first as a decimal without leading zeros, SCGI "1" second,
 * names unique, non-empty and without NUL, values without NUL. So nothing is checked again:
 * the pairs are measured and copied in order. Anything else, or a string above latin1, goes
 * through {@link encodeScgiHead}, which checks everything.
 */
export function encodeBuiltScgiHead(env: readonly EnvPair[]): Buffer {
  const n = env.length;
  if (n < 2 || env[0]![0] !== 'CONTENT_LENGTH' || env[1]![0] !== 'SCGI') return encodeScgiHead(env);
  let payload = 0;
  for (let i = 0; i < n; i++) {
    const pair = env[i]!;
    payload += pair[0].length + pair[1].length + 2;
  }
  const prefix = `${payload}:`;
  const out = Buffer.allocUnsafe(prefix.length + payload + 1);
  const off = putPairs(out, putLatin1(out, 0, prefix), env, -1);
  if (off === -1) return encodeScgiHead(env);
  out[off] = 0x2c;
  return out;
}
