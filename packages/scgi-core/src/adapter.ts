/**
 * `scgi-core/adapter`: what a framework adapter needs beyond the public API (index.ts). fastify-scgi
 * and express-scgi are built on it; an adapter for another framework would be too. It is not
 * needed to use the engine directly (`ScgiProxy` from `scgi-core`).
 */

export {
  type ExchangeLogLevel,
  logExchangeWhenOver,
  logFailure,
  resolveExchangeLog,
} from './engine/exchange-log.js';
export { publicHealth, writeHealth } from './engine/health-report.js';
export { type AdapterOptionKind, splitAdapterOptions } from './engine/options.js';
export {
  type NamedUpstream,
  type NamedUpstreams,
  ScgiProxySet,
} from './engine/proxy-set.js';
export { recycleBodyBuffer } from './engine/response.js';
export { errorResponseHeaders } from './errors.js';
export { refuseConnect, serverOf, tieToServer } from './http/connect-method.js';
export { checkMountPrefix, resolveMountMethods, routableUrl } from './http/mount.js';
export {
  BODY_PARSER_FIX,
  type ParsedBodyGuardOptions,
  parsedBodyBytes,
  parsedBodyGuard,
  type RawBodyRequest,
  requestBodyConsumed,
} from './http/parsed-body.js';
export {
  afterBodySent,
  applyResponseHead,
  type HeadTarget,
  nodeHeadTarget,
  onEarlyBodyFailure,
  plainEnd,
  removeResponseHead,
  setErrorHeaders,
  type WriteResponseOptions,
  writeErrorResponse,
  writeResponse,
} from './http/response-writer.js';
