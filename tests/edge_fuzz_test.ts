/**
 * Fuzzing one running balancer's preamble with a seeded generator: hundreds
 * of connections, twenty at a time, send random bytes, PROXY headers cut
 * short, with a bit flipped, oversized, or whole and followed by a payload
 * in small pieces. The pure parser says what each should come to; the
 * balancer must agree: a whole header's payload reaches the backend exactly,
 * anything else reaches it not at all and is closed within header_timeout,
 * and nothing is left behind.
 *
 * @module
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { Balancer } from "../src/balancer/balancer.ts";
import { parseConfig } from "../src/config/load.ts";
import { encodeProxyV1, encodeProxyV2, parseProxyHeader } from "../src/protocol/proxy.ts";
import type { Endpoint } from "../src/runtime/types.ts";
import {
  bytes,
  concat,
  configText,
  connect,
  eventually,
  exchange,
  net,
  recordingBackend,
  refusals,
  sleep,
  text,
  within,
} from "./_helpers.ts";

const SEED = 20_260_101;
const CONNECTIONS = 320;
const CONCURRENCY = 20;
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

/** The fuzz case for connection `id`. */
function fuzzCase(random: Random, id: number): Case {
  const kind = random.pick([
    "random bytes",
    "truncated header",
    "flipped bit",
    "header then payload in pieces",
    "oversized v1 line",
    "huge v2 length",
  ]);
  const after = payload(random, id);
  const one = (...parts: Uint8Array[]) => ({ kind, writes: [concat(parts)], end: true });
  switch (kind) {
    case "random bytes":
      return one(random.bytes(random.int(1, 300)), after);
    case "truncated header": {
      // Nothing after it: half-closed at once, or held open until header_timeout.
      const header = validHeader(random);
      const cut = header.subarray(0, random.int(1, header.length - 1));
      return { kind, writes: split(random, cut, 16), end: random.chance(0.5) };
    }
    case "flipped bit": {
      const header = validHeader(random);
      const bit = random.int(0, header.length * 8 - 1);
      header[bit >> 3]! ^= 1 << (bit & 7);
      return one(header, after);
    }
    case "header then payload in pieces":
      return { kind, writes: split(random, concat([validHeader(random), after]), 24), end: true };
    case "oversized v1 line":
      return one(bytes(`PROXY UNKNOWN ${"x".repeat(random.int(94, 300))}\r\n`), after);
    default: {
      const header = encodeProxyV2(endpoint(random, false), endpoint(random, false));
      new DataView(header.buffer).setUint16(14, random.int(1025, 65535));
      return one(header, after);
    }
  }
}

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

describe("edge fuzz", () => {
  it("a whole PROXY header's payload reaches the backend exactly, anything else not at all", async () => {
    const b = recordingBackend();
    cleanups.push(() => b.close());
    const { seen, events } = refusals();
    const config = configText(
      [b.address],
      `accept_proxy = true\ntrusted = ["127.0.0.1"]\nheader_timeout = "${HEADER_TIMEOUT_MS}ms"`,
    );
    const lb = await Balancer.start(parseConfig(config), { net, events });
    cleanups.push(() => lb.stop({ graceMs: 0 }));
    const port = lb.addresses[0]!.port;

    const random = prng(SEED);
    const cases = Array.from({ length: CONNECTIONS }, (_, id) => fuzzCase(random, id));
    const outcomes = await pool(CONNECTIONS, CONCURRENCY, (id) => run(port, cases[id]!, id));

    const expected: string[] = [];
    let refused = 0;
    const contents = b.contents().map(latin1);
    for (const [id, fuzz] of cases.entries()) {
      const sent = concat(fuzz.writes);
      const parse = parseProxyHeader(sent);
      const outcome = outcomes[id]!;
      const what = `connection ${id} (${fuzz.kind}, ${parse.status}): ${
        JSON.stringify(latin1(sent))
      }`;
      if (parse.status === "done") {
        const after = latin1(sent.subarray(parse.length));
        expected.push(after);
        assert.equal(latin1(outcome.echoed), after, `${what}: the echo`);
        continue;
      }
      refused++;
      assert.equal(outcome.echoed.length, 0, `${what}: nothing comes back`);
      const marker = `#id-${id}#`;
      assert.ok(!contents.some((c) => c.includes(marker)), `${what}: reached the backend`);
      if (parse.status === "incomplete" && !fuzz.end) {
        // Held open without a whole header: closed by header_timeout, which starts at accept.
        const { sinceConnectMs: ms } = outcome;
        assert.ok(ms >= HEADER_TIMEOUT_MS * 0.9, `${what}: closed after ${ms.toFixed(0)} ms`);
        assert.ok(ms <= HEADER_TIMEOUT_MS * 1.5 + 250, `${what}: closed after ${ms.toFixed(0)} ms`);
      } else {
        // Invalid, or half-closed before a whole header: closed at once.
        const { sinceWriteMs: ms } = outcome;
        assert.ok(ms <= 250, `${what}: closed ${ms.toFixed(0)} ms after its last byte`);
      }
    }
    // Every backend connection is a whole header's payload, and every one of those arrived.
    assert.deepEqual(contents.toSorted(), expected.toSorted());
    assert.equal(seen.length, refused, "one refusal per connection without a whole header");
    assert.ok(seen.every((s) => s.why === "bad_header"), "refused for its header");
    // A seed that left one outcome rare would test little.
    assert.ok(
      Math.min(refused, expected.length) > CONNECTIONS / 8,
      `${refused} refused and ${expected.length} served: both should be common`,
    );

    assert.equal(
      text((await exchange(port, concat([validHeader(random), bytes("ok")]))).data),
      "ok",
    );
    await eventually(() => lb.stats.activeConnections === 0, "every session to end", 3_000);
    await eventually(() => lb.stats.pendingTimers === 0, "every timer to go", 3_000);
  });
});
