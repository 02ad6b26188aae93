/**
 * `scgi-core/adapter`: what a framework adapter needs beyond the public API (index.ts). fastify-scgi
 * and express-scgi are built on it; an adapter for another framework would be too. It is not
 * needed to use the engine directly (`ScgiProxy` from `scgi-core`).
 */

export { publicHealth } from './engine/health-report.js';
export { splitAdapterOptions } from './engine/options.js';
export { recycleBodyBuffer } from './engine/response.js';
export { errorResponseHeaders } from './errors.js';
export { refuseConnect } from './http/connect-method.js';
export {
  BODY_PARSER_FIX,
  type ParsedBodyGuardOptions,
  parsedBodyBytes,
  parsedBodyGuard,
  type RawBodyRequest,
  requestBodyConsumed,
} from './http/parsed-body.js';
