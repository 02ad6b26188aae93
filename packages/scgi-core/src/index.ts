export * from './address.js';
export * from './balance.js';
export * from './cgi-env.js';
export * from './cgi-response.js';
export { CgiServerResponse } from './cgi-server-response.js';
export {
  type ConnectCallback,
  type ConnectOptions,
  type Connector,
  defaultConnector,
} from './connect.js';
export { refuseConnect } from './connect-method.js';
export { channels as diagnosticsChannels } from './diagnostics.js';
export * from './errors.js';
export type { ExchangeBody, ScgiResponse, ScgiTimings } from './exchange.js';
export {
  ProtocolStatus as FastcgiProtocolStatus,
  RecordType as FastcgiRecordType,
  Role as FastcgiRole,
} from './fastcgi/constants.js';
export {
  FastcgiResponseDecoder,
  type FastcgiResponseHandlers,
} from './fastcgi/decoder.js';
export * from './fastcgi/encoder.js';
export {
  type BeginRequestBody,
  type DecodePairsOptions,
  decodeBeginRequestBody,
  decodeEndRequestBody,
  decodePairs,
  type EndRequestBody,
  encodeHeader,
  encodePairs,
  encodeRecord,
  paddingFor,
} from './fastcgi/records.js';
export * from './fastcgi/server.js';
export * from './health.js';
export * from './hop-by-hop.js';
export * from './netstring.js';
export * from './options.js';
export * from './parsed-body.js';
export {
  Backend,
  type BackendState,
  type BackendStats,
  type Outcome,
  type PoolStats,
  UpstreamPool,
} from './pool.js';
export * from './proxy.js';
export * from './request-path.js';
export * from './scgi-head.js';
export * from './server.js';
export {
  type ResolvedSpawnOptions,
  type ScgiLogger,
  type SpawnOptions,
  WorkerSupervisor,
} from './spawn.js';
export { liveSpoolFiles, SpooledBody, type SpoolOptions, spoolBody } from './spool.js';
export type * from './types.js';
export { recycleBodyBuffer } from './upstream-response.js';
