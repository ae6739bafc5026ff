import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Facts } from "../../../src/protocol/detect.ts";
import {
  choose,
  type Matcher,
  protocolOf,
  ties,
  wantedBy,
} from "../../../src/protocol/matchers.ts";

const FALLBACK: Matcher = {};

const tls = (serverName?: string, alpn?: string[]): Facts => ({
  protocol: "tls",
  ...(serverName === undefined ? {} : { serverName }),
  ...(alpn === undefined ? {} : { alpn }),
});

const http = (httpHost?: string): Facts => ({
  protocol: "http",
  ...(httpHost === undefined ? {} : { httpHost }),
});

describe("protocolOf and wantedBy", () => {
  it("takes the explicit protocol, else tls for sni/alpn, http for http_host, else the fallback", () => {
    assert.equal(protocolOf({ protocol: "ssh" }), "ssh");
    assert.equal(protocolOf({ sni: ["a.test"] }), "tls");
    assert.equal(protocolOf({ alpn: ["h2"] }), "tls");
    assert.equal(protocolOf({ httpHost: ["h.test"] }), "http");
    assert.equal(protocolOf({ protocol: "tls", sni: ["a.test"] }), "tls");
    assert.equal(protocolOf(FALLBACK), undefined);
  });

  it("asks for what the matchers need, HTTP to the Host only when some lists http_host", () => {
    assert.deepEqual(wantedBy([FALLBACK]), { tls: false, http: "no", ssh: false, postgres: false });
    assert.deepEqual(wantedBy([{ sni: ["a"] }, { protocol: "http" }, FALLBACK]), {
      tls: true,
      http: "line",
      ssh: false,
      postgres: false,
    });
    assert.deepEqual(
      wantedBy([{ protocol: "ssh" }, { protocol: "postgres" }, { protocol: "http" }, {
        httpHost: ["h"],
      }]),
      { tls: false, http: "host", ssh: true, postgres: true },
    );
    assert.deepEqual(wantedBy([{ alpn: ["h2"] }]).tls, true);
  });
});

describe("choose, TLS", () => {
  // The table of the issue, most specific first; each row must beat every row below it.
  const ROWS: [string, Matcher][] = [
    ["sni exact + alpn", { sni: ["a.example.com"], alpn: ["h2"] }],
    ["sni exact", { sni: ["a.example.com"] }],
    ["longer sni wildcard + alpn", { sni: ["*.example.com", "*.x.example.com"], alpn: ["h2"] }],
    ["longer sni wildcard", { sni: ["*.x.example.com"] }],
    ["sni wildcard + alpn", { sni: ["*.example.com"], alpn: ["h2"] }],
    ["sni wildcard", { sni: ["*.example.com"] }],
    ["alpn", { alpn: ["h2"] }],
    ['protocol = "tls"', { protocol: "tls" }],
  ];

  it("follows the precedence table row by row, whatever the config order", () => {
    for (
      const [name, facts] of [["a.example.com", "exact"], ["b.x.example.com", "wildcard"]] as const
    ) {
      // a.example.com is under no longer wildcard; b.x.example.com matches no exact name.
      const rows = ROWS.filter(([label]) =>
        !label.startsWith(facts === "exact" ? "longer" : "sni exact")
      );
      for (let k = 0; k < rows.length; k++) {
        const candidates = [FALLBACK, ...rows.slice(k).map(([, m]) => m).reverse()];
        const chosen = choose(candidates, tls(name, ["h2"]));
        assert.equal(chosen, candidates.length - 1, `${name}: ${rows[k]![0]} should win`);
      }
    }
  });

  it("lets a longer wildcard without alpn beat a shorter one with alpn", () => {
    const matchers: Matcher[] = [{ sni: ["*.example.com"], alpn: ["h2"] }, {
      sni: ["*.a.example.com"],
    }];
    assert.equal(choose(matchers, tls("x.a.example.com", ["h2"])), 1);
    assert.equal(choose(matchers, tls("x.b.example.com", ["h2"])), 0);
  });

  it("decides between alpn lists at one level by the client's preference order", () => {
    const matchers: Matcher[] = [
      FALLBACK,
      { sni: ["a.test"], alpn: ["h2"] },
      { sni: ["a.test"], alpn: ["http/1.1", "spdy/3"] },
      { sni: ["a.test"] },
    ];
    assert.equal(choose(matchers, tls("a.test", ["h2", "http/1.1"])), 1);
    assert.equal(choose(matchers, tls("a.test", ["http/1.1", "h2"])), 2);
    assert.equal(choose(matchers, tls("a.test", ["x", "spdy/3", "h2"])), 2);
    assert.equal(
      choose(matchers, tls("a.test", ["h3"])),
      3,
      "no alpn match: the frontend without alpn",
    );
    assert.equal(choose(matchers, tls("a.test")), 3, "no ALPN extension");
    assert.equal(choose(matchers, tls("b.test", ["h2"])), 0, "unknown name: the fallback");
    assert.equal(
      choose(matchers.slice(1, 3), tls("a.test", ["h3"])),
      undefined,
      "nothing and no fallback",
    );
    // ALPN names are bytes: compared exactly.
    assert.equal(choose(matchers, tls("a.test", ["H2"])), 3);
  });

  it("compares server names lowercase and matches wildcards below their domain only", () => {
    const matchers: Matcher[] = [{ sni: ["A.Example.COM"] }, { sni: ["*.Example.com"] }, FALLBACK];
    assert.equal(choose(matchers, tls("a.example.com")), 0);
    assert.equal(choose(matchers, tls("A.EXAMPLE.COM")), 0);
    assert.equal(choose(matchers, tls("b.c.example.com")), 1);
    assert.equal(choose(matchers, tls("example.com")), 2);
    assert.equal(choose(matchers, tls(undefined)), 2, "no SNI: no sni frontend");
  });
});

describe("choose, other protocols", () => {
  it("orders HTTP by http_host exact, longer wildcard, shorter wildcard, protocol = http", () => {
    const matchers: Matcher[] = [
      FALLBACK,
      { protocol: "http" },
      { httpHost: ["*.test"] },
      { httpHost: ["*.h.test"] },
      { httpHost: ["H.test", "x.test"] },
    ];
    assert.equal(choose(matchers, http("h.test")), 4);
    assert.equal(choose(matchers, http("a.h.test")), 3);
    assert.equal(choose(matchers, http("a.test")), 2);
    assert.equal(choose(matchers, http("other.example")), 1);
    assert.equal(choose(matchers, http(undefined)), 1, "no Host: protocol = http");
    assert.equal(choose(matchers.slice(2), http(undefined)), undefined);
  });

  it("gives ssh and postgres to their protocol, anything else to the fallback", () => {
    const matchers: Matcher[] = [{ protocol: "ssh" }, FALLBACK, { protocol: "postgres" }, {
      sni: ["a"],
    }];
    assert.equal(choose(matchers, { protocol: "ssh" }), 0);
    assert.equal(choose(matchers, { protocol: "postgres" }), 2);
    assert.equal(choose(matchers, { protocol: undefined, reason: "garbage" }), 1);
    assert.equal(choose(matchers, http("a")), 1, "http: no http frontend");
    assert.equal(choose([{ protocol: "ssh" }], { protocol: "postgres" }), undefined);
    assert.equal(choose([], { protocol: "ssh" }), undefined);
    // Keys of another protocol never match.
    assert.equal(choose([{ protocol: "http", sni: ["a"] }, FALLBACK], http("a")), 1);
  });
});

describe("ties", () => {
  const TIES: [string, Matcher, Matcher, RegExp][] = [
    ["two fallbacks", FALLBACK, FALLBACK, /both are fallbacks/],
    [
      "the same exact name",
      { sni: ["a.test", "b.test"] },
      { sni: ["B.TEST"] },
      /sni "b.test" without alpn/,
    ],
    [
      "the same wildcard",
      { sni: ["*.a.test"] },
      { sni: ["x.test", "*.a.test"] },
      /sni "\*.a.test"/,
    ],
    [
      "the same name sharing an alpn name",
      { sni: ["a.test"], alpn: ["h2", "http/1.1"] },
      { sni: ["a.test"], alpn: ["http/1.1"] },
      /sni "a.test" with alpn "http\/1.1"/,
    ],
    ["alpn-only sharing a name", { alpn: ["h2"] }, { alpn: ["h3", "h2"] }, /alpn "h2" without sni/],
    ['two protocol = "tls"', { protocol: "tls" }, { protocol: "tls" }, /every tls connection/],
    ['two protocol = "ssh"', { protocol: "ssh" }, { protocol: "ssh" }, /every ssh connection/],
    [
      'two protocol = "postgres"',
      { protocol: "postgres" },
      { protocol: "postgres" },
      /every postgres/,
    ],
    ['two protocol = "http"', { protocol: "http" }, { protocol: "http" }, /every http connection/],
    [
      "the same http_host",
      { httpHost: ["h.test"] },
      { httpHost: ["H.Test"] },
      /http_host "h.test"/,
    ],
    [
      "the same http_host wildcard",
      { httpHost: ["*.h"] },
      { httpHost: ["*.h"] },
      /http_host "\*.h"/,
    ],
  ];

  const NOT_TIES: [string, Matcher, Matcher][] = [
    ["different alpn lists", { sni: ["a.test"], alpn: ["h2"] }, {
      sni: ["a.test"],
      alpn: ["http/1.1"],
    }],
    ["alpn-only without a shared name", { alpn: ["h2"] }, { alpn: ["http/1.1"] }],
    ["one with alpn, one without", { sni: ["a.test"], alpn: ["h2"] }, { sni: ["a.test"] }],
    ["exact and wildcard", { sni: ["a.test"] }, { sni: ["*.test"] }],
    ["different wildcards", { sni: ["*.a.test"] }, { sni: ["*.test"] }],
    ["different names", { sni: ["a.test"] }, { sni: ["b.test"] }],
    ["sni and alpn-only", { sni: ["a.test"] }, { alpn: ["h2"] }],
    ['alpn and protocol = "tls"', { alpn: ["h2"] }, { protocol: "tls" }],
    ['sni and protocol = "tls"', { sni: ["a.test"] }, { protocol: "tls" }],
    ["different protocols", { protocol: "ssh" }, { protocol: "postgres" }],
    ["a protocol and the fallback", { protocol: "ssh" }, FALLBACK],
    ['http_host and protocol = "http"', { httpHost: ["h"] }, { protocol: "http" }],
    ["different http_host", { httpHost: ["h", "*.h"] }, { httpHost: ["g", "*.g"] }],
    ["sni and http_host with one name", { sni: ["h"] }, { httpHost: ["h"] }],
  ];

  it("names each pair that would take some connection equally, with why", () => {
    for (const [label, a, b, why] of TIES) {
      const found = ties([a, { protocol: "ssh", sni: undefined }, b]);
      const pair = found.find(([i, j]) => i === 0 && j === 2);
      assert.ok(pair !== undefined, `${label}: ${JSON.stringify(found)}`);
      assert.match(pair[2], why, label);
    }
  });

  it("finds no tie where the table or the client's ALPN order decides", () => {
    for (const [label, a, b] of NOT_TIES) {
      assert.deepEqual(ties([a, b]), [], label);
      assert.deepEqual(ties([b, a]), [], label);
    }
  });

  it("accepts the issue's one-port example", () => {
    const matchers: Matcher[] = [
      { protocol: "ssh" },
      { sni: ["a.test"], alpn: ["h2"] },
      { sni: ["a.test"], alpn: ["http/1.1"] },
      { httpHost: ["h.test"] },
      { protocol: "postgres" },
      FALLBACK,
    ];
    assert.deepEqual(ties(matchers), []);
    assert.deepEqual(wantedBy(matchers), { tls: true, http: "host", ssh: true, postgres: true });
  });
});
