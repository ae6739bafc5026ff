import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type HelloParse,
  MAX_CLIENT_HELLO_BYTES,
  parseClientHello,
} from "../../../src/protocol/client_hello.ts";
import {
  detect,
  type Detection,
  type Facts,
  MAX_DETECT_BYTES,
  PROTOCOLS,
  type Wanted,
} from "../../../src/protocol/detect.ts";
import { MAX_HTTP_HEAD_BYTES, parseHttpHead } from "../../../src/protocol/http_head.ts";
import { parsePostgres } from "../../../src/protocol/postgres.ts";
import { parseSsh } from "../../../src/protocol/ssh.ts";
import {
  ALL,
  alpnExtension,
  concat,
  CURL_HEAD,
  extension,
  hello,
  helloMessage,
  latin1,
  OPENSSL_H2_HELLO,
  OPENSSL_HTTP1_HELLO,
  PG_CANCEL,
  PG_GSSENC_REQUEST,
  PG_SSL_REQUEST,
  pgStartup,
  records,
  sniExtension,
  SSH_BANNER,
} from "./_samples.ts";

const INCOMPLETE = { status: "incomplete" };

function invalid(result: { status: string; reason?: string }, pattern: RegExp, label = ""): void {
  assert.equal(result.status, "invalid", `${label} ${JSON.stringify(result)}`);
  assert.match(result.reason!, pattern, label);
}

function doneHello(
  result: HelloParse,
): { serverName: string | undefined; alpn: readonly string[] | undefined } {
  assert.equal(result.status, "done", JSON.stringify(result));
  const { serverName, alpn } = result as Extract<HelloParse, { status: "done" }>;
  return { serverName, alpn };
}

/**
 * Feeds the bytes as the listener does, one segment after another into a
 * growing buffer, and returns the first answer that is not incomplete with
 * how many bytes it took (or incomplete when the bytes run out first).
 */
function feed(bytes: Uint8Array, cuts: readonly number[], wanted: Wanted): [Detection, number] {
  let need = 1;
  for (const cut of [...cuts, bytes.length]) {
    // As the preamble does: not asked again before the last answer's need.
    if (cut < need) continue;
    const answer = detect(bytes.subarray(0, cut), wanted);
    if (answer.status === "done") return [answer, cut];
    need = answer.need ?? cut + 1;
  }
  return [INCOMPLETE as Detection, bytes.length];
}

const everyByte = (length: number) => Array.from({ length }, (_, i) => i);

/** The facts of a done detection. */
function factsOf(answer: Detection): Facts {
  assert.equal(answer.status, "done", JSON.stringify(answer));
  return (answer as { facts: Facts }).facts;
}

describe("parseClientHello ALPN", () => {
  it("reads the ALPN names of real openssl ClientHellos in the client's order", () => {
    assert.deepEqual(doneHello(parseClientHello(OPENSSL_H2_HELLO)), {
      serverName: "a.test",
      alpn: ["h2", "http/1.1"],
    });
    assert.deepEqual(doneHello(parseClientHello(OPENSSL_HTTP1_HELLO)), {
      serverName: "b.test",
      alpn: ["http/1.1"],
    });
  });

  it("is undefined without the extension and keeps every byte of unusual names", () => {
    assert.equal(doneHello(parseClientHello(hello({ sni: "a.test" }))).alpn, undefined);
    const grease = String.fromCharCode(0x0a, 0x0a);
    const names = ["http/1.1", grease, "h2", "x".repeat(255)];
    assert.deepEqual(doneHello(parseClientHello(hello({ alpn: names }))).alpn, names);
  });

  it("answers invalid with a reason for a malformed ALPN extension", () => {
    const cases: [number[], RegExp][] = [
      [extension(16, [0]), /ALPN extension too short/],
      [extension(16, [0, 4, 2, 0x68, 0x32]), /ALPN list does not fill/],
      [extension(16, [0, 0]), /empty ALPN list/],
      [extension(16, [0, 3, 0, 2, 0x68]), /empty ALPN protocol name/],
      [extension(16, [0, 3, 5, 0x68, 0x32]), /ALPN protocol name runs past/],
      [[...alpnExtension("h2"), ...alpnExtension("h2")], /extension 16 appears twice/],
    ];
    for (const [ext, pattern] of cases) {
      invalid(parseClientHello(records(helloMessage([sniExtension("a.test"), ext]))), pattern);
    }
  });
});

describe("parseHttpHead", () => {
  it("finds the Host: trimmed, lowercased, port and trailing dot stripped, IPv6 kept in brackets", () => {
    const cases: [string, string | undefined][] = [
      ["GET / HTTP/1.1\r\nHost: h.test:8080\r\n", "h.test"],
      ["GET / HTTP/1.1\r\nUser-Agent: x\r\nhOsT:\t Example.COM \r\n", "example.com"],
      ["GET / HTTP/1.1\r\nHost: [::1]:80\r\n", "[::1]"],
      ["GET / HTTP/1.1\r\nHost: [2001:DB8::1]\r\n", "[2001:db8::1]"],
      ["GET / HTTP/1.1\r\nHost: 10.0.0.1:\r\n", "10.0.0.1"],
      ["GET / HTTP/1.1\r\nHost: h.test.\r\n", "h.test"],
      ["GET http://other.test/ HTTP/1.1\r\nHost: h.test\r\n", "h.test"],
      ["GET / HTTP/1.0\nHost: h.test\n", "h.test"],
      ["GET / HTTP/1.1\r\nHost:\r\n", undefined],
      ["GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", undefined],
      ["GET / HTTP/1.0\n\n", undefined],
      [`${"M".repeat(32)} * HTTP/1.1\r\nHost: h\r\n`, "h"],
      ["OPTIONS * HTTP/1.1\r\nX: \x80\xff\r\nHost: h\r\n", "h"],
    ];
    for (const [head, host] of cases) {
      assert.deepEqual(
        parseHttpHead(latin1(head), true),
        { status: "done", host },
        JSON.stringify(head),
      );
    }
  });

  it("is done after the request line when the host is not wanted", () => {
    assert.deepEqual(parseHttpHead(latin1("GET / HTTP/1.1\r\n"), false), {
      status: "done",
      host: undefined,
    });
    assert.deepEqual(parseHttpHead(latin1("GET / HTTP/1.1\r"), false), INCOMPLETE);
  });

  it("answers incomplete for every prefix before the Host line ends, and decides at its end", () => {
    const end = "GET / HTTP/1.1\r\nHost: h.test:8080\r\n".length;
    for (let cut = 0; cut < end; cut++) {
      assert.deepEqual(parseHttpHead(CURL_HEAD.subarray(0, cut), true), INCOMPLETE, `${cut}`);
    }
    for (let cut = end; cut <= CURL_HEAD.length; cut++) {
      assert.deepEqual(parseHttpHead(CURL_HEAD.subarray(0, cut), true), {
        status: "done",
        host: "h.test",
      });
    }
  });

  it("answers invalid as soon as the bytes show it is not an HTTP/1 head", () => {
    const cases: [string, RegExp][] = [
      ["PRI * HTTP/2", /"2" in the version/],
      [" ", /0x20 in the method/],
      ["\r", /0x0d in the method/],
      ["GE(", /"\(" in the method/],
      [`${"M".repeat(33)}`, /method longer than 32/],
      ["GET  ", /0x20 in the request-target/],
      ["GET /\t", /0x09 in the request-target/],
      ["GET / HTTP/1.2", /"2" in the version/],
      ["GET / h", /"h" in the version/],
      ["GET / HTTP/1.1 ", /where a line should end/],
      ["GET / HTTP/1.1\rX", /CR without LF/],
      ["GET / HTTP/1.1\r\n Host: h\r\n", /0x20 in a header field name/],
      ["GET / HTTP/1.1\r\nHost : h\r\n", /0x20 in a header field name/],
      ["GET / HTTP/1.1\r\n:", /":" in a header field name/],
      ["GET / HTTP/1.1\r\nX: a\0", /0x00 in a header field value/],
      ["GET / HTTP/1.1\r\nX: a\rb", /CR without LF/],
      ["GET / HTTP/1.1\r\n\rX", /CR without LF/],
      ["GET / HTTP/1.1\r\nHost: a b\r\n", /Host header that is not host\[:port\]/],
      ["GET / HTTP/1.1\r\nHost: h:80x\r\n", /Host header that is not/],
    ];
    for (const [head, pattern] of cases) {
      const bytes = latin1(head);
      invalid(parseHttpHead(bytes, true), pattern, JSON.stringify(head));
      // One byte less is still a possible head: the decision falls on the byte that shows it.
      if (!head.includes("Host")) {
        assert.deepEqual(
          parseHttpHead(bytes.subarray(0, -1), true),
          INCOMPLETE,
          JSON.stringify(head),
        );
      }
    }
  });

  it("stops at 8 KiB: a long head without Host is done, a request line that long is invalid", () => {
    const long = latin1(
      `GET / HTTP/1.1\r\nCookie: ${"a".repeat(MAX_HTTP_HEAD_BYTES)}\r\nHost: h\r\n`,
    );
    assert.deepEqual(parseHttpHead(long.subarray(0, MAX_HTTP_HEAD_BYTES - 1), true), INCOMPLETE);
    assert.deepEqual(parseHttpHead(long.subarray(0, MAX_HTTP_HEAD_BYTES), true), {
      status: "done",
      host: undefined,
    });
    assert.deepEqual(parseHttpHead(long, true), { status: "done", host: undefined });
    const target = latin1(`GET /${"a".repeat(MAX_HTTP_HEAD_BYTES)} HTTP/1.1\r\n`);
    assert.deepEqual(parseHttpHead(target.subarray(0, MAX_HTTP_HEAD_BYTES - 1), false), INCOMPLETE);
    invalid(parseHttpHead(target, false), /request line longer than 8192 bytes/);
  });
});

describe("parseSsh", () => {
  it("recognises SSH-2.0- and SSH-1.99- and waits on their prefixes", () => {
    assert.deepEqual(parseSsh(SSH_BANNER), { status: "done", version: "2.0", length: 8 });
    assert.deepEqual(parseSsh(latin1("SSH-1.99-Cisco-1.25\r\n")), {
      status: "done",
      version: "1.99",
      length: 9,
    });
    for (let cut = 0; cut < 8; cut++) {
      assert.deepEqual(parseSsh(SSH_BANNER.subarray(0, cut)), INCOMPLETE);
    }
    assert.deepEqual(parseSsh(latin1("SSH-1.9")), INCOMPLETE);
  });

  it("answers invalid for anything else, at the first wrong byte", () => {
    for (const text of ["ssh-2.0-", "SSH-1.5", "SSH-2.1", "SSH-20", "GET", "\x16"]) {
      invalid(parseSsh(latin1(text)), /not SSH/, text);
    }
  });
});

describe("parsePostgres", () => {
  it("recognises libpq's first messages from their first 8 bytes", () => {
    assert.deepEqual(parsePostgres(PG_SSL_REQUEST), { status: "done", request: "ssl", length: 8 });
    assert.deepEqual(parsePostgres(PG_GSSENC_REQUEST), {
      status: "done",
      request: "gssenc",
      length: 8,
    });
    assert.deepEqual(parsePostgres(PG_CANCEL), { status: "done", request: "cancel", length: 16 });
    const startup = pgStartup();
    assert.deepEqual(parsePostgres(startup), {
      status: "done",
      request: "startup",
      length: startup.length,
    });
    assert.deepEqual(parsePostgres(Uint8Array.of(0, 0, 0x27, 0x10, 0, 3, 0, 2)).status, "done");
    for (const message of [PG_SSL_REQUEST, PG_CANCEL, startup]) {
      for (let cut = 0; cut < 8; cut++) {
        assert.deepEqual(parsePostgres(message.subarray(0, cut)), INCOMPLETE);
      }
    }
  });

  it("answers invalid for wrong lengths and codes, at the first byte that shows it", () => {
    const cases: number[][] = [
      [1],
      [0, 1],
      [0, 0, 0x28],
      [0, 0, 0, 7],
      [0, 0, 0x27, 0x11],
      [0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2f], // an SSLRequest code with a cancel's length
      [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2e], // a CancelRequest code with length 8
      [0, 0, 0, 9, 0, 2], // protocol 2
      [0, 0, 0, 9, 0, 3, 0, 1],
      [0, 0, 0, 9, 0, 3, 1],
    ];
    for (const bytes of cases) {
      invalid(parsePostgres(Uint8Array.from(bytes)), /not PostgreSQL/, `${bytes}`);
    }
  });
});

/** Each protocol's first bytes, and what detection says of them with every protocol wanted. */
const SAMPLES: [string, Uint8Array, Facts][] = [
  ["openssl -alpn h2,http/1.1", OPENSSL_H2_HELLO, {
    protocol: "tls",
    serverName: "a.test",
    alpn: ["h2", "http/1.1"],
  }],
  ["openssl -alpn http/1.1 -tls1_2", OPENSSL_HTTP1_HELLO, {
    protocol: "tls",
    serverName: "b.test",
    alpn: ["http/1.1"],
  }],
  [
    "a 6 KB hello over two records",
    hello({ sni: "big.test", alpn: ["h2"], padding: 6000, recordSize: 4000 }),
    { protocol: "tls", serverName: "big.test", alpn: ["h2"] },
  ],
  ["a hello without extensions", records(helloMessage([])), { protocol: "tls" }],
  ["the OpenSSH banner", SSH_BANNER, { protocol: "ssh" }],
  ["curl's request", CURL_HEAD, { protocol: "http", httpHost: "h.test" }],
  ["a head without Host", latin1("GET / HTTP/1.0\r\nAccept: */*\r\n\r\n"), { protocol: "http" }],
  ["an SSLRequest", PG_SSL_REQUEST, { protocol: "postgres" }],
  ["a GSSENCRequest", PG_GSSENC_REQUEST, { protocol: "postgres" }],
  ["a CancelRequest", PG_CANCEL, { protocol: "postgres" }],
  ["a StartupMessage", pgStartup(), { protocol: "postgres" }],
];

describe("detect", () => {
  it("tells each protocol from its first bytes, whole, split at every byte and in 1-byte segments", () => {
    for (const [label, bytes, facts] of SAMPLES) {
      const whole = detect(bytes, ALL);
      assert.deepEqual(factsOf(whole), facts, label);
      const [oneByOne, used] = feed(bytes, everyByte(bytes.length), ALL);
      assert.deepEqual(oneByOne, whole, label);
      // Every prefix shorter than what the decision took is incomplete: truncated bytes wait.
      for (let cut = 0; cut < used; cut++) {
        const answer = detect(bytes.subarray(0, cut), ALL);
        assert.equal(answer.status, "incomplete", `${label} cut at ${cut}`);
        // A need promises nothing is decided before it: every cut up to it stays incomplete.
        if (answer.status === "incomplete" && answer.need !== undefined) {
          assert.ok(answer.need > cut && answer.need <= bytes.length, `${label} need at ${cut}`);
        }
      }
      for (let cut = 1; cut < bytes.length; cut++) {
        assert.deepEqual(feed(bytes, [cut], ALL)[0], whole, `${label} split at ${cut}`);
      }
    }
  });

  it("examines only the wanted protocols", () => {
    const none: Wanted = { tls: false, http: "no", ssh: false, postgres: false };
    for (const [label, bytes, facts] of SAMPLES) {
      const only = { ...none, [facts.protocol!]: facts.protocol === "http" ? "host" : true };
      assert.equal(factsOf(detect(bytes, only)).protocol, facts.protocol, label);
      for (const protocol of PROTOCOLS.filter((p) => p !== facts.protocol)) {
        const other = { ...none, [protocol]: protocol === "http" ? "host" : true };
        const answer = factsOf(detect(bytes, other));
        assert.equal(answer.protocol, undefined, `${label} with only ${protocol}`);
        assert.match(answer.reason!, /not /, `${label} with only ${protocol}`);
      }
      assert.deepEqual(factsOf(detect(bytes, none)), {
        protocol: undefined,
        reason: "no protocol is detected on this address",
      });
    }
    // HTTP "line" stops after the request line, without looking for Host.
    const line = { ...none, http: "line" } as const;
    assert.deepEqual(factsOf(detect(latin1("GET / HTTP/1.1\r\n"), line)), { protocol: "http" });
    assert.deepEqual(factsOf(detect(CURL_HEAD, line)), { protocol: "http" });
  });

  it("decides ambiguous first bytes by each protocol's own signature", () => {
    // An SSH banner is a possible HTTP method until its first space or CR: SSH decides at 8 bytes.
    assert.deepEqual(factsOf(detect(latin1("SSH-2.0-x y HTTP/1.1\r\n\r\n"), ALL)), {
      protocol: "ssh",
    });
    // SSH 1.5 is not SSH 2, and as an HTTP method it ends at the CR.
    assert.deepEqual(detect(latin1("SSH-1.5-x"), ALL), INCOMPLETE);
    assert.deepEqual(factsOf(detect(latin1("SSH-1.5-x\r\n"), ALL)).protocol, undefined);
    // PostgreSQL's 0x00 is neither TLS's 0x16 nor a letter.
    const tlsOnly: Wanted = { tls: true, http: "host", ssh: true, postgres: false };
    assert.match(factsOf(detect(PG_SSL_REQUEST, tlsOnly)).reason!, /first byte 0x00/);
    assert.match(
      factsOf(detect(OPENSSL_H2_HELLO, { ...ALL, tls: false })).reason!,
      /first byte 0x16/,
    );
    // Letters that start neither: a TLS or PostgreSQL reader rejects them at once, HTTP waits.
    assert.deepEqual(detect(latin1("HELO mail.test"), ALL), INCOMPLETE);
    assert.match(
      factsOf(detect(latin1("HELO mail.test\r\n"), ALL)).reason!,
      /not an HTTP\/1 request/,
    );
  });

  it("sends a malformed or oversized ClientHello to no protocol, saying why", () => {
    const malformed = records(helloMessage([sniExtension("a.test"), extension(16, [0, 0])]));
    assert.deepEqual(factsOf(detect(malformed, ALL)), {
      protocol: undefined,
      reason: "malformed ClientHello: an empty ALPN list",
    });
    const huge = hello({ sni: "a.test", padding: 16_400, recordSize: 8000 });
    const answer = factsOf(detect(huge, ALL));
    assert.equal(answer.protocol, undefined);
    assert.match(answer.reason!, /ClientHello larger than 16384 bytes/);
    // It says so from the message header, long before 17 KiB arrive.
    assert.equal(feed(huge, everyByte(huge.length), ALL)[1], 9);
  });

  it("never reads past MAX_DETECT_BYTES", () => {
    assert.equal(MAX_DETECT_BYTES, MAX_CLIENT_HELLO_BYTES);
    assert.equal(MAX_DETECT_BYTES, 17 * 1024);
    const streams = [
      latin1(`GET /${"a".repeat(20_000)}`),
      latin1(`GET / HTTP/1.1\r\nX: ${"a".repeat(20_000)}`),
      concat(...Array.from({ length: 400 }, () => [22, 3, 1, 0, 1, 1])),
      records(helloMessage([extension(21, new Array(16_000).fill(0))]), 50),
    ];
    for (const bytes of streams) {
      const [answer, used] = feed(bytes, everyByte(bytes.length), ALL);
      assert.equal(answer.status, "done");
      assert.ok(used <= MAX_DETECT_BYTES, `${used}`);
      const longer = concat(bytes, new Uint8Array(MAX_DETECT_BYTES));
      assert.deepEqual(detect(longer, ALL), answer);
    }
  });
});
