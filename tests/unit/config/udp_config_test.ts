import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import * as packet from "dns-packet";
import { Buffer } from "node:buffer";
import { writeFile } from "node:fs/promises";
import { main } from "../../../src/cli/main.ts";
import { formatBindAddress, parseAddress, parseBindAddress } from "../../../src/address/address.ts";
import { loadConfig, parseConfig } from "../../../src/config/load.ts";
import { summarizeConfig } from "../../../src/config/summary.ts";
import { net, ROOT, tempDir } from "../../_helpers/index.ts";

/** `mini-balancer check -c FILE`, as the CLI runs it. */
async function check(file: string) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(["check", "-c", file], {
    net,
    onShutdownSignal: () => () => {},
    stdout: (line) => out.push(line),
    stderr: (line) => err.push(line),
  });
  return { code, out, err };
}

/** A config of one UDP frontend: `keys` go in [frontend], `backend` in its one backend. */
function udp(keys = "", backend = "", bind = "udp:127.0.0.1:5353"): string {
  return `[frontend]\nbind_on = "${bind}"\n${keys}\n` +
    `[[frontend.backend]]\nforward_to = "127.0.0.1:5300"\n${backend}\n`;
}

/** Asserts the config fails with exactly this one line. */
function fails(text: string, message: string): void {
  assert.throws(() => parseConfig(text, "lb.toml"), {
    name: "ConfigError",
    message: `Cannot load config "lb.toml": ${message}`,
  });
}

describe('bind_on = "udp:HOST:PORT"', () => {
  it("makes a UDP frontend on IPv4, bracketed IPv6, a host name and port 0", () => {
    const cases: [string, string, number][] = [
      ["udp:127.0.0.1:5353", "127.0.0.1", 5353],
      ["udp:[::1]:53", "::1", 53],
      ["udp:localhost:5353", "localhost", 5353],
      ["udp:0.0.0.0:0", "0.0.0.0", 0],
    ];
    for (const [bind, hostname, port] of cases) {
      const frontend = parseConfig(udp("", "", bind)).frontends[0]!;
      assert.equal(frontend.transport, "udp", bind);
      assert.deepEqual(frontend.bindOn, { hostname, port }, bind);
      assert.equal(formatBindAddress(frontend.bindOn, frontend.transport), bind);
    }
  });

  it("leaves a TCP frontend as it was: transport tcp, no idle_timeout, no responses", () => {
    const frontend = parseConfig(udp("", "", "127.0.0.1:5353")).frontends[0]!;
    assert.equal(frontend.transport, "tcp");
    assert.equal(frontend.idleTimeoutMs, undefined);
    assert.equal(frontend.responses, undefined);
    assert.equal(frontend.health.udp, undefined);
    assert.equal(formatBindAddress(frontend.bindOn, "tcp"), "127.0.0.1:5353");
  });

  it("parseBindAddress reads the prefix, parseAddress refuses it", () => {
    assert.deepEqual(parseBindAddress("udp:10.0.0.1:53"), {
      transport: "udp",
      endpoint: { hostname: "10.0.0.1", port: 53 },
    });
    assert.deepEqual(parseBindAddress("10.0.0.1:53"), {
      transport: "tcp",
      endpoint: { hostname: "10.0.0.1", port: 53 },
    });
    assert.throws(() => parseBindAddress("udp:10.0.0.1:0"), {
      name: "RangeError",
      message: "must be udp:host:port: the port must be between 1 and 65535",
    });
    assert.throws(() => parseAddress("udp:10.0.0.1:53"), {
      name: "TypeError",
      message: 'must be host:port: "udp:" is written on a frontend\'s bind_on only',
    });
  });

  it("refuses udp:unix:, a missing port, a bad port and a URL in one line", () => {
    fails(
      udp("", "", "udp:unix:/run/dns.sock"),
      'frontend.bind_on must be udp:host:port: UDP is not served on Unix sockets: current value is "udp:unix:/run/dns.sock"',
    );
    fails(
      udp("", "", "udp:127.0.0.1"),
      'frontend.bind_on must be udp:host:port: current value is "udp:127.0.0.1"',
    );
    fails(
      udp("", "", "udp:127.0.0.1:70000"),
      'frontend.bind_on must be udp:host:port: the port must be between 0 and 65535: current value is "udp:127.0.0.1:70000"',
    );
    fails(
      udp("", "", "udp:::1:53"),
      'frontend.bind_on must be udp:host:port: an IPv6 address needs brackets, as in [::1]:7070: current value is "udp:::1:53"',
    );
    fails(
      udp("", "", "udp://127.0.0.1:53"),
      'frontend.bind_on must be host:port without a scheme: current value is "udp://127.0.0.1:53"',
    );
  });

  it("refuses udp: on admin.bind_on and on a backend's forward_to", () => {
    fails(
      `[admin]\nbind_on = "udp:127.0.0.1:9901"\n${udp()}`,
      'admin.bind_on must be host:port: "udp:" is written on a frontend\'s bind_on only: current value is "udp:127.0.0.1:9901"',
    );
    fails(
      `[frontend]\nbind_on = "udp:127.0.0.1:53"\n[[frontend.backend]]\nforward_to = "udp:127.0.0.2:53"\n`,
      'frontend.backend[0].forward_to must be host:port: "udp:" is written on a frontend\'s bind_on only: current value is "udp:127.0.0.2:53"',
    );
  });

  it("takes host names and discover for backends, and refuses a unix: backend", () => {
    const named = parseConfig(
      '[frontend]\nbind_on = "udp:127.0.0.1:53"\ndiscover = "srv:_dns._udp.example"\n' +
        '[[frontend.backend]]\nforward_to = "dns.internal:53"\n',
    ).frontends[0]!;
    assert.equal(named.discover, "_dns._udp.example");
    assert.equal(named.backends[0]!.forwardTo.hostname, "dns.internal");
    fails(
      '[frontend]\nbind_on = "udp:127.0.0.1:53"\n[[frontend.backend]]\nforward_to = "127.0.0.2:53"\n' +
        '[[frontend.backend]]\nforward_to = "unix:/run/dns.sock"\n',
      "frontend.backend[1].forward_to must be host:port on a UDP frontend (UDP is not forwarded to " +
        'Unix sockets): current value is "unix:/run/dns.sock"',
    );
  });
});

describe("responses and idle_timeout", () => {
  it("reads responses, and idle_timeout defaults to 30s on UDP only", () => {
    const dns = parseConfig(udp("responses = 1")).frontends[0]!;
    assert.equal(dns.responses, 1);
    assert.equal(dns.idleTimeoutMs, 30_000);
    const quiet = parseConfig(udp('idle_timeout = "5s"\nresponses = 3')).frontends[0]!;
    assert.equal(quiet.idleTimeoutMs, 5_000);
    assert.equal(quiet.responses, 3);
    assert.equal(parseConfig(udp()).frontends[0]!.responses, undefined);
  });

  it("refuses responses below 1, not whole, or on a TCP frontend", () => {
    fails(
      udp("responses = 0"),
      "frontend.responses must be a whole number from 1 to 1000000: current value is 0",
    );
    fails(
      udp("responses = 1.5"),
      "frontend.responses must be a whole number from 1 to 1000000: current value is 1.5",
    );
    fails(
      udp('responses = "1"'),
      'frontend.responses must be a whole number: current value is "1"',
    );
    fails(
      udp("responses = 1", "", "127.0.0.1:53"),
      'frontend.responses applies to UDP frontends only (bind_on = "udp:HOST:PORT"): bind_on is "127.0.0.1:53"',
    );
  });
});

describe("keys that act on TCP connections only", () => {
  const FIRST_BYTES = "a UDP address is one frontend's: there are no first bytes to choose by";
  const cases: [string, string, string][] = [
    ['tls = { cert = "c.pem", key = "k.pem" }', "tls", "TLS runs over TCP"],
    ['sni = ["a.example"]', "sni", FIRST_BYTES],
    ['alpn = ["h2"]', "alpn", FIRST_BYTES],
    ['protocol = "http"', "protocol", FIRST_BYTES],
    ['http_host = ["a.example"]', "http_host", FIRST_BYTES],
    ['detect_timeout = "1s"', "detect_timeout", FIRST_BYTES],
    ["accept_proxy = true", "accept_proxy", "there is no PROXY protocol over UDP"],
    ['trusted = ["10.0.0.0/8"]', "trusted", "there is no PROXY protocol over UDP"],
    [
      'header_timeout = "2s"',
      "header_timeout",
      "a flow reads nothing before its backend is chosen",
    ],
    ['unix_mode = "0660"', "unix_mode", "UDP is not served on Unix sockets"],
    ['max_bytes_per_second = "1MiB"', "max_bytes_per_second", "a flow's datagrams are not paced"],
    [
      'queue_timeout = "1s"',
      "queue_timeout",
      "a flow never waits: a datagram that would open a flow past max_connections is dropped",
    ],
    [
      'connect_timeout = "1s"',
      "connect_timeout",
      "a flow's socket connects at once; idle_timeout ends a flow whose backend never replies",
    ],
    [
      "retries = 1",
      "retries",
      "a flow whose backend reports an error (ICMP unreachable) moves to another backend with " +
      "its next datagram",
    ],
  ];

  it("refuses each on a UDP frontend, naming the key and why", () => {
    for (const [line, key, why] of cases) {
      fails(
        udp(line),
        `frontend.${key} applies to TCP frontends only: bind_on is "udp:127.0.0.1:5353" (${why})`,
      );
    }
  });

  it("names the [[frontends]] entry and refuses them there too", () => {
    fails(
      '[[frontends]]\nname = "dns"\nbind_on = "udp:[::1]:53"\nsni = ["a.example"]\n' +
        '[[frontends.backend]]\nforward_to = "[::1]:5300"\n',
      `frontends[0].sni applies to TCP frontends only: bind_on is "udp:[::1]:53" (${FIRST_BYTES})`,
    );
  });

  it("takes each of them on a TCP frontend as before (the edge rules aside)", () => {
    for (const [line, key] of cases) {
      // These need a partner on TCP (a certificate file, a Unix socket, accept_proxy, a shared address).
      if (["tls", "unix_mode", "trusted", "accept_proxy", "detect_timeout"].includes(key)) continue;
      assert.equal(parseConfig(udp(line, "", "127.0.0.1:5353")).frontends.length, 1, key);
    }
  });

  it('refuses when_all_down = "reset" and send_proxy, takes "close" and accept_proxy = false', () => {
    fails(
      udp('when_all_down = "reset"'),
      'frontend.when_all_down is "reset", which applies to TCP frontends only: bind_on is ' +
        '"udp:127.0.0.1:5353" (UDP has no reset: a datagram no backend can take is dropped)',
    );
    fails(
      udp("", 'send_proxy = "v2"'),
      'frontend.backend[0].send_proxy applies to TCP frontends only: bind_on is "udp:127.0.0.1:5353" ' +
        "(there is no PROXY protocol over UDP)",
    );
    const frontend = parseConfig(udp('when_all_down = "close"\naccept_proxy = false'))
      .frontends[0]!;
    assert.equal(frontend.whenAllDown, "close");
    assert.equal(frontend.acceptProxy, false);
  });

  it("takes the limits, algorithms, allow/deny, max_lifetime and slow_start on UDP", () => {
    const frontend = parseConfig(udp(
      'algorithm = "source_hash"\nhash_balance_factor = 1.5\nmax_connections = 100\n' +
        'max_connections_per_client = 4\nconnection_rate_per_client = "20/s"\n' +
        'allow = ["127.0.0.0/8"]\ndeny = ["127.0.0.9"]\nmax_lifetime = "1m"\nslow_start = "10s"',
      'weight = 3\nmax_connections = 50\nslow_start = "5s"',
    )).frontends[0]!;
    assert.equal(frontend.maxConnections, 100);
    assert.equal(frontend.maxConnectionsPerClient, 4);
    assert.equal(frontend.connectionRatePerClient?.text, "20/s");
    assert.equal(frontend.maxLifetimeMs, 60_000);
    assert.equal(frontend.backends[0]!.weight, 3);
    assert.equal(frontend.backends[0]!.maxConnections, 50);
  });
});

describe("UDP frontends and addresses", () => {
  const two = (a: string, b: string) =>
    `[[frontends]]\nname = "a"\nbind_on = "${a}"\n[[frontends.backend]]\nforward_to = "127.0.0.1:5300"\n` +
    `[[frontends]]\nname = "b"\nbind_on = "${b}"\n[[frontends.backend]]\nforward_to = "127.0.0.1:5301"\n`;

  it("refuses two UDP frontends on one address, naming both", () => {
    fails(
      two("udp:127.0.0.1:53", "udp:127.0.0.1:53"),
      'frontends[1].bind_on repeats an address: frontend "b" and frontend "a" (frontends[0]) are ' +
        'both on "udp:127.0.0.1:53" (UDP frontends cannot share an address: a datagram has no ' +
        "first bytes to choose a frontend by)",
    );
    fails(
      two("udp:0.0.0.0:53", "udp:127.0.0.1:53"),
      'frontends[1].bind_on clashes: frontend "b" on udp:127.0.0.1:53 and frontend "a" on ' +
        "udp:0.0.0.0:53 cannot both be bound",
    );
  });

  it("lets a TCP and a UDP frontend share a host:port, a wildcard included", () => {
    for (
      const [a, b] of [
        ["127.0.0.1:53", "udp:127.0.0.1:53"],
        ["udp:127.0.0.1:53", "127.0.0.1:53"],
        ["0.0.0.0:53", "udp:127.0.0.1:53"],
        ["udp:[::]:53", "127.0.0.1:53"],
        ["udp:127.0.0.1:0", "udp:127.0.0.1:0"],
      ]
    ) {
      const frontends = parseConfig(two(a!, b!)).frontends;
      assert.deepEqual(
        frontends.map((f) => f.transport),
        [a, b].map((x) => x!.startsWith("udp:") ? "udp" : "tcp"),
      );
    }
  });

  it("lets a UDP frontend take the admin listener's port (the admin listener is TCP)", () => {
    const config = parseConfig(
      `[admin]\nbind_on = "127.0.0.1:9901"\n${udp("", "", "udp:127.0.0.1:9901")}`,
    );
    assert.equal(config.frontends[0]!.bindOn.port, 9901);
    fails(
      `[admin]\nbind_on = "127.0.0.1:9901"\n${udp("", "", "127.0.0.1:9901")}`,
      'admin.bind_on clashes with frontend ("default" on 127.0.0.1:9901): "127.0.0.1:9901"',
    );
  });

  it("allows workers on a fixed UDP port, not on port 0", () => {
    assert.equal(parseConfig(`workers = 2\n${udp()}`).workers, 2);
    fails(
      `workers = 2\n${udp("", "", "udp:127.0.0.1:0")}`,
      "workers need a fixed port (frontend.bind_on is port 0): each worker would get a port of its own",
    );
  });
});

describe("[frontend.health] on a UDP frontend", () => {
  // [frontend.health] must come after the frontend's own keys and before its backends.
  const withHealth = (keys: string, bind = "udp:127.0.0.1:5353") =>
    `[frontend]\nbind_on = "${bind}"\n[frontend.health]\n${keys}\n` +
    '[[frontend.backend]]\nforward_to = "127.0.0.1:5300"\n';

  it("probes over UDP without port: send and expect are bytes, \\u00XX escapes included", () => {
    const probe = parseConfig(withHealth('send = "\\u0000\\u00ffA"\nexpect = "\\u00ab"'))
      .frontends[0]!.health;
    assert.equal(probe.active, true);
    assert.equal(probe.udp, true);
    assert.equal(probe.send, "\u0000\u00ffA");
    assert.deepEqual([...Buffer.from(probe.send!, "latin1")], [0, 255, 65]);
    assert.equal(probe.expect, "\u00ab");
  });

  it("probes backends marked down over UDP too when there is no [health] table", () => {
    const passive = parseConfig(udp()).frontends[0]!.health;
    assert.equal(passive.active, false);
    assert.equal(passive.udp, true);
  });

  it("checks over TCP or HTTP with port, as on a TCP frontend", () => {
    const tcp = parseConfig(withHealth('port = 8053\nsend = "PING €"')).frontends[0]!.health;
    assert.equal(tcp.udp, undefined);
    assert.equal(tcp.port, 8053);
    const http = parseConfig(withHealth('port = 8080\nhttp_path = "/healthz"\ntls = true'))
      .frontends[0]!.health;
    assert.equal(http.udp, undefined);
    assert.equal(http.http?.path, "/healthz");
    assert.equal(http.tls, true);
    const agent = parseConfig(withHealth("agent_port = 9777")).frontends[0]!.health;
    assert.equal(agent.agentPort, 9777);
    assert.equal(agent.udp, true);
  });

  it("refuses a character above U+00FF in send or expect, naming which", () => {
    fails(
      withHealth('send = "ab€"'),
      "frontend.health.send must be bytes on a UDP frontend, each character U+0000 to U+00FF " +
        '(write binary as "\\u00XX"): character 3 is U+20AC',
    );
    fails(
      withHealth('send = "ok"\nexpect = "\\u00ff😀"'),
      "frontend.health.expect must be bytes on a UDP frontend, each character U+0000 to U+00FF " +
        '(write binary as "\\u00XX"): character 2 is U+1F600',
    );
  });

  it("refuses http_path and tls without port", () => {
    fails(
      withHealth('http_path = "/healthz"'),
      "frontend.health.http_path needs port on a UDP frontend: HTTP checks go over TCP to that " +
        "port (without port, a probe is the datagram send, up on a reply holding expect)",
    );
    fails(
      withHealth("tls = true"),
      "frontend.health.tls needs port on a UDP frontend: TLS checks go over TCP to that " +
        "port (without port, a probe is the datagram send, up on a reply holding expect)",
    );
  });
});

describe("check's summary of a UDP frontend", () => {
  it("shows udp:HOST:PORT, the UDP probes, idle timeout and responses", () => {
    const lines = summarizeConfig(parseConfig(
      '[frontend]\nname = "dns"\nbind_on = "udp:127.0.0.1:5353"\nresponses = 1\n' +
        'connection_rate_per_client = "50/s"\n[frontend.health]\nsend = "\\u0001\\u0002\\u0003"\n' +
        'expect = "\\u0001"\n[[frontend.backend]]\nforward_to = "127.0.0.2:53"\n',
    ));
    assert.deepEqual(lines, [
      'frontend "dns" on udp:127.0.0.1:5353: round_robin over 1 backend, active health checks: ' +
      "UDP datagrams of 3 bytes, up on a reply holding expect (1 byte), a flow ends after 30s " +
      "idle or 1 response",
      "  50/s new flows per client",
      "  127.0.0.2:53 (weight 1)",
    ]);
  });

  it("says what a UDP probe without send or expect counts as up, and TCP probes with port", () => {
    const text = (health: string) =>
      summarizeConfig(parseConfig(
        `[frontend]\nbind_on = "udp:127.0.0.1:5353"\n[frontend.health]\n${health}\n` +
          '[[frontend.backend]]\nforward_to = "127.0.0.2:53"\n',
      ))[0];
    assert.equal(
      text('interval = "5s"'),
      'frontend "default" on udp:127.0.0.1:5353: round_robin over 1 backend, active health ' +
        "checks: UDP datagrams, up unless the port is unreachable, a flow ends after 30s idle",
    );
    assert.equal(
      text('port = 8080\nhttp_path = "/ready"'),
      'frontend "default" on udp:127.0.0.1:5353: round_robin over 1 backend, active health ' +
        "checks: HTTP GET /ready up on 200-399 on port 8080, a flow ends after 30s idle",
    );
  });

  it("shows a TCP and a UDP frontend on one port as two, not as a shared address", () => {
    const lines = summarizeConfig(parseConfig(
      '[[frontends]]\nname = "t"\nbind_on = "127.0.0.1:53"\n[[frontends.backend]]\nforward_to = "127.0.0.2:53"\n' +
        '[[frontends]]\nname = "u"\nbind_on = "udp:127.0.0.1:53"\nidle_timeout = "2m"\nresponses = 2\n' +
        '[[frontends.backend]]\nforward_to = "127.0.0.2:53"\n',
    ));
    assert.deepEqual(lines, [
      'frontend "t" on 127.0.0.1:53: round_robin over 1 backend',
      "  127.0.0.2:53 (weight 1)",
      'frontend "u" on udp:127.0.0.1:53: round_robin over 1 backend, a flow ends after 2m idle ' +
      "or 2 responses",
      "  127.0.0.2:53 (weight 1)",
    ]);
  });
});

describe("the UDP examples", () => {
  it("examples/udp-dns.toml loads, and its probe is a DNS query whose ID it expects", async () => {
    const config = await loadConfig(join(ROOT, "examples/udp-dns.toml"));
    const dns = config.frontends[0]!;
    assert.equal(dns.transport, "udp");
    assert.equal(dns.responses, 1);
    assert.equal(dns.idleTimeoutMs, 5_000);
    assert.equal(dns.backends.length, 2);
    assert.equal(dns.health.udp, true);
    const query = packet.decode(Buffer.from(dns.health.send!, "latin1"));
    assert.equal(query.type, "query");
    assert.equal(query.id, 0x4d42);
    assert.deepEqual(query.questions, [{ name: "example.com", type: "A", class: "IN" }]);
    assert.deepEqual([...Buffer.from(dns.health.expect!, "latin1")], [0x4d, 0x42]);
  });

  it("examples/udp-syslog.toml loads: source_hash over two collectors", async () => {
    const config = await loadConfig(join(ROOT, "examples/udp-syslog.toml"));
    const syslog = config.frontends[0]!;
    assert.equal(syslog.transport, "udp");
    assert.equal(syslog.algorithm, "source_hash");
    assert.deepEqual(syslog.bindOn, { hostname: "0.0.0.0", port: 5514 });
    assert.equal(syslog.backends.length, 2);
  });
});

describe("mini-balancer check on UDP frontends", () => {
  it("prints examples/udp-dns.toml's frontend as udp:HOST:PORT and passes", async () => {
    const { code, out, err } = await check(join(ROOT, "examples/udp-dns.toml"));
    assert.deepEqual(err, []);
    assert.equal(code, 0);
    assert.equal(
      out[0],
      'frontend "dns" on udp:127.0.0.1:5353: round_robin over 2 backends, active health checks: ' +
        "UDP datagrams of 29 bytes, up on a reply holding expect (2 bytes), a flow ends after 5s " +
        "idle or 1 response",
    );
  });

  it("names a UDP bind_on that does not resolve as written, udp: included", async () => {
    const dir = await tempDir();
    try {
      const file = join(dir.path, "lb.toml");
      await writeFile(file, udp("", "", "udp:nowhere.invalid:53"));
      const { code, out, err } = await check(file);
      assert.equal(code, 1, out.join("\n"));
      assert.deepEqual(err, [
        `mini-balancer: Cannot load config "${file}": frontend "default": bind_on cannot be ` +
        'bound: nowhere.invalid does not resolve: current value is "udp:nowhere.invalid:53"',
      ]);
    } finally {
      await dir.cleanup();
    }
  });
});
