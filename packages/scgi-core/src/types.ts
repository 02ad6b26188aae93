/** Shared public types of scgi-core. */

/** A CGI/SCGI variable value: a string (encoded as latin1 if all code points < 256, else UTF-8) or raw bytes. */
export type EnvValue = string | Buffer;

/** One CGI variable, in the order it is sent. */
export type EnvPair = readonly [name: string, value: EnvValue];

/** A CGI environment: an ordered list of pairs, or a plain object (insertion order kept). */
export type EnvInput = Iterable<EnvPair> | Readonly<Record<string, EnvValue>>;

/** Outgoing response headers as Node's `res.writeHead()` takes them; names are lower case. */
export type ResponseHeaders = Record<string, string | string[]>;

/** A parsed CGI response head. */
export interface CgiResponseHead {
  /** Final status code, 200..599 (from `Status:`, an NPH status line, 302 for a bare `Location`, or 200). */
  statusCode: number;
  /** Reason phrase as sent by the backend; "" when it sent none. */
  statusMessage: string;
  /** End-to-end headers, lower-case names; `set-cookie` is always an array, other repeats are joined with ", ". */
  headers: ResponseHeaders;
  /** Lower-case names of hop-by-hop headers the backend sent and that were left out of `headers`. */
  hopByHop: string[];
  /** True when the head was an NPH `HTTP/1.x NNN` status line rather than CGI `Status:`. */
  nph: boolean;
}
