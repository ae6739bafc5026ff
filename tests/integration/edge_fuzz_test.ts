/**
 * Fuzzing one running balancer's preamble with a seeded generator: hundreds
 * of connections, twenty at a time, send random bytes, PROXY headers cut
 * short, with a bit flipped, oversized, or whole and followed by a payload
 * in small pieces. The pure parser says what each should come to; the
 * balancer must agree: a whole header's payload reaches the backend exactly,
 * anything else reaches it not at all (or, for ClientHellos on an address
 * with a fallback frontend, reaches the fallback exactly) and is closed
 * within header_timeout, and nothing is left behind. A last run mixes the
 * first bytes of SSH, TLS, HTTP and PostgreSQL, whole, cut, mangled or
 * noise, on one address with a frontend for each and a fallback: the pure
 * detect + choose say which backend each connection reaches.
 *
 * @module
 */
import assert from "node:assert/strict";
import process from "node:process";
import { afterEach, describe, it } from "node:test";
import { Balancer } from "../../src/balancer/balancer.ts";
import { parseConfig } from "../../src/config/load.ts";
import { parseClientHello } from "../../src/protocol/client_hello.ts";
import { detect } from "../../src/protocol/detect.ts";
import { choose, wantedBy } from "../../src/protocol/matchers.ts";
import { matchesServerName } from "../../src/protocol/server_name.ts";
import { encodeProxyV1, encodeProxyV2, parseProxyHeader } from "../../src/protocol/proxy.ts";
import type { Endpoint } from "../../src/runtime/types.ts";
import {
  bytes,
  concat,
  configText,
  connect,
  eventually,
  exchange,
  freePort,
  net,
  recordingBackend,
  refusals,
  sleep,
  within,
} from "../_helpers/index.ts";
import { hello, PG_GSSENC_REQUEST, PG_SSL_REQUEST, pgStartup } from "../unit/protocol/_samples.ts";

// The suite's run; a long one is `EDGE_FUZZ_CONNECTIONS=100000 EDGE_FUZZ_CONCURRENCY=100
// EDGE_FUZZ_SEED=N bun test tests/integration/edge_fuzz_test.ts`.
const SEED = Number(process.env.EDGE_FUZZ_SEED ?? 20_260_101);
const CONNECTIONS = Number(process.env.EDGE_FUZZ_CONNECTIONS ?? 1500);
const CONCURRENCY = Number(process.env.EDGE_FUZZ_CONCURRENCY ?? 20);
const HEADER_TIMEOUT_MS = 300;

/** A seeded generator (mulberry32): the same seed gives the same fuzz run. */
function prng(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  /** An integer from `low` to `high`, both included. */
  const int = (low: number, high: number) => low + Math.floor(next() * (high - low + 1));
  return {
    int,
    chance: (p: number) => next() < p,
    pick: <T>(items: readonly T[]): T => items[int(0, items.length - 1)]!,
    bytes: (size: number) => Uint8Array.from({ length: size }, () => int(0, 255)),
  };
}

type Random = ReturnType<typeof prng>;

function endpoint(random: Random, ipv6: boolean): Endpoint {
  const hostname = ipv6
    ? Array.from({ length: 8 }, () => random.int(0, 0xffff).toString(16)).join(":")
    : Array.from({ length: 4 }, () => random.int(0, 255)).join(".");
  return { hostname, port: random.int(0, 65535) };
}

/** A valid header of either version: TCP4, TCP6, v1 UNKNOWN, v2 UNSPEC or LOCAL. */
function validHeader(random: Random): Uint8Array {
  const form = random.int(0, 3);
  const [source, destination] = form === 3
    ? [undefined, undefined]
    : [endpoint(random, form === 1), endpoint(random, form === 1)];
  if (random.chance(0.5)) return encodeProxyV1(source, destination);
  const header = encodeProxyV2(source, destination);
  if (form === 2) header[12] = 0x20; // LOCAL: the block is there and ignored
  return header;
}

/** What one connection sends, and how. */
interface Case {
  kind: string;
  /** The writes, in order. */
  writes: Uint8Array[];
  /** Half-close after the writes; otherwise wait for the balancer to close. */
  end: boolean;
}

/** Splits `data` into writes of 1 to `most` bytes. */
function split(random: Random, data: Uint8Array, most: number): Uint8Array[] {
  const writes: Uint8Array[] = [];
  for (let at = 0; at < data.length;) {
    const size = random.int(1, most);
    writes.push(data.subarray(at, at + size));
    at += size;
  }
  return writes;
}

/** The bytes after the header: a marker naming the connection, then some text. */
function payload(random: Random, id: number): Uint8Array {
  const filler = Array.from({ length: random.int(0, 200) }, () => random.pick([..."abcxyz019 "]));
  return bytes(`#id-${id}#${filler.join("")}`);
}

/** A kind of preamble to fuzz: how to make a valid one, and some malformed ones. */
interface Format {
  /** What a preamble is called in a case's kind. */
  name: string;
  /** A valid preamble, new each call. */
  valid(random: Random): Uint8Array;
  /** Malformed preambles by kind, each of which the parser refuses on sight. */
  malformed: Record<string, (random: Random) => Uint8Array>;
}

/** The fuzz case for connection `id`: a preamble, mangled one way or not, then a payload. */
function fuzzCase(random: Random, id: number, format: Format): Case {
  const name = format.name;
  const kind = random.pick([
    "random bytes",
    `truncated ${name}`,
    "flipped bit",
    `${name} then payload in pieces`,
    ...Object.keys(format.malformed),
  ]);
  const after = payload(random, id);
  const one = (...parts: Uint8Array[]) => ({ kind, writes: [concat(parts)], end: true });
  switch (kind) {
    case "random bytes":
      return one(random.bytes(random.int(1, 300)), after);
    case `truncated ${name}`: {
      // Nothing after it: half-closed at once, or held open until header_timeout.
      const valid = format.valid(random);
      const cut = valid.subarray(0, random.int(1, valid.length - 1));
      return { kind, writes: split(random, cut, 16), end: random.chance(0.5) };
    }
    case "flipped bit": {
      const valid = format.valid(random);
      const bit = random.int(0, valid.length * 8 - 1);
      valid[bit >> 3]! ^= 1 << (bit & 7);
      return one(valid, after);
    }
    case `${name} then payload in pieces`:
      return { kind, writes: split(random, concat([format.valid(random), after]), 24), end: true };
    default:
      return one(format.malformed[kind]!(random), after);
  }
}

const PROXY_HEADER: Format = {
  name: "header",
  valid: validHeader,
  malformed: {
    "oversized v1 line": (random) => bytes(`PROXY UNKNOWN ${"x".repeat(random.int(94, 300))}\r\n`),
    "huge v2 length": (random) => {
      const header = encodeProxyV2(endpoint(random, false), endpoint(random, false));
      new DataView(header.buffer).setUint16(14, random.int(1025, 65535));
      return header;
    },
  },
};

function u16(n: number): number[] {
  return [n >> 8, n & 0xff];
}

/**
 * A TLS 1.2 ClientHello record, the least the parser takes: one cipher
 * suite, no compression, and a server_name extension when `name` is given.
 *
 * @param recordLength the record header's length, when it should lie
 */
function clientHello(name: string | undefined, random: Random, recordLength?: number): Uint8Array {
  const host = [...bytes(name ?? "")];
  const sni = name === undefined
    ? []
    : [0, 0, ...u16(host.length + 5), ...u16(host.length + 3), 0, ...u16(host.length), ...host];
  const body = [3, 3, ...random.bytes(32), 0, ...u16(2), 0x13, 0x01, 1, 0];
  body.push(...u16(sni.length), ...sni);
  const handshake = [1, 0, ...u16(body.length), ...body];
  return Uint8Array.from([22, 3, 1, ...u16(recordLength ?? handshake.length), ...handshake]);
}

const SERVER_NAMES = ["a.example", "A.Example", "b.example", "x.a.example", undefined];

const CLIENT_HELLO: Format = {
  name: "ClientHello",
  valid: (random) => clientHello(random.pick(SERVER_NAMES), random),
  malformed: {
    "record over 2^14 bytes": (random) =>
      clientHello("a.example", random, random.int(16_385, 65_535)),
    "SSLv2-style hello": (random) => Uint8Array.of(0x80, random.int(1, 255), 1, 3, 3),
  },
};

/** The whole first bytes of each protocol the shared address tells apart. */
const FIRST_BYTES: ((random: Random) => Uint8Array)[] = [
  (random) => bytes(`${random.pick(["SSH-2.0-OpenSSH_9.6", "SSH-1.99-Cisco-1.25"])}\r\n`),
  (random) =>
    hello({
      sni: random.pick(["a.example", "A.Example", "x.w.example", "b.example", undefined]),
      alpn: random.pick([undefined, ["h2"], ["http/1.1", "h2"]]),
    }),
  (random) =>
    bytes(
      `${random.pick(["GET", "POST", "OPTIONS"])} / HTTP/1.1\r\nHost: ${
        random.pick(["h.example", "H.Example:8080", "x.h.example", "other.example"])
      }\r\nAccept: */*\r\n\r\n`,
    ),
  (random) => random.pick([PG_SSL_REQUEST, PG_GSSENC_REQUEST, pgStartup()]).slice(),
];

const MANY_PROTOCOLS: Format = {
  name: "first bytes",
  valid: (random) => random.pick(FIRST_BYTES)(random),
  malformed: {
    "HTTP head without Host": () => bytes("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),
    "oversized HTTP head": (random) =>
      bytes(
        `GET / HTTP/1.1\r\nX-A: ${"a".repeat(random.int(8_200, 9_000))}\r\nHost: h.example\r\n\r\n`,
      ),
    "SSH-1.5 banner": () => bytes("SSH-1.5-old\r\n"),
    "postgres with a wrong version": () => Uint8Array.of(0, 0, 0, 8, 0, 2, 0, 0),
  },
};

/** What a connection came to, from the client's side. */
interface Outcome {
  echoed: Uint8Array;
  /** Milliseconds from the connect to the balancer's FIN. */
  sinceConnectMs: number;
  /** Milliseconds from the last write to the balancer's FIN. */
  sinceWriteMs: number;
}

async function run(port: number, fuzz: Case, id: number): Promise<Outcome> {
  const client = await connect(port);
  const connected = performance.now();
  for (const [i, write] of fuzz.writes.entries()) {
    client.conn.write(write);
    // Let a piece leave on its own before the next (a timer, so the runtime flushes).
    if (i < fuzz.writes.length - 1) await sleep(1);
  }
  const wrote = performance.now();
  if (fuzz.end) client.conn.end();
  // The balancer's FIN; both runtimes' close() sends it and then releases the socket.
  await within(client.ended, 3_000, `the balancer to end connection ${id} (${fuzz.kind})`);
  const ended = performance.now();
  client.conn.close();
  await within(client.closed, 3_000, `connection ${id} (${fuzz.kind}) to close`);
  return {
    echoed: client.received(),
    sinceConnectMs: ended - connected,
    sinceWriteMs: ended - wrote,
  };
}

/** Runs `task` for every index, `concurrency` at a time. */
async function pool<T>(count: number, concurrency: number, task: (i: number) => Promise<T>) {
  const results: T[] = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      results[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return results;
}

/** Bytes as a string of code units 0 to 255, for exact comparisons with readable diffs. */
function latin1(data: Uint8Array): string {
  return Array.from(data, (byte) => String.fromCharCode(byte)).join("");
}

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** What the balancer should make of the bytes a connection sent, by the pure parser. */
type Verdict =
  | { status: "incomplete" | "invalid" }
  /** A whole preamble: `backend` (an index) gets `forwarded`, and echoes it. */
  | { status: "done"; backend: number; forwarded: Uint8Array };

/** One fuzz run against one balancer. */
interface Fuzz {
  format: Format;
  /** Makes the config, in front of the backends' addresses. */
  config(backends: string[]): string;
  /** How many backends the config takes. */
  backends: number;
  /** What `sent` should come to; `end`: the client half-closed after it. */
  verdict(sent: Uint8Array, end: boolean): Verdict;
  /** The refusal a connection without a whole preamble gets, from what it sent. */
  refusal(sent: Uint8Array, end: boolean): string;
  /** The least share of connections each outcome (served, refused) must have. @default 1/8 */
  share?: number;
}

/**
 * Starts a balancer, sends it {@linkcode CONNECTIONS} fuzz cases, and checks
 * each against the verdict: what reached which backend, what came back, how
 * soon the balancer closed it; then that a good connection is still served
 * and nothing is left behind.
 */
async function fuzz({ format, config, backends: count, verdict, refusal, share = 1 / 8 }: Fuzz) {
  const backends = Array.from({ length: count }, () => recordingBackend());
  for (const b of backends) cleanups.push(() => b.close());
  const { seen, events } = refusals();
  const lb = await Balancer.start(parseConfig(config(backends.map((b) => b.address))), {
    net,
    events,
  });
  cleanups.push(() => lb.stop({ graceMs: 0 }));
  const port = lb.addresses[0]!.port;

  const random = prng(SEED);
  const cases = Array.from({ length: CONNECTIONS }, (_, id) => {
    const made = fuzzCase(random, id, format);
    // A client whose bytes are served already (a cut SSH banner can be) waits for its echo: it ends.
    if (!made.end && verdict(concat(made.writes), false).status === "done") made.end = true;
    return made;
  });
  const outcomes = await pool(CONNECTIONS, CONCURRENCY, (id) => run(port, cases[id]!, id));

  const expected: string[][] = backends.map(() => []);
  let refused = 0;
  const whys: string[] = [];
  const contents = backends.map((b) => b.contents().map(latin1));
  for (const [id, { kind, writes, end }] of cases.entries()) {
    const sent = concat(writes);
    const should = verdict(sent, end);
    const outcome = outcomes[id]!;
    const what = `connection ${id} (${kind}, ${should.status}): ${JSON.stringify(latin1(sent))}`;
    if (should.status === "done") {
      const forwarded = latin1(should.forwarded);
      expected[should.backend]!.push(forwarded);
      assert.equal(latin1(outcome.echoed), forwarded, `${what}: the echo`);
      continue;
    }
    refused++;
    whys.push(refusal(sent, end));
    assert.equal(outcome.echoed.length, 0, `${what}: nothing comes back`);
    const marker = `#id-${id}#`;
    assert.ok(!contents.flat().some((c) => c.includes(marker)), `${what}: reached a backend`);
    if (should.status === "incomplete" && !end) {
      // Held open without a whole preamble: closed by header_timeout, which starts at accept.
      const { sinceConnectMs: ms } = outcome;
      assert.ok(ms >= HEADER_TIMEOUT_MS * 0.9, `${what}: closed after ${ms.toFixed(0)} ms`);
      assert.ok(ms <= HEADER_TIMEOUT_MS * 1.5 + 250, `${what}: closed after ${ms.toFixed(0)} ms`);
    } else {
      // Invalid, or half-closed before a whole preamble: closed at once.
      const { sinceWriteMs: ms } = outcome;
      assert.ok(ms <= 250, `${what}: closed ${ms.toFixed(0)} ms after its last byte`);
    }
  }
  // Every backend connection is a whole preamble's, and every one of those arrived.
  for (const [i, got] of contents.entries()) {
    assert.deepEqual(got.toSorted(), expected[i]!.toSorted(), `what backend ${i} received`);
  }
  assert.equal(seen.length, refused, "one refusal per connection without a whole preamble");
  assert.deepEqual(seen.map((s) => s.why).toSorted(), whys.toSorted(), "the refusals' reasons");
  // A seed that left one outcome rare would test little.
  const served = expected.flat().length;
  assert.ok(
    Math.min(refused, served) > CONNECTIONS * share,
    `${refused} refused and ${served} served: both should be common`,
  );

  const good = concat([format.valid(random), bytes("still served")]);
  const should = verdict(good, false);
  assert.equal(should.status, "done");
  assert.equal(latin1((await exchange(port, good)).data), latin1(should.forwarded));
  await eventually(() => lb.stats.activeConnections === 0, "every session to end", 3_000);
  await eventually(() => lb.stats.pendingTimers === 0, "every timer to go", 3_000);
}

const TIMEOUT = `header_timeout = "${HEADER_TIMEOUT_MS}ms"`;

describe("edge fuzz", () => {
  it("a whole PROXY header's payload reaches the backend exactly, anything else not at all", async () => {
    await fuzz({
      format: PROXY_HEADER,
      backends: 1,
      config: (backends) =>
        configText(backends, `accept_proxy = true\ntrusted = ["127.0.0.1"]\n${TIMEOUT}`),
      verdict(sent) {
        const parse = parseProxyHeader(sent);
        if (parse.status !== "done") return parse;
        return { status: "done", backend: 0, forwarded: sent.subarray(parse.length) };
      },
      refusal: () => "bad_header",
    });
  });

  it("a whole ClientHello reaches its server name's backend, anything else the fallback or none", async () => {
    // One address for both: port 0 would give each its own free port.
    const port = await freePort();
    await fuzz({
      format: CLIENT_HELLO,
      backends: 2,
      config: ([a, rest]) => `
        [[frontends]]
        name = "a"
        bind_on = "127.0.0.1:${port}"
        sni = ["a.example"]
        ${TIMEOUT}
        [[frontends.backend]]
        forward_to = "${a}"
        [[frontends]]
        name = "rest"
        bind_on = "127.0.0.1:${port}"
        ${TIMEOUT}
        [[frontends.backend]]
        forward_to = "${rest}"
      `,
      verdict(sent, end) {
        const parse = parseClientHello(sent);
        // The fallback takes what is no whole hello for a.example: other
        // names, no name, garbage, and a partial hello its client ended.
        if (parse.status === "incomplete" && !end) return parse;
        const named = parse.status === "done" && parse.serverName === "a.example";
        return { status: "done", backend: named ? 0 : 1, forwarded: sent };
      },
      // Only a partial hello held open is refused, at header_timeout.
      refusal: () => "bad_hello",
      share: 1 / 20,
    });
  });

  it("ssh, tls, http, postgres and a fallback on one address: each connection reaches the backend detect + choose give it", async () => {
    const port = await freePort();
    const table = (name: string, keys: string, to: string) => `
      [[frontends]]
      name = "${name}"
      bind_on = "127.0.0.1:${port}"
      ${keys}
      ${TIMEOUT}
      [[frontends.backend]]
      forward_to = "${to}"
    `;
    const config = ([ssh, tls, http, pg, rest]: string[]) =>
      table("ssh", `protocol = "ssh"`, ssh!) +
      table("tls", `sni = ["a.example", "*.w.example"]`, tls!) +
      table("http", `http_host = ["h.example", "*.h.example"]`, http!) +
      table("pg", `protocol = "postgres"`, pg!) +
      table("rest", "", rest!);
    // The matchers as the balancer reads them, for the pure verdict.
    const matchers = parseConfig(config(Array(5).fill("127.0.0.1:9"))).frontends;
    const wanted = wantedBy(matchers);
    await fuzz({
      format: MANY_PROTOCOLS,
      backends: 5,
      config,
      verdict(sent, end) {
        const detection = detect(sent, wanted);
        if (detection.status === "incomplete") {
          // Held open: refused at header_timeout; ended: what came goes to the fallback.
          return end ? { status: "done", backend: 4, forwarded: sent } : detection;
        }
        return { status: "done", backend: choose(matchers, detection.facts)!, forwarded: sent };
      },
      // Only first bytes that could still become a protocol, held open, are refused.
      refusal: () => "no_match",
      share: 1 / 50,
    });
  });

  it("without a fallback, a whole ClientHello for a listed name is served, anything else refused", async () => {
    const port = await freePort();
    await fuzz({
      format: CLIENT_HELLO,
      backends: 2,
      config: ([a, b]) => `
        [[frontends]]
        name = "a"
        bind_on = "127.0.0.1:${port}"
        sni = ["a.example"]
        ${TIMEOUT}
        [[frontends.backend]]
        forward_to = "${a}"
        [[frontends]]
        name = "b"
        bind_on = "127.0.0.1:${port}"
        sni = ["*.example"]
        ${TIMEOUT}
        [[frontends.backend]]
        forward_to = "${b}"
      `,
      verdict(sent, end) {
        const parse = parseClientHello(sent);
        if (parse.status === "incomplete") return end ? { status: "invalid" } : parse;
        const name = parse.status === "done" ? parse.serverName : undefined;
        if (name === undefined || !matchesServerName("*.example", name)) {
          return { status: "invalid" };
        }
        return { status: "done", backend: name === "a.example" ? 0 : 1, forwarded: sent };
      },
      // A client that speaks no TLS at all is at the wrong port.
      refusal(sent) {
        const parse = parseClientHello(sent);
        if (parse.status === "done") return "unknown_server_name";
        return parse.status === "invalid" && parse.reason.startsWith("not TLS")
          ? "not_tls"
          : "bad_hello";
      },
    });
  });
});
