/**
 * The request cases of the suite (bench/run.mjs) and the check each front must pass before any
 * timing: a faster wrong answer is not worth measuring.
 */
import { SIZES, UPLOAD_SIZE } from './backends.mjs';

/** Per case: the request, and how many keep-alive connections load it. */
export const CASES = Object.freeze({
  tiny: {
    path: '/tiny',
    method: 'GET',
    bodySize: 0,
    connections: 32,
    metric: 'reqPerSec',
    expect: String(SIZES.tiny),
  },
  '64k': {
    path: '/64k',
    method: 'GET',
    bodySize: 0,
    connections: 32,
    metric: 'reqPerSec',
    expect: String(SIZES['64k']),
  },
  // 16 MiB transfers: 8 connections already keep the 4 SCGI workers busy.
  '16m': {
    path: '/16m',
    method: 'GET',
    bodySize: 0,
    connections: 8,
    metric: 'mbPerSec',
    expect: String(SIZES['16m']),
  },
  upload: {
    path: '/upload',
    method: 'POST',
    bodySize: UPLOAD_SIZE,
    connections: 8,
    metric: 'mbPerSec',
    expect: `body ${UPLOAD_SIZE}`,
  },
});
export const CASE_NAMES = Object.keys(CASES);

/** One request per case through a front: right status and right length, or the run stops. */
export async function checkFront(front, caseNames) {
  for (const caseName of caseNames) {
    const c = CASES[caseName];
    const res = await fetch(`${front.url}${c.path}`, {
      method: c.method,
      body: c.bodySize > 0 ? Buffer.alloc(c.bodySize, 0x61) : undefined,
      headers: c.bodySize > 0 ? { 'content-type': 'application/octet-stream' } : undefined,
      signal: AbortSignal.timeout(20_000),
    });
    const body = Buffer.from(await res.arrayBuffer());
    const got = c.bodySize > 0 ? `body ${body.toString()}` : String(body.length);
    if (res.status !== 200 || got !== c.expect) {
      throw new Error(
        `${front.name} ${caseName}: expected 200 and ${c.expect}, got ${res.status} and ${got}`,
      );
    }
  }
}
