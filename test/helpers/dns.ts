/**
 * A DNS server for tests on 127.0.0.1 (UDP, port 0) answering A queries from a table the test
 * changes, and SCGI backends on several loopback addresses (127.0.0.1, .2, .3: all loopback on
 * Linux) sharing one port, so one name with several A records maps to several real backends.
 * Messages are encoded with dns-packet.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import type { AddressInfo, Server, Socket } from 'node:net';
import dnsPacket from 'dns-packet';
import { createScgiServer, type ScgiServerRequest, type ScgiServerResponse } from 'scgi-core';

export interface TestDns {
  /** `127.0.0.1:port`, for `resolve.servers`. */
  readonly server: string;
  /** Name -> A records (edited by the test). A name missing here gets NXDOMAIN. */
  readonly records: Map<string, string[]>;
  /** TTL of every answer, in seconds. */
  ttl: number;
  /** When set, queries are dropped (a resolver that stopped answering). */
  silent: boolean;
  /** A queries answered so far, by name. */
  readonly queries: Map<string, number>;
  close(): Promise<void>;
}

export async function startTestDns(): Promise<TestDns> {
  const socket: UdpSocket = createSocket('udp4');
  const dns: TestDns = {
    server: '',
    records: new Map(),
    ttl: 1,
    silent: false,
    queries: new Map(),
    close: () => new Promise<void>((r) => socket.close(() => r())),
  };
  socket.on('message', (msg, rinfo) => {
    if (dns.silent) return;
    let query: dnsPacket.Packet;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const q = query.questions?.[0];
    if (q === undefined) return;
    const name = q.name.toLowerCase();
    const known = dns.records.get(name);
    if (q.type === 'A') dns.queries.set(name, (dns.queries.get(name) ?? 0) + 1);
    const answers: dnsPacket.Answer[] =
      q.type === 'A' && known !== undefined
        ? known.map((data) => ({ type: 'A', name: q.name, class: 'IN', ttl: dns.ttl, data }))
        : [];
    const reply = dnsPacket.encode({
      type: 'response',
      id: query.id,
      // RD copied, RA set; rcode 3 (NXDOMAIN) for a name we do not know.
      flags:
        dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (known === undefined ? 3 : 0),
      questions: [q],
      answers,
    });
    socket.send(reply, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  (dns as { server: string }).server = `127.0.0.1:${(socket.address() as AddressInfo).port}`;
  return dns;
}

/** One SCGI backend per loopback host, all on the same port; each answers its own host. */
export interface LoopbackBackends {
  readonly port: number;
  /** Requests served, by host. */
  readonly hits: Map<string, number>;
  /** When set, requests wait for it before answering (to hold requests in flight). */
  gate: Promise<void> | null;
  /** Requests waiting at the gate now, by host. */
  readonly waiting: Map<string, number>;
  /** Connections open now, by host. */
  readonly open: Map<string, Set<Socket>>;
  /** Connections accepted so far (requests and health probes), by host. */
  readonly accepted: Map<string, number>;
  close(): Promise<void>;
}

export async function startLoopbackBackends(hosts: readonly string[]): Promise<LoopbackBackends> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await listenAll(hosts);
    } catch (err) {
      // The port picked on the first host was taken on another one: pick again.
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 5) throw err;
    }
  }
}

async function listenAll(hosts: readonly string[]): Promise<LoopbackBackends> {
  const servers: Server[] = [];
  const backends: LoopbackBackends = {
    port: 0,
    hits: new Map(),
    gate: null,
    waiting: new Map(),
    open: new Map(),
    accepted: new Map(),
    close: async () => {
      const closed = servers.map((s) => new Promise<void>((r) => s.close(() => r())));
      for (const set of backends.open.values()) for (const c of set) c.destroy();
      await Promise.all(closed);
    },
  };
  const handler = (host: string) => async (req: ScgiServerRequest, res: ScgiServerResponse) => {
    req.resume();
    const gate = backends.gate;
    if (gate !== null) {
      backends.waiting.set(host, (backends.waiting.get(host) ?? 0) + 1);
      await gate;
      backends.waiting.set(host, backends.waiting.get(host)! - 1);
    }
    backends.hits.set(host, (backends.hits.get(host) ?? 0) + 1);
    res.setHeader('Content-Type', 'text/plain');
    res.end(host);
  };
  try {
    for (const host of hosts) {
      const server = createScgiServer(handler(host));
      const open = new Set<Socket>();
      backends.open.set(host, open);
      server.on('connection', (c: Socket) => {
        open.add(c);
        backends.accepted.set(host, (backends.accepted.get(host) ?? 0) + 1);
        c.once('close', () => open.delete(c));
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(backends.port, host, () => {
          server.removeListener('error', reject);
          resolve();
        });
      });
      servers.push(server);
      if (backends.port === 0)
        (backends as { port: number }).port = (server.address() as AddressInfo).port;
    }
  } catch (err) {
    await backends.close();
    throw err;
  }
  return backends;
}
