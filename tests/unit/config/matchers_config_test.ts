/**
 * The keys that tell frontends on one address apart by the client's first
 * bytes (`protocol`, `sni`, `alpn`, `http_host`, `detect_timeout` on the
 * fallback): what they read as, what they imply, the pairs that cannot
 * stand together, and what `check` prints of them.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseConfig } from "../../../src/config/load.ts";
import { summarizeConfig } from "../../../src/config/summary.ts";

/** Frontends on 127.0.0.1:443, named a, b, c…, each with its keys. */
function onePort(...keys: string[]): string {
  return keys.map((text, i) =>
    `[[frontends]]\nname = "${String.fromCharCode(97 + i)}"\nbind_on = "127.0.0.1:443"\n${text}\n` +
    `[[frontends.backend]]\nforward_to = "127.0.0.1:${2 + i}"\n`
  ).join("");
}

function fails(text: string, message: string): void {
  assert.throws(() => parseConfig(text), { message: `Cannot load config "<config>": ${message}` });
}

describe("protocol, alpn, http_host and detect_timeout", () => {
  it("read as written, with the protocol sni, alpn and http_host imply", () => {
    const config = parseConfig(onePort(
      'protocol = "ssh"',
      'sni = ["A.test"]\nalpn = ["h2"]',
      'alpn = ["http/1.1"]',
      'http_host = ["Example.com", "*.example.com"]',
      'protocol = "postgres"',
      'detect_timeout = "300ms"',
    ));
    const got = config.frontends.map((f) => [f.protocol, f.sni, f.alpn, f.httpHost]);
    assert.deepEqual(got, [
      ["ssh", undefined, undefined, undefined],
      ["tls", ["a.test"], ["h2"], undefined],
      ["tls", undefined, ["http/1.1"], undefined],
      ["http", undefined, undefined, ["example.com", "*.example.com"]],
      ["postgres", undefined, undefined, undefined],
      [undefined, undefined, undefined, undefined],
    ]);
    assert.deepEqual(config.frontends.map((f) => f.detectTimeoutMs), [
      ...Array(5).fill(undefined),
      300,
    ]);
  });

  it("reject values that are not a protocol, an ALPN name or a host name", () => {
    fails(
      onePort('protocol = "smtp"'),
      'frontends[0].protocol must be one of tls, http, ssh, postgres: current value is "smtp"',
    );
    fails(
      onePort("alpn = []"),
      "frontends[0].alpn must list at least one protocol name",
    );
    fails(
      onePort('alpn = ["h 2"]'),
      'frontends[0].alpn[0] must be an ALPN protocol name such as "h2": current value is "h 2"',
    );
    fails(
      onePort('http_host = ["exa mple.com"]'),
      'frontends[0].http_host[0] must be a server name such as "api.example.com" or "*.example.com": current value is "exa mple.com"',
    );
  });

  it("reject keys that contradict each other, naming the key", () => {
    fails(
      onePort('protocol = "ssh"\nsni = ["a.test"]'),
      'frontends[0].protocol is "ssh", but sni takes TLS clients only: use protocol = "tls" or leave it out',
    );
    fails(
      onePort('protocol = "tls"\nhttp_host = ["a.test"]'),
      'frontends[0].protocol is "tls", but http_host takes HTTP clients only: use protocol = "http" or leave it out',
    );
    fails(
      onePort('alpn = ["h2"]\nhttp_host = ["a.test"]'),
      "frontends[0].http_host cannot stand beside alpn: alpn takes TLS clients, http_host plain HTTP ones",
    );
    fails(
      onePort('protocol = "http"\ntls = { cert = "c.pem", key = "k.pem" }'),
      'frontends[0].protocol is "http", but tls terminates TLS: a terminating frontend takes TLS clients only',
    );
    fails(
      onePort('alpn = ["h2"]\ntls = { cert = "c.pem", key = "k.pem" }'),
      "frontends[0].alpn cannot stand beside tls: alpn routes TLS through untouched, tls terminates it",
    );
  });

  it("take detect_timeout on the fallback only, shorter than header_timeout", () => {
    fails(
      onePort('protocol = "ssh"\ndetect_timeout = "1s"', ""),
      "frontends[0].detect_timeout applies to the fallback only (the frontend without protocol, " +
        "sni, alpn or http_host), which takes the clients that stay silent",
    );
    fails(
      onePort('protocol = "ssh"', 'detect_timeout = "2s"\nheader_timeout = "2s"'),
      "frontends[1].detect_timeout must be shorter than header_timeout (2000ms): current value is 2000ms",
    );
  });

  it("reject two frontends that would take the same connection, naming both", () => {
    const tie = (path: string, other: string, why: string) =>
      `${path} would take the same connections as frontends[0] ("${other}"), which shares its address "127.0.0.1:443": ${why}`;
    fails(
      onePort('protocol = "ssh"', 'protocol = "ssh"'),
      tie("frontends[1].protocol", "a", 'both take every ssh connection (protocol = "ssh" alone)'),
    );
    fails(
      onePort('http_host = ["*.a.test", "b.test"]', 'http_host = ["B.test"]'),
      tie("frontends[1].http_host", "a", 'both list http_host "b.test"'),
    );
    fails(
      onePort('alpn = ["h2", "http/1.1"]', 'alpn = ["http/1.1"]'),
      tie("frontends[1].alpn", "a", 'both list alpn "http/1.1" without sni'),
    );
    fails(
      onePort('sni = ["a.test"]\nalpn = ["h2"]', 'sni = ["a.test"]\nalpn = ["h2"]'),
      tie("frontends[1].sni", "a", 'both list sni "a.test" with alpn "h2"'),
    );
  });

  it("let different levels and different ALPN names share an address", () => {
    const config = parseConfig(onePort(
      'sni = ["a.test"]\nalpn = ["h2"]',
      'sni = ["a.test"]',
      'sni = ["*.test"]',
      'alpn = ["h2"]',
      'alpn = ["http/1.1"]',
      'protocol = "tls"',
      'http_host = ["a.test"]',
      'http_host = ["*.a.test"]',
      'protocol = "http"',
      'protocol = "ssh"',
      'protocol = "postgres"',
      'detect_timeout = "300ms"',
    ));
    assert.equal(config.frontends.length, 12);
  });

  it("are printed by check: each shared address with what each frontend takes", () => {
    const lines = summarizeConfig(parseConfig(onePort(
      'protocol = "ssh"',
      'sni = ["a.test"]\nalpn = ["h2"]',
      'http_host = ["h.test"]',
      'detect_timeout = "300ms"',
    )));
    assert.equal(
      lines[0],
      'address 127.0.0.1:443 is shared by 4 frontends, chosen by the first bytes: "a" takes ssh; ' +
        '"b" takes TLS for a.test offering ALPN h2; "c" takes HTTP for Host h.test; ' +
        '"d" takes what no other frontend on its address takes, and clients silent for 300ms',
    );
    assert.ok(lines.includes("  takes ssh"), lines.join("\n"));
  });
});
