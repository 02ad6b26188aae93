/**
 * Numbers of the FastCGI Specification 1.0 (Open Market, fastcgi-archives): record layout,
 * record types, roles, flags and protocol statuses. Names follow the spec without `FCGI_`.
 */

/** `FCGI_VERSION_1`: the only version; any other value in a header is a protocol error. */
export const FCGI_VERSION = 1;
/** `FCGI_HEADER_LEN`: every record starts with an 8-byte header (spec §3.3). */
export const HEADER_LENGTH = 8;
/** A record's contentLength is a u16, so at most 65,535 content bytes per record. */
export const MAX_CONTENT_LENGTH = 0xffff;
/** `FCGI_NULL_REQUEST_ID`: management records (GET_VALUES...) use request id 0 (spec §3.3). */
export const NULL_REQUEST_ID = 0;
/** A request id is a u16; 0 is the management id. */
export const MAX_REQUEST_ID = 0xffff;
/** A 4-byte name-value length holds 31 bits (spec §3.4: the high bit marks the 4-byte form). */
export const MAX_PAIR_LENGTH = 0x7fffffff;

/** Record types (spec §8). */
export const RecordType = Object.freeze({
  BEGIN_REQUEST: 1,
  ABORT_REQUEST: 2,
  END_REQUEST: 3,
  PARAMS: 4,
  STDIN: 5,
  STDOUT: 6,
  STDERR: 7,
  DATA: 8,
  GET_VALUES: 9,
  GET_VALUES_RESULT: 10,
  UNKNOWN_TYPE: 11,
} as const);
export type RecordType = (typeof RecordType)[keyof typeof RecordType];
/** `FCGI_MAXTYPE`: types above it are unknown to this version of the protocol. */
export const MAX_KNOWN_TYPE = RecordType.UNKNOWN_TYPE;

/** Roles of BEGIN_REQUEST (spec §6). */
export const Role = Object.freeze({ RESPONDER: 1, AUTHORIZER: 2, FILTER: 3 } as const);
export type Role = (typeof Role)[keyof typeof Role];

/** `FCGI_KEEP_CONN`: the only BEGIN_REQUEST flag; without it the application closes after END_REQUEST. */
export const KEEP_CONN = 1;

/** protocolStatus of END_REQUEST (spec §5.5). */
export const ProtocolStatus = Object.freeze({
  REQUEST_COMPLETE: 0,
  CANT_MPX_CONN: 1,
  OVERLOADED: 2,
  UNKNOWN_ROLE: 3,
} as const);
export type ProtocolStatus = (typeof ProtocolStatus)[keyof typeof ProtocolStatus];

/** Variables of GET_VALUES / GET_VALUES_RESULT (spec §4.1). */
export const FCGI_MAX_CONNS = 'FCGI_MAX_CONNS';
export const FCGI_MAX_REQS = 'FCGI_MAX_REQS';
export const FCGI_MPXS_CONNS = 'FCGI_MPXS_CONNS';

/** The body of BEGIN_REQUEST and of END_REQUEST is 8 bytes (spec §5.1, §5.5). */
export const BODY_LENGTH = 8;

/** Name of a record type for messages: `STDOUT`, or `type 42`. */
export function recordTypeName(type: number): string {
  for (const [name, value] of Object.entries(RecordType)) if (value === type) return name;
  return `type ${type}`;
}
