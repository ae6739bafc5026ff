/**
 * Asking DNS: a client for one server over TCP ({@linkcode DnsClient}, DNS
 * over TCP as RFC 7766 makes every server serve it: Consul, CoreDNS,
 * dnsmasq, cloud resolvers), the system resolver for A/AAAA without one
 * ({@linkcode systemLookup}), and the first name server of
 * `/etc/resolv.conf` ({@linkcode systemNameServer}) for SRV without one.
 *
 * The wire format is dns-packet's (a well-kept codec, used by
 * multicast-dns and bonjour); the bytes go through {@linkcode Net} like
 * every other socket, so no datagram socket is needed in the runtime seam.
 * Over TCP an answer is never truncated, however many SRV records it holds.
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import type * as packet from "dns-packet";
import { formatAddress } from "../address/address.ts";
import { reasonOf } from "../errors.ts";
import type { Conn, Endpoint, Net } from "../runtime/types.ts";

/** How long one query may take before it counts as failed. */
export const QUERY_TIMEOUT_MS = 3000;

/** The TTL given to the system resolver's answers, which carry none. */
export const SYSTEM_TTL_MS = 30_000;

/** An address a name resolved to, and how long the answer may be kept. */
export interface Resolved {
  /** IPv4 or IPv6 address, IPv6 without brackets. */
  readonly address: string;
  /** The answer's TTL in ms (the system resolver's: {@linkcode SYSTEM_TTL_MS}). */
  readonly ttlMs: number;
}

/** One SRV record, its target's addresses found. */
export interface ResolvedSrv {
  readonly target: string;
  readonly port: number;
  readonly priority: number;
  readonly weight: number;
  /** The target's addresses (from the answer's additional section, or asked for). */
  readonly addresses: readonly Resolved[];
  readonly ttlMs: number;
}

/** A DNS answer's records, as dns-packet decodes them. */
type Answer = packet.Answer;

/** The answer to one query: its records, or the server's error code. */
interface Reply {
  readonly rcode: string;
  readonly answers: readonly Answer[];
  readonly additionals: readonly Answer[];
}

/** A name that has no record of the type asked (NXDOMAIN, or no data). */
export class NotFound extends Error {
  override name = "NotFound";
}

/**
 * Asks one DNS server, over TCP, one connection per query (names are
 * resolved once per TTL, not per client connection).
 */
export class DnsClient {
  readonly #net: Net;
  /** The server asked. */
  readonly server: Endpoint;
  readonly #timeoutMs: number;

  /**
   * @param net the runtime's sockets
   * @param server the DNS server's address and port
   * @param timeoutMs how long a query may take
   */
  constructor(net: Net, server: Endpoint, timeoutMs = QUERY_TIMEOUT_MS) {
    this.#net = net;
    this.server = server;
    this.#timeoutMs = timeoutMs;
  }

  /**
   * The A and AAAA addresses of `name`.
   *
   * @throws {NotFound} when the name has neither
   * @throws {Error} when the server cannot be asked or answers an error
   */
  async addresses(name: string): Promise<Resolved[]> {
    const replies = await Promise.allSettled([this.#ask(name, "A"), this.#ask(name, "AAAA")]);
    const found: Resolved[] = [];
    for (const reply of replies) {
      if (reply.status === "fulfilled") found.push(...addressesIn(reply.value.answers, name));
    }
    if (found.length > 0) return found;
    const failed = replies.find((reply) => reply.status === "rejected");
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    throw new NotFound(`${name} has no A or AAAA record`);
  }

  /**
   * The SRV records of `name`, each with its target's addresses: from the
   * answer's additional section when the server put them there (Consul
   * does), else asked for.
   *
   * @throws {NotFound} when the name has no SRV record
   * @throws {Error} when the server cannot be asked or answers an error
   */
  async srv(name: string): Promise<ResolvedSrv[]> {
    const reply = await this.#ask(name, "SRV");
    // A target of "." says the service is not offered there (RFC 2782).
    const records = reply.answers.filter((answer): answer is packet.SrvAnswer =>
      answer.type === "SRV" && !/^\.?$/.test((answer as packet.SrvAnswer).data.target)
    );
    if (records.length === 0) throw new NotFound(`${name} has no SRV record`);
    return await Promise.all(records.map(async (record) => {
      const data = record.data;
      const target = data.target.replace(/\.$/, "");
      let addresses = addressesIn(reply.additionals, target);
      if (addresses.length === 0) addresses = await this.addresses(target);
      return {
        target,
        port: data.port,
        priority: data.priority ?? 0,
        weight: data.weight ?? 0,
        addresses,
        ttlMs: ttlOf(record),
      };
    }));
  }

  /** Sends one query and reads its answer. */
  async #ask(name: string, type: "A" | "AAAA" | "SRV"): Promise<Reply> {
    const id = Math.floor(Math.random() * 65536);
    // dns-packet and Buffer are loaded at the first query: a config that
    // discovers nothing never holds them.
    const [dns, { Buffer }] = await Promise.all([import("dns-packet"), import("node:buffer")]);
    const query = dns.streamEncode({
      type: "query",
      id,
      flags: dns.RECURSION_DESIRED,
      questions: [{ type, name, class: "IN" }],
    });
    const bytes = await this.#exchange(query, `${type} ${name}`);
    const reply = dns.decode(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    if (reply.id !== id) throw new Error(`DNS server ${this.#where()} answered another query`);
    // dns-packet decodes the response code as text; its types leave it out.
    const rcode = (reply as { rcode?: string }).rcode ?? "NOERROR";
    if (rcode === "NXDOMAIN") return { rcode, answers: [], additionals: [] };
    if (rcode !== "NOERROR") {
      throw new Error(`DNS server ${this.#where()} answered ${rcode} for ${type} ${name}`);
    }
    return { rcode, answers: reply.answers ?? [], additionals: reply.additionals ?? [] };
  }

  #where(): string {
    return formatAddress(this.server);
  }

  /** Writes a length-prefixed query and reads one length-prefixed answer. */
  #exchange(query: Uint8Array, what: string): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      let conn: Conn | undefined;
      let done = false;
      let received = new Uint8Array(0);
      const finish = (error: Error | undefined, answer?: Uint8Array) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        conn?.reset();
        if (error === undefined) resolve(answer!);
        else reject(error);
      };
      const timer = setTimeout(
        () =>
          finish(
            new Error(
              `DNS server ${this.#where()} did not answer ${what} within ${this.#timeoutMs}ms`,
            ),
          ),
        this.#timeoutMs,
      );
      this.#net.connect(this.server).then(
        (opened) => {
          conn = opened;
          if (done) return opened.reset();
          opened.setHandlers({
            data(chunk) {
              const joined = new Uint8Array(received.length + chunk.length);
              joined.set(received);
              joined.set(chunk, received.length);
              received = joined;
              if (received.length < 2) return;
              const length = (received[0]! << 8) | received[1]!;
              if (received.length >= 2 + length) finish(undefined, received.slice(2, 2 + length));
            },
            // The server's address as asked: a socket already gone reads as "unknown".
            end: () => finish(new Error(`DNS server ${this.#where()} closed the connection`)),
            drain() {},
            close: (error) =>
              finish(
                new Error(`DNS server closed the connection${error ? `: ${reasonOf(error)}` : ""}`),
              ),
          });
          opened.write(query);
        },
        (error) =>
          finish(new Error(`cannot reach DNS server ${this.#where()}: ${reasonOf(error)}`)),
      );
    });
  }
}

/** The TTL of a record in ms. */
function ttlOf(record: Answer): number {
  return ((record as { ttl?: number }).ttl ?? 0) * 1000;
}

/**
 * The A and AAAA records among `answers`. A CNAME chain is followed by the
 * server, which puts the final records in the same answer: every address
 * record counts, whatever name it is under.
 */
function addressesIn(answers: readonly Answer[], name: string): Resolved[] {
  const wanted = name.toLowerCase();
  const all = answers.filter((answer) => answer.type === "A" || answer.type === "AAAA");
  // An additional section may hold other names' addresses: keep the target's.
  const own = all.filter((answer) => answer.name.replace(/\.$/, "").toLowerCase() === wanted);
  const aliased = answers.some((answer) => answer.type === "CNAME");
  const chosen = own.length > 0 || !aliased ? own : all;
  return chosen.map((answer) => ({
    address: (answer as packet.StringAnswer).data,
    ttlMs: ttlOf(answer),
  }));
}

/**
 * Resolves `name` with the system resolver (getaddrinfo: /etc/hosts,
 * search domains, the system's DNS), as a client of the host would.
 *
 * @throws {NotFound} when the name does not resolve
 */
export async function systemLookup(name: string): Promise<Resolved[]> {
  let found: { address: string }[];
  // Loaded at the first lookup, as dns-packet is at the first query.
  const { lookup } = await import("node:dns/promises");
  try {
    found = await lookup(name, { all: true });
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "ENOTFOUND" || code === "ENODATA" || code === "EAI_NONAME") {
      throw new NotFound(`${name} does not resolve`);
    }
    throw error;
  }
  if (found.length === 0) throw new NotFound(`${name} does not resolve`);
  const seen = new Set<string>();
  return found.filter(({ address }) => !seen.has(address) && seen.add(address))
    .map(({ address }) => ({ address, ttlMs: SYSTEM_TTL_MS }));
}

/**
 * The first `nameserver` of resolv.conf, port 53: where SRV queries go
 * when no `resolver` is set.
 *
 * @param path the file to read
 * @throws {Error} when the file cannot be read or names no server
 */
export async function systemNameServer(path = "/etc/resolv.conf"): Promise<Endpoint> {
  const text = await readFile(path, "utf8");
  for (const line of text.split("\n")) {
    const match = /^\s*nameserver\s+(\S+)/.exec(line);
    if (match !== null) return { hostname: match[1]!.replace(/%.*$/, ""), port: 53 };
  }
  throw new Error(`${path} names no nameserver`);
}
