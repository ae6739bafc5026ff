import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { describe, it } from "node:test";
import { unmapIpv4 } from "../../../src/address/cidr.ts";
import {
  type HelloParse,
  MAX_CLIENT_HELLO_BYTES,
  MAX_CLIENT_HELLO_MESSAGE_BYTES,
  parseClientHello,
} from "../../../src/protocol/client_hello.ts";
import {
  encodeProxyV1,
  encodeProxyV2,
  MAX_PROXY_HEADER_BYTES,
  MAX_PROXY_V2_ADDRESS_BYTES,
  parseProxyHeader,
  PROXY_V2_SIGNATURE,
  type ProxyHeader,
  type ProxyParse,
} from "../../../src/protocol/proxy.ts";
import type { Endpoint } from "../../../src/runtime/types.ts";

/** Latin-1 bytes of a string, so "\r\n" and arbitrary bytes are written plainly. */
function latin1(text: string): Uint8Array {
  return Uint8Array.from(text, (char) => char.charCodeAt(0));
}

function concat(...parts: ArrayLike<number>[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

const u16 = (n: number) => [n >> 8 & 255, n & 255];
const u24 = (n: number) => [n >> 16 & 255, n >> 8 & 255, n & 255];

function done(result: ProxyParse): { header: ProxyHeader; length: number } {
  assert.equal(result.status, "done", JSON.stringify(result));
  return result as { status: "done"; header: ProxyHeader; length: number };
}

function invalid(result: ProxyParse | HelloParse, pattern: RegExp): void {
  assert.equal(result.status, "invalid", JSON.stringify(result));
  assert.match((result as { reason: string }).reason, pattern);
}

const tcp = (
  version: 1 | 2,
  source: [string, number],
  destination: [string, number],
): ProxyHeader => ({
  version,
  command: "proxy",
  source: { hostname: source[0], port: source[1] },
  destination: { hostname: destination[0], port: destination[1] },
});

/** A v2 header: command, family byte, address block (and TLVs), length as given or the block's. */
function v2(command: number, family: number, block: number[], length = block.length): Uint8Array {
  return concat(PROXY_V2_SIGNATURE, [0x20 | command, family, ...u16(length)], block);
}

const V1_EXAMPLES: [string, ProxyHeader][] = [
  [
    "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
    tcp(1, ["192.168.0.1", 56324], ["192.168.0.11", 443]),
  ],
  [
    "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
    tcp(1, ["0.0.0.0", 0], ["255.255.255.255", 65535]),
  ],
  ["PROXY TCP6 ::1 2001:DB8:0:0:0:0:0:1 1 2\r\n", tcp(1, ["::1", 1], ["2001:db8::1", 2])],
  [
    "PROXY TCP6 ::ffff:10.0.0.1 fe80::a:0:0:1 80 8080\r\n",
    tcp(1, ["::ffff:10.0.0.1", 80], [
      "fe80::a:0:0:1",
      8080,
    ]),
  ],
  ["PROXY TCP6 1:0:0:2:0:0:0:3 :: 1 1\r\n", tcp(1, ["1:0:0:2::3", 1], ["::", 1])],
  ["PROXY UNKNOWN\r\n", { version: 1, command: "proxy" }],
  ["PROXY UNKNOWN ffff:: ffff:: 65535 65535\r\n", { version: 1, command: "proxy" }],
];

describe("parseProxyHeader, version 1", () => {
  it("reads each example into its header and says where the payload starts", () => {
    for (const [line, header] of V1_EXAMPLES) {
      const result = done(parseProxyHeader(latin1(`${line}GET / HTTP/1.1\r\n`)));
      assert.deepEqual(result.header, header, line);
      assert.equal(result.length, line.length, line);
    }
  });

  it("writes IPv6 addresses compressed and lowercase, whatever form they came in", () => {
    const forms = ["2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::0:1", "2001:db8:0::1"];
    for (const form of forms) {
      const { header } = done(parseProxyHeader(latin1(`PROXY TCP6 ${form} ::1 1 2\r\n`)));
      assert.equal(header.source?.hostname, "2001:db8::1", form);
    }
    // The longest run of zeros becomes ::, the first of equal runs; one zero stays.
    const cases: [string, string][] = [
      ["1:0:0:1:0:0:0:1", "1:0:0:1::1"],
      ["1:0:0:1:0:0:1:1", "1::1:0:0:1:1"],
      ["1:0:1:1:1:1:1:1", "1:0:1:1:1:1:1:1"],
      ["::2.3.4.5", "::203:405"],
      ["0:0:0:0:0:FFFF:7F00:1", "::ffff:127.0.0.1"],
    ];
    for (const [form, canonical] of cases) {
      const { header } = done(parseProxyHeader(latin1(`PROXY TCP6 ${form} ::1 1 2\r\n`)));
      assert.equal(header.source?.hostname, canonical, form);
    }
  });

  it("answers incomplete for every strict prefix of a valid line", () => {
    for (const [line] of V1_EXAMPLES) {
      const bytes = latin1(line);
      for (let end = 0; end < bytes.length; end++) {
        assert.deepEqual(
          parseProxyHeader(bytes.subarray(0, end)),
          { status: "incomplete" },
          `${end} of ${line}`,
        );
      }
    }
  });

  it("answers invalid at the first byte that no valid line can have", () => {
    const cases: [string, RegExp][] = [
      ["G", /not a PROXY protocol header/],
      ["PROXX", /not a PROXY protocol header/],
      ["p", /not a PROXY protocol header/],
      ["PROXY  ", /protocol must be TCP4, TCP6 or UNKNOWN/],
      ["PROXY TCP5", /protocol must be/],
      ["PROXY UNKNOWNX", /protocol must be/],
      ["PROXY TCP4 1.2.3.4  ", /destination address is not an IPv4/],
      ["PROXY TCP4 01", /source address is not an IPv4 address without leading zeros/],
      ["PROXY TCP4 1.2.3.256", /source address is not an IPv4/],
      ["PROXY TCP4 1.2.3.4.", /source address/],
      ["PROXY TCP4 :", /source address is not an IPv4/],
      ["PROXY TCP6 1.", /source address is not an IPv6/],
      ["PROXY TCP6 1:::", /source address is not an IPv6/],
      ["PROXY TCP6 1:2:3:4:5:6:7:8:", /source address is not an IPv6/],
      ["PROXY TCP6 12345", /source address is not an IPv6/],
      ["PROXY TCP6 ::1%", /source address is not an IPv6/],
      ["PROXY TCP4 1.2.3.4 5.6.7.8 65536", /source port is not a number 0 to 65535/],
      ["PROXY TCP4 1.2.3.4 5.6.7.8 08", /source port/],
      ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ", /field after the destination port/],
      ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", /destination port/],
      ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r", /destination port/],
      ["PROXY TCP4 1.2.3.4 5.6.7.8 1\r", /two addresses and two ports/],
    ];
    for (const [text, reason] of cases) {
      const bytes = latin1(text);
      for (let end = 0; end < bytes.length; end++) {
        assert.equal(
          parseProxyHeader(bytes.subarray(0, end)).status,
          "incomplete",
          `${end} of ${text}`,
        );
      }
      invalid(parseProxyHeader(bytes), reason);
    }
  });

  it("ends a TCP line only at CRLF, and a single CR or LF is an error", () => {
    invalid(parseProxyHeader(latin1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\nX")), /destination port/);
    invalid(parseProxyHeader(latin1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX")), /destination port/);
  });

  it("ignores whatever UNKNOWN carries up to the first CRLF", () => {
    const line = "PROXY UNKNOWN \x00garbage\r\tmore\r\n";
    const result = done(parseProxyHeader(latin1(`${line}rest\r\n`)));
    assert.deepEqual(result.header, { version: 1, command: "proxy" });
    assert.equal(result.length, line.length);
  });

  it("takes a line of exactly 107 bytes and refuses one byte more", () => {
    const longest = `PROXY UNKNOWN ${"ffff:".repeat(7)}ffff ${
      "ffff:".repeat(7)
    }ffff 65535 65535\r\n`;
    assert.equal(longest.length, 107);
    assert.equal(done(parseProxyHeader(latin1(longest))).length, 107);
    const longer = longest.replace("UNKNOWN ", "UNKNOWN  ");
    invalid(parseProxyHeader(latin1(longer)), /v1 header longer than 107 bytes/);
    invalid(parseProxyHeader(latin1(longer.slice(0, 107))), /longer than 107 bytes/);
    // With 106 bytes and no CR yet, the CRLF alone would make 108.
    invalid(parseProxyHeader(latin1(longer.slice(0, 106))), /longer than 107 bytes/);
    assert.equal(parseProxyHeader(latin1(longer.slice(0, 105))).status, "incomplete");
  });

  it("refuses a TCP6 line that cannot end within 107 bytes before it reaches them", () => {
    const wide = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255";
    const line = `PROXY TCP6 ${wide} ${wide} 65535 65535\r\n`;
    invalid(parseProxyHeader(latin1(line)), /longer than 107 bytes/);
    // Source, space, destination, space, port, space, port, CRLF: 11 + 45 + 1 + 45 + 6 > 107.
    invalid(parseProxyHeader(latin1(line.slice(0, 11 + 45 + 1 + 45))), /longer than 107 bytes/);
  });
});

const V4_BLOCK = [127, 0, 0, 1, 10, 0, 0, 2, ...u16(50000), ...u16(443)];
const V6_BLOCK = [
  0x20,
  0x01,
  0x0d,
  0xb8,
  ...new Array(11).fill(0),
  1,
  ...new Array(10).fill(0),
  0xff,
  0xff,
  192,
  0,
  2,
  1,
  ...u16(1),
  ...u16(65535),
];

describe("parseProxyHeader, version 2", () => {
  it("reads TCP over IPv4 and over IPv6, IPv6 in canonical text", () => {
    const four = done(parseProxyHeader(concat(v2(1, 0x11, V4_BLOCK), latin1("payload"))));
    assert.deepEqual(four.header, tcp(2, ["127.0.0.1", 50000], ["10.0.0.2", 443]));
    assert.equal(four.length, 28);
    const six = done(parseProxyHeader(v2(1, 0x21, V6_BLOCK)));
    assert.deepEqual(six.header, tcp(2, ["2001:db8::1", 1], ["::ffff:192.0.2.1", 65535]));
    assert.equal(six.length, 52);
  });

  it("skips the TLVs after the address block, counting them in the length", () => {
    const tlvs = [0x04, ...u16(3), 0, 0, 0, 0x02, ...u16(4), ...latin1("a.io"), 0x05, ...u16(0)];
    const result = done(parseProxyHeader(concat(v2(1, 0x11, [...V4_BLOCK, ...tlvs]), [9, 9])));
    assert.equal(result.length, 16 + 12 + tlvs.length);
    assert.equal(result.header.source?.hostname, "127.0.0.1");
  });

  it("refuses TLVs whose framing runs past the header length", () => {
    invalid(parseProxyHeader(v2(1, 0x11, [...V4_BLOCK, 0x04, 0])), /TLV header runs past/);
    invalid(
      parseProxyHeader(v2(1, 0x11, [...V4_BLOCK, 0x04, ...u16(2), 0])),
      /TLV value runs past/,
    );
    // Known from the TLV header alone, before its value arrives.
    const header = v2(1, 0x11, [...V4_BLOCK, 0x04, ...u16(9)], 12 + 3 + 4);
    invalid(parseProxyHeader(header), /TLV value runs past/);
  });

  it("gives LOCAL without addresses, ignoring its family and block", () => {
    for (const family of [0x00, 0x11, 0x12, 0x77]) {
      const result = done(parseProxyHeader(v2(0, family, [1, 2, 3])));
      assert.deepEqual(result.header, { version: 2, command: "local" });
      assert.equal(result.length, 19);
    }
  });

  it("gives PROXY over AF_UNSPEC or a unix stream without addresses", () => {
    assert.deepEqual(done(parseProxyHeader(v2(1, 0x00, []))).header, {
      version: 2,
      command: "proxy",
    });
    assert.equal(done(parseProxyHeader(v2(1, 0x00, [1, 2, 3]))).length, 19);
    const unix = done(parseProxyHeader(v2(1, 0x31, new Array(216).fill(0x61))));
    assert.deepEqual(unix.header, { version: 2, command: "proxy" });
    assert.equal(unix.length, 232);
  });

  it("refuses datagram protocols, unknown families, other versions and commands", () => {
    for (const family of [0x12, 0x22, 0x32]) {
      invalid(parseProxyHeader(v2(1, family, V4_BLOCK).subarray(0, 14)), /is not TCP/);
    }
    for (const family of [0x01, 0x10, 0x13, 0x41, 0xff]) {
      invalid(parseProxyHeader(v2(1, family, V4_BLOCK).subarray(0, 14)), /is unknown/);
    }
    const header = v2(1, 0x11, V4_BLOCK);
    for (const versionCommand of [0x11, 0x31, 0x01]) {
      header[12] = versionCommand;
      invalid(parseProxyHeader(header.subarray(0, 13)), /version must be 2/);
    }
    header[12] = 0x22;
    invalid(parseProxyHeader(header.subarray(0, 13)), /command must be LOCAL \(0\) or PROXY \(1\)/);
  });

  it("refuses an address block shorter than its family needs", () => {
    invalid(
      parseProxyHeader(v2(1, 0x11, V4_BLOCK.slice(0, 11))),
      /address block too short for TCP4/,
    );
    invalid(parseProxyHeader(v2(1, 0x21, V4_BLOCK)), /too short for TCP6/);
    invalid(parseProxyHeader(v2(1, 0x31, V6_BLOCK).subarray(0, 16)), /too short for UNIX/);
  });

  it("takes the longest header allowed and refuses a longer one from its length field", () => {
    assert.equal(MAX_PROXY_HEADER_BYTES, 16 + MAX_PROXY_V2_ADDRESS_BYTES);
    const padding = MAX_PROXY_V2_ADDRESS_BYTES - 12 - 3;
    const longest = v2(1, 0x11, [
      ...V4_BLOCK,
      0x04,
      ...u16(padding),
      ...new Array(padding).fill(0),
    ]);
    assert.equal(done(parseProxyHeader(longest)).length, MAX_PROXY_HEADER_BYTES);
    const oversized = v2(1, 0x11, V4_BLOCK, MAX_PROXY_V2_ADDRESS_BYTES + 1);
    invalid(parseProxyHeader(oversized.subarray(0, 16)), /oversized/);
  });

  it("answers incomplete for every strict prefix and invalid at the first wrong signature byte", () => {
    const header = v2(1, 0x21, V6_BLOCK);
    for (let end = 0; end < header.length; end++) {
      assert.deepEqual(
        parseProxyHeader(header.subarray(0, end)),
        { status: "incomplete" },
        `${end}`,
      );
    }
    for (let at = 1; at < 12; at++) {
      const wrong = header.slice(0, at + 1);
      wrong[at]! ^= 0x40;
      invalid(parseProxyHeader(wrong), /not a PROXY protocol header/);
    }
  });
});

describe("encodeProxyV1 and encodeProxyV2", () => {
  const ep = (hostname: string, port: number): Endpoint => ({ hostname, port });
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

  it("writes TCP4 for two IPv4 sides, TCP6 (IPv4 mapped) when either is IPv6", () => {
    const cases: [Endpoint, Endpoint, string][] = [
      [ep("1.2.3.4", 5), ep("10.0.0.1", 80), "TCP4 1.2.3.4 10.0.0.1 5 80"],
      // As a dual-stack socket reports IPv4 clients.
      [ep("::ffff:1.2.3.4", 5), ep("::FFFF:10.0.0.1", 80), "TCP4 1.2.3.4 10.0.0.1 5 80"],
      [ep("1.2.3.4", 5), ep("::1", 6), "TCP6 ::ffff:102:304 ::1 5 6"],
      // A link-local address loses its zone: the header has no room for it.
      [ep("fe80::1%eth0", 5), ep("fe80::2", 6), "TCP6 fe80::1 fe80::2 5 6"],
    ];
    for (const [source, destination, line] of cases) {
      assert.equal(text(encodeProxyV1(source, destination)), `PROXY ${line}\r\n`);
    }
    const v4 = encodeProxyV2(ep("::ffff:127.0.0.1", 50000), ep("10.0.0.2", 443));
    assert.deepEqual(v4, v2(1, 0x11, V4_BLOCK));
    assert.deepEqual(
      encodeProxyV2(ep("2001:db8::1", 1), ep("192.0.2.1", 65535)),
      v2(1, 0x21, V6_BLOCK),
    );
  });

  it("writes UNKNOWN or AF_UNSPEC when a side is missing or not an IP literal", () => {
    const pairs: [Endpoint | undefined, Endpoint | undefined][] = [
      [undefined, ep("1.2.3.4", 1)],
      [ep("1.2.3.4", 1), undefined],
      [ep("/run/lb.sock", 0), ep("1.2.3.4", 1)],
      [ep("", 0), ep("::1", 1)],
      [ep("localhost", 1), ep("::1", 1)],
    ];
    for (const [source, destination] of pairs) {
      assert.equal(text(encodeProxyV1(source, destination)), "PROXY UNKNOWN\r\n");
      assert.deepEqual(encodeProxyV2(source, destination), v2(1, 0x00, []));
    }
  });

  it("refuses a port outside 0 to 65535", () => {
    assert.throws(() => encodeProxyV1(ep("1.2.3.4", 65536), ep("1.2.3.4", 1)), RangeError);
    assert.throws(() => encodeProxyV2(ep("1.2.3.4", 1), ep("1.2.3.4", -1)), RangeError);
    assert.throws(() => encodeProxyV2(ep("1.2.3.4", 1.5), ep("1.2.3.4", 1)), RangeError);
  });

  it("round-trips through the parser, either version", () => {
    const pairs: [Endpoint, Endpoint, [string, string]][] = [
      [ep("127.0.0.1", 0), ep("255.255.255.255", 65535), ["127.0.0.1", "255.255.255.255"]],
      [ep("::ffff:127.0.0.1", 1), ep("::ffff:127.0.0.2", 2), ["127.0.0.1", "127.0.0.2"]],
      [ep("2001:DB8::0:1", 3), ep("::", 4), ["2001:db8::1", "::"]],
      [ep("1.2.3.4", 5), ep("::1", 6), ["::ffff:1.2.3.4", "::1"]],
      [ep("fe80::1:2:3:4", 7), ep("10.0.0.1", 8), ["fe80::1:2:3:4", "::ffff:10.0.0.1"]],
      [ep("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 9), ep("1::", 10), [
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "1::",
      ]],
    ];
    for (const [source, destination, [from, to]] of pairs) {
      for (const [version, encode] of [[1, encodeProxyV1], [2, encodeProxyV2]] as const) {
        const bytes = encode(source, destination);
        const result = done(parseProxyHeader(bytes));
        assert.equal(result.length, bytes.length);
        assert.deepEqual(result.header, tcp(version, [from, source.port], [to, destination.port]));
      }
    }
  });
});

/** A ClientHello body: legacy version, random, empty session id, one suite, null compression, extensions. */
function helloBody(extensions?: number[][], sessionId: number[] = []): number[] {
  const body = [
    3,
    3,
    ...new Array(32).fill(7),
    sessionId.length,
    ...sessionId,
    ...u16(2),
    0x13,
    0x01,
    1,
    0,
  ];
  if (extensions === undefined) return body;
  const flat = extensions.flat();
  return [...body, ...u16(flat.length), ...flat];
}

const extension = (type: number, data: number[]) => [...u16(type), ...u16(data.length), ...data];

function sni(...names: string[]): number[] {
  const entries = names.flatMap((name) => [0, ...u16(name.length), ...latin1(name)]);
  return extension(0, [...u16(entries.length), ...entries]);
}

const handshake = (body: number[], type = 1) => [type, ...u24(body.length), ...body];

/** The message as TLS records of at most `size` bytes each. */
function records(message: ArrayLike<number>, size = 16384, version = [3, 1]): Uint8Array {
  const parts: number[][] = [];
  for (let at = 0; at < message.length; at += size) {
    const chunk = Array.from(message).slice(at, at + size);
    parts.push([22, ...version, ...u16(chunk.length), ...chunk]);
  }
  return concat(...parts);
}

function sniOf(result: HelloParse): string | undefined {
  assert.equal(result.status, "done", JSON.stringify(result));
  return (result as { serverName: string | undefined }).serverName;
}

/**
 * Why this test run may not listen on loopback, if it may not: Deno without
 * --allow-net throws from inside node:net's listen, out of reach of any handler.
 */
function netDenied(): string | undefined {
  const deno = (globalThis as {
    Deno?: { permissions: { querySync(descriptor: { name: "net" }): { state: string } } };
  }).Deno;
  if (deno === undefined || deno.permissions.querySync({ name: "net" }).state === "granted") {
    return undefined;
  }
  return "needs --allow-net to capture a live ClientHello (the recorded one is still checked)";
}

/** The first bytes node:tls sends to a plain TCP server, up to a whole ClientHello. */
async function captureClientHello(servername: string): Promise<Uint8Array> {
  let server: Server | undefined;
  const closers: (() => void)[] = [];
  try {
    return await new Promise<Uint8Array>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error("no whole ClientHello arrived within 3s")),
        3000,
      );
      closers.push(() => clearTimeout(timer));
      let received: Uint8Array = new Uint8Array(0);
      server = createServer((socket) => {
        closers.push(() => socket.destroy());
        socket.on("error", () => {});
        socket.on("data", (chunk: Uint8Array) => {
          received = concat(received, chunk);
          if (parseClientHello(received).status !== "incomplete") resolve(received);
        });
      });
      server.on("error", reject);
      server.listen(0, "127.0.0.1", () => {
        const { port } = server!.address() as { port: number };
        const client = tlsConnect({
          host: "127.0.0.1",
          port,
          servername,
          rejectUnauthorized: false,
        });
        client.on("error", () => {});
        closers.push(() => client.destroy());
      });
    });
  } finally {
    for (const close of closers) close();
    await new Promise<void>((resolve) => server ? server.close(() => resolve()) : resolve());
  }
}

/** A cut of a hello is incomplete, and its need (if any) lies past the cut and within the hello. */
function assertIncomplete(parse: HelloParse, end: number, length: number): void {
  assert.equal(parse.status, "incomplete", `${end}`);
  if (parse.status === "incomplete" && parse.need !== undefined) {
    assert.ok(parse.need > end && parse.need <= length, `need ${parse.need} at ${end}`);
  }
}

describe("parseClientHello", () => {
  /** Every cut of a real hello is incomplete, the whole is done, and so is any refragmenting. */
  function checkRealHello(hello: Uint8Array, serverName: string): void {
    assert.equal(sniOf(parseClientHello(hello)), serverName);
    for (let end = 0; end < hello.length; end++) {
      assertIncomplete(parseClientHello(hello.subarray(0, end)), end, hello.length);
    }
    // The same message spread over records of many sizes, down to one byte each.
    const message = hello.subarray(5, 5 + (hello[3]! << 8 | hello[4]!));
    for (const size of [1, 2, 3, 4, 5, 7, 64, 300, message.length - 1]) {
      assert.equal(sniOf(parseClientHello(records(message, size))), serverName, `${size}`);
    }
  }

  it("finds the server name in a recorded ClientHello, however it is cut", async () => {
    // Sent by Bun's node:tls (BoringSSL, with a post-quantum key share) for servername api.example.com.
    const hello = new Uint8Array(
      await readFile(new URL("../../testdata/client_hello_bun.bin", import.meta.url)),
    );
    checkRealHello(hello, "api.example.com");
  });

  it("finds the server name in the ClientHello this runtime's node:tls sends", async (context) => {
    const reason = netDenied();
    if (reason !== undefined) return context.skip(reason);
    checkRealHello(await captureClientHello("API.example.com"), "api.example.com");
  });

  it("lowercases the host name and strips one trailing dot", () => {
    const hello = records(
      handshake(helloBody([extension(0x0a, [0, 2, 0, 0x1d]), sni("Www.Example.ORG.")])),
    );
    assert.equal(sniOf(parseClientHello(concat(hello, [23, 3, 3, 0, 1, 0]))), "www.example.org");
  });

  it("answers undefined without a server_name extension, or without any extension", () => {
    assert.equal(
      sniOf(parseClientHello(records(handshake(helloBody([extension(0x0a, [0, 0])]))))),
      undefined,
    );
    assert.equal(sniOf(parseClientHello(records(handshake(helloBody())))), undefined);
    assert.equal(sniOf(parseClientHello(records(handshake(helloBody([]))))), undefined);
    const other = extension(0, [...u16(4), 7, ...u16(1), 0x61]);
    assert.equal(sniOf(parseClientHello(records(handshake(helloBody([other]))))), undefined);
  });

  it("reassembles a hello fragmented over records, each cut at every byte", () => {
    const message = handshake(helloBody([sni("a.example")], [1, 2, 3]));
    const hello = records(message, 10);
    for (let end = 0; end < hello.length; end++) {
      assertIncomplete(parseClientHello(hello.subarray(0, end)), end, hello.length);
    }
    assert.equal(sniOf(parseClientHello(hello)), "a.example");
  });

  it("says what is not TLS from the first bytes", () => {
    invalid(parseClientHello(latin1("GET / HTTP/1.1\r\n")), /^not TLS: first byte 0x47$/);
    invalid(parseClientHello(Uint8Array.of(0x80, 0x2e, 0x01, 0x00, 0x02)), /SSLv2-style hello/);
    invalid(parseClientHello(Uint8Array.of(22, 2)), /not TLS: record version/);
  });

  it("refuses records that break the record layer", () => {
    const message = handshake(helloBody([sni("a.example")]));
    invalid(parseClientHello(Uint8Array.of(22, 3, 1, ...u16(16385))), /more than 2\^14/);
    invalid(parseClientHello(Uint8Array.of(22, 3, 1, 0, 0)), /empty handshake record/);
    const split = records(message, 20);
    invalid(
      parseClientHello(concat(split.subarray(0, 25), [21])),
      /a record of type 21 came before the hello ended/,
    );
    invalid(parseClientHello(concat(split.subarray(0, 25), [22, 4])), /record version major 4/);
    invalid(
      parseClientHello(records(handshake(helloBody(), 2))),
      /first handshake message has type 2/,
    );
  });

  it("refuses a hello larger than the cap, from its length alone", () => {
    const head = Uint8Array.of(22, 3, 1, ...u16(4), 1, ...u24(MAX_CLIENT_HELLO_MESSAGE_BYTES - 3));
    invalid(
      parseClientHello(head),
      new RegExp(`ClientHello larger than ${MAX_CLIENT_HELLO_MESSAGE_BYTES} bytes`),
    );
    const largest = handshake(
      helloBody([extension(0xffce, new Array(MAX_CLIENT_HELLO_MESSAGE_BYTES - 51).fill(0))]),
    );
    assert.equal(largest.length, MAX_CLIENT_HELLO_MESSAGE_BYTES);
    assert.equal(sniOf(parseClientHello(records(largest))), undefined);
  });

  it("refuses a hello spread over more record bytes than the cap", () => {
    const message = handshake(helloBody([extension(0xffce, new Array(4000).fill(0))]));
    assert.ok(message.length * 6 > MAX_CLIENT_HELLO_BYTES);
    invalid(parseClientHello(records(message, 1)), /spread over more than/);
    assert.equal(sniOf(parseClientHello(records(message, 100))), undefined);
  });

  it("refuses a hello whose fields do not fit their lengths", () => {
    const good = helloBody([sni("a.example")]);
    const cases: [number[], RegExp][] = [
      [good.slice(0, 30), /too short/],
      [[2, 0, ...good.slice(2)], /legacy_version 2\.0/],
      [helloBody([], new Array(33).fill(1)), /session id of 33 bytes/],
      [[...good.slice(0, 35), 0, 3, 1, 2, 3, 1, 0], /cipher suites of 3 bytes/],
      [[...good.slice(0, 35), 0, 0, 1, 0], /cipher suites of 0 bytes/],
      [[...good.slice(0, 35), 0, 4, 1, 2], /cipher suites run past/],
      [[...good.slice(0, 39), 0], /no compression methods/],
      [[...good.slice(0, 39), 3, 0], /compression methods run past/],
      [[...helloBody(), 0], /truncated extensions length/],
      [[...helloBody(), 0, 5, 0, 0, 0, 0], /extensions do not fill the message/],
      [helloBody([[0, 0, 0]]), /truncated extension header/],
      [helloBody([[0, 10, 0, 9, 1]]), /extension 10 runs past/],
      [helloBody([extension(10, []), extension(10, [])]), /extension 10 appears twice/],
      [helloBody([extension(0, [0])]), /too short for its list/],
      [helloBody([extension(0, [0, 5, 0, 0, 1, 0x61])]), /list does not fill its extension/],
      [helloBody([extension(0, [0, 0])]), /empty server_name list/],
      [helloBody([extension(0, [0, 2, 0, 0])]), /truncated server_name entry/],
      [helloBody([extension(0, [0, 4, 0, 0, 5, 0x61])]), /server name runs past its list/],
      [helloBody([sni("a.example", "b.example")]), /two host names/],
      [helloBody([sni("a b")]), /not a plausible host name/],
      [helloBody([sni("")]), /not a plausible host name/],
      [helloBody([sni(".")]), /not a plausible host name/],
      [helloBody([sni("caf\xe9")]), /not a plausible host name/],
      [helloBody([sni("a".repeat(254))]), /not a plausible host name/],
    ];
    for (const [body, reason] of cases) invalid(parseClientHello(records(handshake(body))), reason);
    assert.equal(
      sniOf(parseClientHello(records(handshake(helloBody([sni(`${"a".repeat(253)}.`)]))))),
      "a".repeat(253),
    );
  });
});

/** mulberry32: a small seeded generator, so a failing case can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function checkProxy(bytes: Uint8Array): ProxyParse {
  const result = parseProxyHeader(bytes);
  assert.ok(["incomplete", "invalid", "done"].includes(result.status), JSON.stringify(result));
  if (result.status === "done") {
    assert.ok(
      result.length > 0 && result.length <= bytes.length && result.length <= MAX_PROXY_HEADER_BYTES,
    );
    const { source, destination, version } = result.header;
    if (source !== undefined && destination !== undefined) {
      // What was read writes back to the same header.
      const again = done(
        parseProxyHeader((version === 1 ? encodeProxyV1 : encodeProxyV2)(source, destination)),
      );
      const plain = (endpoint?: Endpoint) =>
        endpoint && [unmapIpv4(endpoint.hostname), endpoint.port];
      assert.deepEqual(plain(again.header.source), plain(source));
      assert.deepEqual(plain(again.header.destination), plain(destination));
    }
  } else if (result.status === "invalid") {
    assert.ok(result.reason.length > 0);
  }
  return result;
}

function checkHello(bytes: Uint8Array): HelloParse {
  const result = parseClientHello(bytes);
  assert.ok(["incomplete", "invalid", "done"].includes(result.status), JSON.stringify(result));
  if (result.status === "done" && result.serverName !== undefined) {
    assert.match(result.serverName, /^[\x21-\x40\x5b-\x7e]{1,253}$/);
  }
  return result;
}

describe("the parsers under fuzzing", () => {
  const proxyHeaders = [
    ...V1_EXAMPLES.map(([line]) => latin1(line)),
    v2(1, 0x11, V4_BLOCK),
    v2(1, 0x21, [...V6_BLOCK, 0x04, ...u16(2), 1, 2]),
    v2(0, 0x00, []),
    v2(1, 0x31, new Array(216).fill(0)),
    encodeProxyV1({ hostname: "fe80::1", port: 1 }, { hostname: "10.0.0.1", port: 2 }),
  ];
  const hellos = [
    records(handshake(helloBody([sni("a.example.com"), extension(0x0a, [0, 2, 0, 0x1d])], [1, 2]))),
    records(handshake(helloBody([extension(0x2b, [2, 3, 4]), sni("b.example.")])), 17),
    records(handshake(helloBody())),
  ];

  it("never throw, nor answer done beyond the input, on random bytes", () => {
    const next = random(0x5eed);
    const byte = () => Math.floor(next() * 256);
    const starts = [[], [...latin1("PROXY ")], [...latin1("PROXY TCP")], [...PROXY_V2_SIGNATURE], [
      22,
      3,
      1,
    ]];
    const alphabet = latin1("0123456789abcdefABCDEF:. \r\nTCP46UNKOWX");
    for (let round = 0; round < 6000; round++) {
      const start = starts[round % starts.length]!;
      const tail = Array.from(
        { length: Math.floor(next() * 120) },
        () => round % 2 === 0 ? byte() : alphabet[Math.floor(next() * alphabet.length)]!,
      );
      const bytes = Uint8Array.from([...start, ...tail]);
      checkProxy(bytes);
      checkHello(bytes);
    }
  });

  it("never answer done with another header for a prefix of a valid header", () => {
    for (const header of proxyHeaders) {
      const full = done(parseProxyHeader(concat(header, latin1("payload"))));
      const withPayload = concat(header, latin1("payload"));
      for (let end = 0; end <= withPayload.length; end++) {
        const result = checkProxy(withPayload.subarray(0, end));
        if (end < header.length) assert.equal(result.status, "incomplete", `${end}`);
        else assert.deepEqual(result, { status: "done", ...full });
      }
    }
    for (const hello of hellos) {
      const full = parseClientHello(hello);
      for (let end = 0; end < hello.length; end++) {
        assert.equal(checkHello(hello.subarray(0, end)).status, "incomplete");
      }
      assert.equal(full.status, "done");
    }
  });

  it("never throw on bit-flipped headers and hellos", () => {
    const next = random(0xf11b);
    let rounds = 0;
    for (const [samples, check] of [[proxyHeaders, checkProxy], [hellos, checkHello]] as const) {
      for (let round = 0; round < 6000; round++, rounds++) {
        const sample = samples[round % samples.length]!;
        const bytes = sample.slice();
        for (let flips = 1 + Math.floor(next() * 3); flips > 0; flips--) {
          const at = Math.floor(next() * bytes.length);
          bytes[at]! ^= 1 << Math.floor(next() * 8);
        }
        (check as (bytes: Uint8Array) => unknown)(bytes);
      }
    }
    assert.equal(rounds, 12000);
  });
});
