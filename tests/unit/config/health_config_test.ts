import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  formatHttpStatus,
  parseHttpStatus,
  statusAccepted,
} from "../../../src/config/http_status.ts";
import { parseConfig } from "../../../src/config/load.ts";
import { summarizeConfig } from "../../../src/config/summary.ts";

const config = (health: string) =>
  '[frontend]\nbind_on = "127.0.0.1:1"\n[frontend.health]\n' + health +
  '\n[[frontend.backend]]\nforward_to = "db1:5432"\n';

describe("http_status", () => {
  it("parseHttpStatus reads a code, a range and a list of them", () => {
    assert.deepEqual(parseHttpStatus("200"), [{ from: 200, to: 200 }]);
    assert.deepEqual(parseHttpStatus("200-399"), [{ from: 200, to: 399 }]);
    const list = parseHttpStatus(["200", "204-206"]);
    assert.deepEqual(list, [{ from: 200, to: 200 }, { from: 204, to: 206 }]);
    assert.equal(formatHttpStatus(list), "200, 204-206");
    assert.equal(statusAccepted(list, 200), true);
    assert.equal(statusAccepted(list, 205), true);
    assert.equal(statusAccepted(list, 203), false);
    assert.equal(statusAccepted(list, 503), false);
  });

  it("parseHttpStatus refuses what is not a code or a range, naming it", () => {
    assert.throws(() => parseHttpStatus("600"), /from 100 to 599.*"600" is not/);
    assert.throws(() => parseHttpStatus("2xx"), /"2xx" is not/);
    assert.throws(() => parseHttpStatus("300-200"), /from low to high: "300-200"/);
    assert.throws(() => parseHttpStatus("200-"), /"" is not/);
    assert.throws(() => parseHttpStatus([]), /at least one/);
  });
});

describe("[frontend.health] HTTP keys", () => {
  it("reads http_path, http_method, http_host, http_status, port, tls and on_down", () => {
    const health = parseConfig(config(
      'http_path = "/primary"\nhttp_method = "HEAD"\nhttp_host = "db.internal"\n' +
        'http_status = ["200", "204-206"]\nport = 8008\ntls = false\n' +
        'on_down = "close_sessions"',
    )).frontends[0]!.health;
    assert.deepEqual(health.http, {
      path: "/primary",
      method: "HEAD",
      host: "db.internal",
      status: [{ from: 200, to: 200 }, { from: 204, to: 206 }],
    });
    assert.equal(health.port, 8008);
    assert.equal(health.tls, false);
    assert.equal(health.onDown, "close_sessions");
  });

  it("defaults: GET, 200-399, the backend's own port, no TLS, keep", () => {
    const health = parseConfig(config('http_path = "/healthz"')).frontends[0]!.health;
    assert.deepEqual(health.http, {
      path: "/healthz",
      method: "GET",
      host: undefined,
      status: [{ from: 200, to: 399 }],
    });
    assert.equal(health.port, undefined);
    assert.equal(health.tls ?? false, false);
    assert.equal(health.onDown ?? "keep", "keep");
  });

  it("refuses wrong values and conflicts with one line naming the key", () => {
    const cases: [string, RegExp][] = [
      ['http_path = "healthz"', /frontend\.health\.http_path must be a path starting with "\/"/],
      ['http_path = "/a b"', /frontend\.health\.http_path must be a path/],
      [
        'http_path = "/"\nhttp_method = "GE T"',
        /frontend\.health\.http_method must be an HTTP method/,
      ],
      ['http_path = "/"\nhttp_host = "a\\nb"', /frontend\.health\.http_host must be a host name/],
      [
        'http_path = "/"\nhttp_status = "600"',
        /frontend\.health\.http_status must be a status code/,
      ],
      [
        'http_path = "/"\nhttp_status = 200',
        /frontend\.health\.http_status must be a status code or range/,
      ],
      ['http_status = "200"', /frontend\.health\.http_status needs http_path/],
      ['http_path = "/"\nexpect = "OK"', /frontend\.health\.expect cannot be used with http_path/],
      ["port = 70000", /frontend\.health\.port must be a whole number from 1 to 65535/],
      ["tls_verify = true", /frontend\.health\.tls_verify needs tls = true/],
      ['on_down = "close"', /frontend\.health\.on_down must be one of keep, close_sessions/],
    ];
    for (const [health, message] of cases) {
      assert.throws(() => parseConfig(config(health), "h.toml"), (error: Error) => {
        assert.match(error.message, /^Cannot load config "h.toml": /);
        assert.match(error.message, message);
        assert.equal(error.message.includes("\n"), false, error.message);
        return true;
      });
    }
  });

  it("takes tls and tls_verify, and check says the probes speak TLS", () => {
    const parsed = parseConfig(config('http_path = "/primary"\ntls = true\ntls_verify = true'));
    const health = parsed.frontends[0]!.health;
    assert.equal(health.tls, true);
    assert.equal(health.tlsVerify, true);
    assert.match(summarizeConfig(parsed)[0]!, /over TLS \(certificate verified\)/);
  });

  it("check shows what the probes ask and on_down", () => {
    const lines = summarizeConfig(parseConfig(config(
      'http_path = "/primary"\nport = 8008\non_down = "close_sessions"',
    )));
    assert.match(
      lines[0]!,
      /active health checks: HTTP GET \/primary up on 200-399 on port 8008; a backend marked down has its connections closed$/,
    );
  });
});
