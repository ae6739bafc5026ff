import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CidrSet, parseCidr, unmapIpv4 } from "../../../src/address/cidr.ts";

function parseError(text: string): string {
  try {
    parseCidr(text);
  } catch (error) {
    assert.ok(error instanceof TypeError, `expected a TypeError, got ${error}`);
    return error.message;
  }
  assert.fail(`${text} parsed without error`);
}

const set = (...ranges: string[]) => new CidrSet(ranges.map(parseCidr));

describe("parseCidr", () => {
  it("reads IPv4 and IPv6 ranges, and lone addresses as /32 and /128", () => {
    assert.deepEqual(parseCidr("10.0.0.0/8"), {
      text: "10.0.0.0/8",
      family: 4,
      prefixLength: 8,
      words: [0x0a000000],
    });
    assert.deepEqual(parseCidr("192.168.1.7"), {
      text: "192.168.1.7",
      family: 4,
      prefixLength: 32,
      words: [0xc0a80107],
    });
    assert.deepEqual(parseCidr("2001:db8::/32"), {
      text: "2001:db8::/32",
      family: 6,
      prefixLength: 32,
      words: [0x20010db8, 0, 0, 0],
    });
    assert.deepEqual(parseCidr("::1"), {
      text: "::1",
      family: 6,
      prefixLength: 128,
      words: [0, 0, 0, 1],
    });
    assert.equal(parseCidr("0.0.0.0/0").prefixLength, 0);
    assert.equal(parseCidr("::/0").prefixLength, 0);
    assert.equal(parseCidr("255.255.255.255/32").words[0], 0xffffffff);
  });

  it("reads every IPv6 text form: uppercase, full, compressed anywhere, dotted tail", () => {
    for (
      const text of ["2001:DB8::1", "2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8:0::0:1"]
    ) {
      assert.deepEqual(parseCidr(text).words, [0x20010db8, 0, 0, 1], text);
    }
    assert.deepEqual(parseCidr("1:2:3:4:5:6:7::").words, [0x10002, 0x30004, 0x50006, 0x70000]);
    assert.deepEqual(parseCidr("::1:2:3:4:5:6:7").words, [0x1, 0x20003, 0x40005, 0x60007]);
    assert.deepEqual(parseCidr("64:ff9b::192.0.2.33").words, [0x64ff9b, 0, 0, 0xc0000221]);
    assert.deepEqual(parseCidr("1:2:3:4:5::1.2.3.4").words, [
      0x10002,
      0x30004,
      0x50000,
      0x01020304,
    ]);
    assert.deepEqual(parseCidr("1:2:3:4:5:6:1.2.3.4").words, [
      0x10002,
      0x30004,
      0x50006,
      0x01020304,
    ]);
  });

  it("takes an IPv4-mapped range as its IPv4 form", () => {
    const range = parseCidr("::ffff:10.0.0.0/104");
    assert.deepEqual(range, {
      text: "::ffff:10.0.0.0/104",
      family: 4,
      prefixLength: 8,
      words: [0x0a000000],
    });
    assert.equal(parseCidr("::ffff:0:0/96").prefixLength, 0);
  });

  it("refuses a prefix longer than the address, naming both", () => {
    const prefix = "must be an IP address or CIDR range: the prefix";
    assert.equal(parseError("1.2.3.4/33"), `${prefix} /33 is longer than 32 bits`);
    assert.equal(parseError("::/129"), `${prefix} /129 is longer than 128 bits`);
  });

  it("refuses host bits after the prefix, suggesting the network", () => {
    const cases: [string, string][] = [
      ["10.1.2.3/24", "10.1.2.0/24"],
      ["10.1.2.3/0", "0.0.0.0/0"],
      ["2001:db8::1/32", "2001:db8::/32"],
      ["2001:db8:ffff::/33", "2001:db8:8000::/33"],
    ];
    for (const [text, network] of cases) {
      const bits = text.slice(text.indexOf("/"));
      assert.equal(
        parseError(text),
        `has bits set after the ${bits} prefix (did you mean ${network}?)`,
      );
    }
  });

  it("refuses what is not an address, saying what is wrong and never echoing it", () => {
    const cases: [string, RegExp][] = [
      ["", /the address is empty/],
      ["/8", /the address is empty/],
      ["010.0.0.1", /four numbers 0 to 255 without leading zeros/],
      ["256.0.0.1", /four numbers/],
      ["1.2.3", /four numbers/],
      ["1.2.3.4.5", /four numbers/],
      ["example.com", /neither IPv4 nor IPv6/],
      ["1::2::3", /neither IPv4 nor IPv6/],
      ["1:2:3:4:5:6:7:8:9", /neither/],
      ["1:2:3:4:5:6:7:8::", /neither/],
      ["1:2:3:4:5:6::1.2.3.4", /neither/],
      ["1:2:3:4:5:1.2.3.4", /neither/],
      ["12345::", /neither/],
      [" 10.0.0.0/8", /neither/],
      ["fe80::1%eth0", /zone id/],
      ["10.0.0.0/", /the prefix after \/ must be a number of bits/],
      ["10.0.0.0/08", /number of bits/],
      ["10.0.0.0/-1", /number of bits/],
      ["10.0.0.0/8/8", /number of bits/],
      ["10.0.0.0/ 8", /number of bits/],
    ];
    for (const [text, message] of cases) {
      const error = parseError(text);
      assert.match(error, message, text);
      assert.match(error, /^must be an IP address or CIDR range/, text);
      if (text.trim() !== "") assert.ok(!error.includes(text.trim()), `${error} repeats ${text}`);
    }
  });
});

describe("CidrSet", () => {
  it("matches addresses inside its IPv4 ranges and only those", () => {
    const ranges = set("10.0.0.0/8", "192.168.1.7", "172.16.0.0/12");
    assert.equal(ranges.size, 3);
    for (const inside of ["10.0.0.0", "10.255.255.255", "192.168.1.7", "172.31.0.1"]) {
      assert.equal(ranges.has(inside), true, inside);
    }
    for (
      const outside of ["9.255.255.255", "11.0.0.0", "192.168.1.6", "192.168.1.8", "172.32.0.0"]
    ) {
      assert.equal(ranges.has(outside), false, outside);
    }
  });

  it("matches the edges of overlapping and adjacent IPv4 ranges", () => {
    const ranges = set("10.0.0.0/9", "10.0.0.0/8", "11.0.0.0/8", "255.255.255.255", "0.0.0.0");
    for (const inside of ["10.128.0.0", "11.255.255.255", "255.255.255.255", "0.0.0.0"]) {
      assert.equal(ranges.has(inside), true, inside);
    }
    for (const outside of ["9.255.255.255", "12.0.0.0", "255.255.255.254", "0.0.0.1"]) {
      assert.equal(ranges.has(outside), false, outside);
    }
    assert.equal(set("0.0.0.0/0").has("203.0.113.9"), true);
  });

  it("matches IPv6 addresses in any text form, ignoring a zone id", () => {
    const ranges = set("2001:db8::/32", "::1", "fe80::/10");
    for (
      const inside of [
        "2001:db8::1",
        "2001:DB8:ffff::",
        "::1",
        "0:0:0:0:0:0:0:1",
        "fe80::1%eth0",
        "febf::",
      ]
    ) {
      assert.equal(ranges.has(inside), true, inside);
    }
    for (const outside of ["2001:db9::", "::2", "fec0::", "::", "10.0.0.1"]) {
      assert.equal(ranges.has(outside), false, outside);
    }
  });

  it("matches an IPv4-mapped address as its IPv4 form, and the reverse", () => {
    const ranges = set("10.0.0.0/8", "::ffff:192.168.0.0/112");
    assert.equal(ranges.has("::ffff:10.1.2.3"), true);
    assert.equal(ranges.has("::FFFF:a01:203"), true);
    assert.equal(ranges.has("192.168.4.5"), true);
    assert.equal(ranges.has("::ffff:11.1.2.3"), false);
    // Not mapped: the IPv4-compatible form and NAT64 are other addresses.
    assert.equal(ranges.has("::10.1.2.3"), false);
    assert.equal(ranges.has("64:ff9b::10.1.2.3"), false);
  });

  it("lets an IPv6 range that holds ::ffff:0:0/96 hold every IPv4 address", () => {
    assert.equal(set("::/0").has("198.51.100.1"), true);
    assert.equal(set("::/0").has("::ffff:198.51.100.1"), true);
    assert.equal(set("::fffe:0:0/95").has("1.2.3.4"), true);
    assert.equal(set("2001:db8::/32").has("1.2.3.4"), false);
    assert.equal(set("::/96").has("1.2.3.4"), false);
  });

  it("answers false for anything that is not an IP literal", () => {
    const ranges = set("0.0.0.0/0", "::/0");
    for (
      const text of [
        "",
        "/run/lb.sock",
        "localhost",
        "1.2.3",
        "01.2.3.4",
        "::1::",
        "1.2.3.4%eth0",
        " ::1",
      ]
    ) {
      assert.equal(ranges.has(text), false, text);
    }
  });

  it("matches nothing when empty", () => {
    const empty = new CidrSet([]);
    assert.equal(empty.size, 0);
    assert.equal(empty.has("127.0.0.1"), false);
    assert.equal(empty.has("::1"), false);
  });

  it("answers a million lookups quickly", () => {
    const ranges = new CidrSet(
      Array.from({ length: 200 }, (_, i) => parseCidr(`10.${i}.0.0/16`)).concat(
        parseCidr("2001:db8::/32"),
      ),
    );
    const started = performance.now();
    let hits = 0;
    for (let i = 0; i < 1_000_000; i++) {
      if (ranges.has(i % 2 === 0 ? "10.150.3.4" : "2001:db8::7")) hits++;
    }
    const elapsed = performance.now() - started;
    assert.equal(hits, 1_000_000);
    assert.ok(elapsed < 1500, `a million lookups took ${elapsed.toFixed(0)}ms`);
  });
});

describe("unmapIpv4", () => {
  it("gives the IPv4 form of an IPv4-mapped address, in either text form", () => {
    assert.equal(unmapIpv4("::ffff:1.2.3.4"), "1.2.3.4");
    assert.equal(unmapIpv4("::FFFF:1.2.3.4"), "1.2.3.4");
    assert.equal(unmapIpv4("::ffff:7f00:1"), "127.0.0.1");
    assert.equal(unmapIpv4("0:0:0:0:0:ffff:a00:1"), "10.0.0.1");
  });

  it("leaves every other text as it is", () => {
    for (
      const text of [
        "1.2.3.4",
        "::1",
        "2001:db8::1",
        "::1.2.3.4",
        "fe80::1%eth0",
        "",
        "not an address",
      ]
    ) {
      assert.equal(unmapIpv4(text), text);
    }
  });
});
