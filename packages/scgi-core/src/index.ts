/**
 * scgi-core's public API, by room (see docs/architecture.md). What only framework adapters need
 * is in `scgi-core/adapter` (adapter.ts); the rest of src/ is internal.
 */

// The CGI layer: environment, request paths, response parsing, hop-by-hop rules.
export * from './cgi/env.js';
export * from './cgi/front-controller.js';
export * from './cgi/hop-by-hop.js';
export * from './cgi/request-path.js';
export * from './cgi/response-parser.js';
export { CgiServerResponse } from './cgi/server-response.js';
export {
  channels as diagnosticsChannels,
  type RequestTraceContext,
  requestTracing,
} from './engine/diagnostics.js';
export type { ExchangeBody, ScgiResponse, ScgiTimings } from './engine/exchange.js';
export type { ProxyHealth } from './engine/health-report.js';
// The engine: a proxy to a backend or a pool, its options and responses.
export {
  type BalanceOption,
  type OptionDescriptor,
  PROXY_OPTION_NAMES,
  PROXY_OPTIONS,
  type ResolvedProxyOptions,
  resolveProxyOptions,
  type ScgiProxyOptions,
  type ScgiProxySettings,
  type UpstreamChoice,
  type UpstreamEntry,
  type UpstreamOption,
} from './engine/options.js';
export type {
  ResponseDecoder,
  ResponseSink,
  WireProtocol,
} from './engine/protocol.js';
export {
  type ProxiedRequest,
  type ProxiedResponse,
  ScgiProxy,
  type ScgiRequestOptions,
} from './engine/proxy.js';
// Errors: one class per failure, stable SCGI_ERR_* codes.
export * from './errors.js';
// FastCGI: records, request encoder, response decoder and a Node FastCGI server.
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
export { fastcgiProtocol } from './fastcgi/protocol.js';
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
// The HTTP side: bodies that a parser read, spooling bodies of unknown length.
export { keepRawBody, type RawBodyRequest } from './http/parsed-body.js';
export {
  type WriteResponseOptions,
  writeResponse,
} from './http/response-writer.js';
export type { SendfileOptions } from './http/sendfile.js';
export { liveSpoolFiles, SpooledBody, type SpoolOptions, spoolBody } from './http/spool.js';
export * from './scgi/head.js';

// SCGI: netstrings, the header block, the protocol and a Node SCGI server.
export * from './scgi/netstring.js';
export { scgiProtocol } from './scgi/protocol.js';
export * from './scgi/server.js';
export type * from './types.js';
// The upstream side: addresses, balancing, health checks, connectors, spawned workers.
export * from './upstream/address.js';
export * from './upstream/balance.js';
export {
  type ConnectCallback,
  type ConnectOptions,
  type Connector,
  defaultConnector,
} from './upstream/connect.js';
export * from './upstream/health.js';
export type { KeepAliveOptions } from './upstream/keep-alive.js';
export type { BackendState, BackendStats, PoolStats } from './upstream/pool.js';
export type { ScgiLogger, SpawnOptions } from './upstream/spawn.js';
