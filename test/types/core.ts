// Type tests for scgi-core (compiled by `npm run typecheck`, never run).
import {
  type CgiResponseHead,
  CgiResponseParser,
  createScgiServer,
  decodeScgiHead,
  type EnvPair,
  encodeNetstring,
  encodeScgiHead,
  ScgiError,
  ScgiProxy,
  type ScgiResponse,
} from 'scgi-core';
import { expectTypeOf } from 'vitest';

expectTypeOf(encodeNetstring('x')).toEqualTypeOf<Buffer>();
expectTypeOf(encodeScgiHead([['CONTENT_LENGTH', '0']])).toEqualTypeOf<Buffer>();
expectTypeOf(
  encodeScgiHead({ CONTENT_LENGTH: '0', PATH_INFO: Buffer.from([0xe9]) }),
).toEqualTypeOf<Buffer>();
// @ts-expect-error values are strings or Buffers
encodeScgiHead({ CONTENT_LENGTH: 0 });
const pair: EnvPair = ['PATH_INFO', Buffer.from('/x')];
void pair;

const decoded = decodeScgiHead(Buffer.from('24:CONTENT_LENGTH\x000\x00SCGI\x001\x00,'));
expectTypeOf(decoded.env).toEqualTypeOf<Record<string, string>>();
expectTypeOf(decoded.contentLength).toBeNumber();

const head = new CgiResponseParser({ maxHeadSize: 1024 }).push(
  Buffer.from('Status: 200 OK\r\n\r\n'),
);
expectTypeOf(head).toEqualTypeOf<CgiResponseHead | null>();

const proxy = new ScgiProxy({ upstream: 'unix:/run/app.sock', idleTimeout: 0 });
expectTypeOf(proxy.request).returns.toEqualTypeOf<Promise<ScgiResponse>>();
// @ts-expect-error unknown address type
new ScgiProxy({ upstream: 9000 });

createScgiServer((req, res) => {
  expectTypeOf(req.env).toEqualTypeOf<Readonly<Record<string, string>>>();
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end('ok');
});
const err = new ScgiError();
expectTypeOf(err.code).toBeString();

// FastCGI building blocks.
import {
  createFastcgiServer,
  encodeRequest,
  encodeStdin,
  type FastcgiHandler,
  FastcgiResponseDecoder,
  FastcgiRole,
} from 'scgi-core';

expectTypeOf(
  encodeRequest(1, { REQUEST_METHOD: 'GET' }, { keepConn: true }),
).toEqualTypeOf<Buffer>();
expectTypeOf(encodeStdin(1, Buffer.alloc(1))).toEqualTypeOf<Buffer[]>();
// @ts-expect-error values are strings or Buffers
encodeRequest(1, { CONTENT_LENGTH: 0 });
const fcgiHandler: FastcgiHandler = (req, res) => {
  expectTypeOf(req.env).toEqualTypeOf<Readonly<Record<string, string>>>();
  expectTypeOf(req.contentLength).toEqualTypeOf<number | null>();
  res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
};
createFastcgiServer(fcgiHandler, { maxParamsSize: 1024 });
// @ts-expect-error unknown option
createFastcgiServer(fcgiHandler, { maxParamSize: 1024 });
new FastcgiResponseDecoder({
  onStdout: (c) => expectTypeOf(c).toEqualTypeOf<Buffer>(),
  onEnd: (e) => expectTypeOf(e.protocolStatus).toBeNumber(),
}).push(Buffer.alloc(0));
expectTypeOf(FastcgiRole.RESPONDER).toEqualTypeOf<1>();
