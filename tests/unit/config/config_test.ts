import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { formatAddress, parseAddress } from "../../../src/address/address.ts";
import { ConfigError } from "../../../src/config/config_error.ts";
import { MAX_DURATION_MS, parseDuration } from "../../../src/config/duration.ts";
import { loadConfig, parseConfig } from "../../../src/config/load.ts";

const data = (name: string) => new URL(`../../testdata/${name}`, import.meta.url).pathname;

async function loadError(name: string): Promise<ConfigError> {
  try {
    await loadConfig(data(name));
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
    return error;
  }
  assert.fail(`${name} loaded without error`);
}

describe("loadConfig", () => {
  it("reads the original walkthrough's file", async () => {
    const config = await loadConfig(data("seed_example.toml"));
    assert.equal(config.frontends.length, 1);
    const [frontend] = config.frontends;
    assert.deepEqual(frontend!.bindOn, { hostname: "127.0.0.1", port: 7070 });
    assert.deepEqual(frontend!.backends.map((b) => b.forwardTo), [
      { hostname: "127.0.0.1", port: 8080 },
      { hostname: "127.0.0.1", port: 9090 },
    ]);
    assert.equal(frontend!.connectTimeoutMs, 5000);
    assert.equal(frontend!.algorithm, "round_robin");
    assert.deepEqual(frontend!.backends.map((b) => b.weight), [1, 1]);
    assert.deepEqual(frontend!.backends.map((b) => b.name), ["127.0.0.1:8080", "127.0.0.1:9090"]);
  });

  it("reads idle_timeout and max_lifetime, unset by default", () => {
    const text = (extra: string) =>
      `[frontend]\nbind_on = "127.0.0.1:1"\n${extra}\n[[frontend.backend]]\nforward_to = "127.0.0.1:2"\n`;
    const plain = parseConfig(text("")).frontends[0]!;
    assert.equal(plain.idleTimeoutMs, undefined);
    assert.equal(plain.maxLifetimeMs, undefined);
    const set = parseConfig(text('idle_timeout = "30s"\nmax_lifetime = "1h"')).frontends[0]!;
    assert.equal(set.idleTimeoutMs, 30_000);
    assert.equal(set.maxLifetimeMs, 3_600_000);
    assert.throws(
      () => parseConfig(text('idle_timeout = "forever"')),
      /frontend.idle_timeout must be a duration/,
    );
  });

  // Timers take a signed 32-bit delay: a longer one fires after 1ms instead.
  const durationKeys = [
    ["connect_timeout", ""],
    ["idle_timeout", ""],
    ["max_lifetime", ""],
    ["queue_timeout", ""],
    ["interval", "[frontend.health]\n"],
    ["timeout", "[frontend.health]\n"],
  ] as const;
  const withDuration = (key: string, table: string, value: string) =>
    `[frontend]\nbind_on = "127.0.0.1:1"\n${table}${key} = "${value}"\n` +
    '[[frontend.backend]]\nforward_to = "127.0.0.1:2"\n';

  it("rejects every duration above 2147483647ms, naming the limit", () => {
    for (const [key, table] of durationKeys) {
      const path = table === "" ? `frontend.${key}` : `frontend.health.${key}`;
      assert.throws(
        () => parseConfig(withDuration(key, table, "600h"), "t.toml"),
        (error: Error) => {
          assert.equal(
            error.message,
            `Cannot load config "t.toml": ${path} must be at most 2147483647ms (about 24.8 days): ` +
              'current value is "600h"',
          );
          return true;
        },
      );
      assert.ok(parseConfig(withDuration(key, table, "2147483647ms")), key);
    }
  });

  it("rejects a zero timeout, but not a zero queue_timeout", () => {
    for (const [key, table] of durationKeys) {
      if (key === "queue_timeout" || key === "interval") continue;
      const path = table === "" ? `frontend.${key}` : `frontend.health.${key}`;
      assert.throws(
        () => parseConfig(withDuration(key, table, "0s"), "z.toml"),
        (error: Error) => {
          assert.equal(
            error.message,
            `Cannot load config "z.toml": ${path} must be at least 1ms: current value is "0s"`,
          );
          return true;
        },
      );
    }
    // Documented: a full frontend closes the extra connection at once.
    const queue = parseConfig(withDuration("queue_timeout", "", "0s")).frontends[0]!;
    assert.equal(queue.queueTimeoutMs, 0);
    assert.throws(
      () => parseConfig(withDuration("interval", "[frontend.health]\n", "5ms")),
      /frontend.health.interval must be at least 10ms: current value is "5ms"/,
    );
  });

  it("reads the connection limits, queue_timeout defaulting to connect_timeout", () => {
    const [frontend] = parseConfig(
      '[frontend]\nbind_on = "127.0.0.1:1"\nconnect_timeout = "2s"\nmax_connections = 100\n' +
        "max_connections_per_client = 5\n" +
        '[[frontend.backend]]\nforward_to = "127.0.0.1:2"\nmax_connections = 10\n',
    ).frontends;
    assert.equal(frontend!.maxConnections, 100);
    assert.equal(frontend!.queueTimeoutMs, 2000);
    assert.equal(frontend!.maxConnectionsPerClient, 5);
    assert.equal(frontend!.backends[0]!.maxConnections, 10);
    assert.throws(
      () =>
        parseConfig(
          '[frontend]\nbind_on = "127.0.0.1:1"\nmax_connections = 0\n[[frontend.backend]]\nforward_to = "127.0.0.1:2"\n',
        ),
      /frontend.max_connections must be a whole number from 1 to 1000000: current value is 0/,
    );
  });

  it("reads [frontend.health] and backup backends, passive checks by default", () => {
    const base = '[frontend]\nbind_on = "127.0.0.1:1"\n';
    const backend = '[[frontend.backend]]\nforward_to = "127.0.0.1:2"\nbackup = true\n';
    const plain = parseConfig(base + backend).frontends[0]!;
    assert.equal(plain.health.active, false);
    assert.equal(plain.health.fall, 3);
    assert.equal(plain.backends[0]!.backup, true);
    const checked = parseConfig(
      base +
        '[frontend.health]\ninterval = "5s"\ntimeout = "2s"\nrise = 3\nfall = 2\n' +
        'send = "PING\\r\\n"\nexpect = "+PONG"\n' + backend,
    ).frontends[0]!;
    assert.deepEqual(checked.health, {
      active: true,
      intervalMs: 5000,
      timeoutMs: 2000,
      rise: 3,
      fall: 2,
      send: "PING\r\n",
      expect: "+PONG",
    });
    assert.throws(
      () => parseConfig(base + "[frontend.health]\nrise = 0\n" + backend, "h.toml"),
      /Cannot load config "h.toml": frontend.health.rise must be a whole number from 1 to 100: current value is 0/,
    );
    assert.throws(
      () => parseConfig(base + '[frontend.health]\nintervall = "1s"\n' + backend),
      /frontend.health.intervall is not a known key/,
    );
  });

  it("names a backend by its name key, keeping its address for logs", () => {
    const [backend] = parseConfig(
      '[frontend]\nbind_on = "127.0.0.1:1"\n[[frontend.backend]]\nname = "app-1"\nforward_to = "127.0.0.1:2"\n',
    ).frontends[0]!.backends;
    assert.equal(backend!.name, "app-1");
    assert.equal(backend!.address, "127.0.0.1:2");
  });

  it("rejects two backends with one name in a frontend", () => {
    const backends = (...extra: string[]) =>
      '[frontend]\nbind_on = "127.0.0.1:1"\n' +
      extra.map((lines) => `[[frontend.backend]]\n${lines}\n`).join("");
    const rejects = (text: string, message: string) =>
      assert.throws(() => parseConfig(text, "n.toml"), (error: Error) => {
        assert.equal(error.message, `Cannot load config "n.toml": ${message}`);
        return true;
      });
    rejects(
      backends(
        'name = "app"\nforward_to = "127.0.0.1:2"',
        'name = "app"\nforward_to = "127.0.0.1:3"',
      ),
      'frontend.backend[1].name repeats the name of frontend.backend[0]: "app"',
    );
    // Unnamed, a backend is named by its address: the same one twice is a typo.
    rejects(
      backends(
        'forward_to = "127.0.0.1:2"',
        'forward_to = "127.0.0.1:3"',
        'forward_to = "127.0.0.1:2"',
      ),
      'frontend.backend[2].forward_to repeats the address of frontend.backend[0]: "127.0.0.1:2"',
    );
    rejects(
      backends('name = "127.0.0.1:3"\nforward_to = "127.0.0.1:2"', 'forward_to = "127.0.0.1:3"'),
      "frontend.backend[1].forward_to repeats the name of frontend.backend[0], " +
        'and a backend without a name is named by its address: "127.0.0.1:3"',
    );
    rejects(
      '[[frontends]]\nname = "a"\nbind_on = "127.0.0.1:1"\n' +
        '[[frontends.backend]]\nforward_to = "127.0.0.1:2"\n' +
        '[[frontends.backend]]\nname = "127.0.0.1:2"\nforward_to = "127.0.0.1:3"\n',
      'frontends[0].backend[1].name repeats the name of frontends[0].backend[0]: "127.0.0.1:2"',
    );
    // Two frontends may each have a backend called "app".
    const config = parseConfig(
      '[[frontends]]\nname = "a"\nbind_on = "127.0.0.1:1"\n' +
        '[[frontends.backend]]\nname = "app"\nforward_to = "127.0.0.1:2"\n' +
        '[[frontends]]\nname = "b"\nbind_on = "127.0.0.1:3"\n' +
        '[[frontends.backend]]\nname = "app"\nforward_to = "127.0.0.1:2"\n',
    );
    assert.equal(config.frontends.length, 2);
  });

  it("reads the algorithm and the backends' weights", () => {
    const [frontend] = parseConfig(
      '[frontend]\nbind_on = "127.0.0.1:1"\nalgorithm = "least_connections"\n' +
        '[[frontend.backend]]\nforward_to = "127.0.0.1:2"\nweight = 5\n',
    ).frontends;
    assert.equal(frontend!.algorithm, "least_connections");
    assert.equal(frontend!.backends[0]!.weight, 5);
  });

  it("rejects a weight that is not a whole number", () => {
    assert.throws(
      () =>
        parseConfig(
          '[frontend]\nbind_on = "127.0.0.1:1"\n[[frontend.backend]]\nforward_to = "127.0.0.1:2"\nweight = 1.5\n',
          "w.toml",
        ),
      /Cannot load config "w.toml": frontend.backend\[0\].weight must be a whole number from 1 to 256: current value is 1.5/,
    );
  });

  it("accepts IPv6 literals, host names and a connect timeout", async () => {
    const [frontend] = (await loadConfig(data("ipv6_and_names.toml"))).frontends;
    assert.deepEqual(frontend!.bindOn, { hostname: "::1", port: 7070 });
    assert.deepEqual(frontend!.backends.map((b) => b.name), ["localhost:8080", "[::1]:9090"]);
    assert.equal(frontend!.connectTimeoutMs, 250);
  });

  const cases: [file: string, message: string][] = [
    ["missing.toml", "file not found"],
    [
      "syntax_error.toml",
      "TOML syntax error at line 2, column 26: control characters are not allowed in strings",
    ],
    ["missing_bind_on.toml", "frontend.bind_on is required"],
    [
      "mistyped_forward_to.toml",
      "frontend.backend[1].forward_to must be a string: current value is 9090",
    ],
    [
      "address_without_port.toml",
      'frontend.backend[1].forward_to must be host:port: current value is "localhost"',
    ],
    [
      "port_out_of_range.toml",
      "frontend.bind_on must be host:port: the port must be between 0 and 65535: " +
      'current value is "127.0.0.1:70700"',
    ],
    ["no_backends.toml", "frontend.backend is required: add at least one [[frontend.backend]]"],
    [
      "ipv6_without_brackets.toml",
      "frontend.bind_on must be host:port: an IPv6 address needs brackets, as in [::1]:7070",
    ],
    ["unknown_key.toml", "frontend.bind_onn is not a known key"],
    ["bad_duration.toml", 'frontend.connect_timeout must be a duration such as "250ms"'],
    [
      "unknown_algorithm.toml",
      "frontend.algorithm must be one of round_robin, weighted_round_robin, least_connections, " +
      'random, power_of_two, source_hash, first: current value is "fastest"',
    ],
    [
      "zero_weight.toml",
      "frontend.backend[1].weight must be a whole number from 1 to 256: current value is 0",
    ],
  ];
  for (const [file, message] of cases) {
    it(`rejects ${file.replace(".toml", "").replaceAll("_", " ")} naming file and field`, async () => {
      const error = await loadError(file);
      assert.ok(
        error.message.startsWith(`Cannot load config "${data(file)}": `),
        error.message,
      );
      assert.ok(error.message.includes(message), `"${error.message}" lacks "${message}"`);
      assert.ok(!error.message.includes("\n"), "the message is one line");
    });
  }

  it("reports the field path of a bad backend", async () => {
    const error = await loadError("mistyped_forward_to.toml");
    assert.equal(error.path, "frontend.backend[1].forward_to");
  });
});

describe("parseConfig", () => {
  it("reads several named frontends", async () => {
    const config = await loadConfig(
      new URL("../../../examples/multi-frontend.toml", import.meta.url).pathname,
    );
    assert.deepEqual(config.frontends.map((f) => f.name), ["web", "cache", "db"]);
    assert.deepEqual(config.frontends.map((f) => f.algorithm), [
      "weighted_round_robin",
      "source_hash",
      "least_connections",
    ]);
    assert.deepEqual(config.frontends[0]!.backends.map((b) => b.weight), [1, 1, 2]);
    assert.equal(config.frontends[0]!.connectTimeoutMs, 2000);
    assert.equal(config.frontends[2]!.retries, 0);
    assert.deepEqual(config.frontends[2]!.bindOn, { hostname: "::1", port: 5433 });
  });

  it("accepts the original [frontend] beside [[frontends]]", () => {
    const config = parseConfig(
      '[frontend]\nbind_on = "127.0.0.1:1"\n[[frontend.backend]]\nforward_to = "127.0.0.1:2"\n' +
        '[[frontends]]\nname = "extra"\nbind_on = "127.0.0.1:3"\n' +
        '[[frontends.backend]]\nforward_to = "127.0.0.1:4"\n',
    );
    assert.deepEqual(config.frontends.map((f) => f.name), ["default", "extra"]);
  });

  it("takes an optional name in [frontend]", () => {
    const config = parseConfig(
      '[frontend]\nname = "web"\nbind_on = "127.0.0.1:1"\n' +
        '[[frontend.backend]]\nforward_to = "127.0.0.1:2"\n',
    );
    assert.deepEqual(config.frontends.map((f) => f.name), ["web"]);
  });

  it("rejects a [[frontends]] named default beside a nameless [frontend]", () => {
    assert.throws(
      () =>
        parseConfig(
          '[frontend]\nbind_on = "127.0.0.1:1"\n[[frontend.backend]]\nforward_to = "127.0.0.1:2"\n' +
            '[[frontends]]\nname = "default"\nbind_on = "127.0.0.1:3"\n' +
            '[[frontends.backend]]\nforward_to = "127.0.0.1:4"\n',
          "d.toml",
        ),
      /Cannot load config "d.toml": frontends\[0\].name repeats the name of frontend: "default"$/,
    );
  });

  const twoFrontends = (a: string, b: string) =>
    `[[frontends]]\n${a}\n[[frontends.backend]]\nforward_to = "127.0.0.1:9"\n` +
    `[[frontends]]\n${b}\n[[frontends.backend]]\nforward_to = "127.0.0.1:9"\n`;

  it("rejects two frontends with one name", () => {
    assert.throws(
      () =>
        parseConfig(
          twoFrontends(
            'name = "a"\nbind_on = "127.0.0.1:1"',
            'name = "a"\nbind_on = "127.0.0.1:2"',
          ),
          "m.toml",
        ),
      /Cannot load config "m.toml": frontends\[1\].name repeats the name of frontends\[0\]: "a"/,
    );
  });

  it("rejects two frontends on one address", () => {
    assert.throws(
      () =>
        parseConfig(
          twoFrontends(
            'name = "a"\nbind_on = "127.0.0.1:1"',
            'name = "b"\nbind_on = "127.0.0.1:1"',
          ),
        ),
      /frontends\[1\].bind_on repeats an address: frontend "b" and frontend "a" \(frontends\[0\]\) are both on "127.0.0.1:1"/,
    );
  });

  it("rejects two frontends on one Unix socket, and takes two on different ones", () => {
    const two = (first: string, second: string) =>
      parseConfig(
        twoFrontends(`name = "a"\nbind_on = "${first}"`, `name = "b"\nbind_on = "${second}"`),
      );
    assert.throws(
      () => two("unix:/run/lb.sock", "unix:/run/lb.sock"),
      /frontends\[1\].bind_on repeats an address: frontend "b" and frontend "a" \(frontends\[0\]\) are both on "unix:\/run\/lb.sock"/,
    );
    const config = two("unix:/run/a.sock", "unix:/run/b.sock");
    assert.deepEqual(config.frontends.map((frontend) => frontend.bindOn.path), [
      "/run/a.sock",
      "/run/b.sock",
    ]);
    two("unix:/run/a.sock", "127.0.0.1:0");
  });

  it("rejects frontends whose addresses overlap through a wildcard", () => {
    const clash = (first: string, second: string) => () =>
      parseConfig(
        twoFrontends(
          `name = "web"\nbind_on = "${first}"`,
          `name = "api"\nbind_on = "${second}"`,
        ),
        "w.toml",
      );
    const message = (text: string) => (error: Error) => {
      assert.equal(error.message, `Cannot load config "w.toml": ${text}`);
      return true;
    };
    assert.throws(
      clash("0.0.0.0:7070", "127.0.0.1:7070"),
      message(
        'frontends[1].bind_on clashes: frontend "api" on 127.0.0.1:7070 and frontend "web" on 0.0.0.0:7070 ' +
          "cannot both be bound",
      ),
    );
    assert.throws(
      clash("127.0.0.1:7070", "0.0.0.0:7070"),
      message(
        'frontends[1].bind_on clashes: frontend "api" on 0.0.0.0:7070 and frontend "web" on 127.0.0.1:7070 ' +
          "cannot both be bound",
      ),
    );
    const bothNamed =
      /frontends\[1\]\.bind_on clashes: frontend "api" on .* and frontend "web" on /;
    // [::] takes IPv4 too on Linux's default dual-stack sockets.
    assert.throws(clash("[::]:7070", "127.0.0.1:7070"), bothNamed);
    assert.throws(clash("0.0.0.0:7070", "[::]:7070"), bothNamed);
    assert.throws(clash("[::1]:7070", "[::]:7070"), bothNamed);
    // A name may resolve to an IPv4 address.
    assert.throws(clash("localhost:7070", "0.0.0.0:7070"), bothNamed);
    // These bind side by side.
    assert.ok(clash("0.0.0.0:7070", "[::1]:7070")());
    assert.ok(clash("0.0.0.0:7070", "127.0.0.1:7071")());
    assert.ok(clash("0.0.0.0:0", "127.0.0.1:0")());
    assert.ok(clash("[::]:0", "[::]:0")());
  });

  it("requires a name in [[frontends]]", () => {
    assert.throws(
      () =>
        parseConfig(twoFrontends('bind_on = "127.0.0.1:1"', 'name = "b"\nbind_on = "127.0.0.1:2"')),
      /frontends\[0\].name is required/,
    );
  });

  it("asks for [[frontends.backend]] in a named frontend", () => {
    assert.throws(
      () => parseConfig('[[frontends]]\nname = "a"\nbind_on = "127.0.0.1:1"\n'),
      /frontends\[0\].backend is required: add at least one \[\[frontends.backend\]\]/,
    );
  });

  it("points [[frontend.backend]] after [[frontends]] to [[frontends.backend]]", () => {
    assert.throws(
      () =>
        parseConfig(
          '[[frontends]]\nname = "a"\nbind_on = "127.0.0.1:1"\n' +
            '[[frontend.backend]]\nforward_to = "127.0.0.1:2"\n',
          "b.toml",
        ),
      (error: Error) => {
        assert.equal(
          error.message,
          'Cannot load config "b.toml": frontend.backend is outside any [frontend]: ' +
            "the backends of [[frontends]] go under [[frontends.backend]]",
        );
        return true;
      },
    );
  });

  it("names the right table when backend is not an array", () => {
    assert.throws(
      () => parseConfig('[[frontends]]\nname = "a"\nbind_on = "127.0.0.1:1"\nbackend = 1\n'),
      /frontends\[0\]\.backend must be an array of tables \(\[\[frontends\.backend\]\]\)$/,
    );
    assert.throws(
      () => parseConfig('[frontend]\nbind_on = "127.0.0.1:1"\nbackend = 1\n'),
      /frontend\.backend must be an array of tables \(\[\[frontend\.backend\]\]\)$/,
    );
  });

  it("rejects an empty backend list", () => {
    assert.throws(
      () => parseConfig('frontend = { bind_on = "127.0.0.1:1", backend = [] }', "x.toml"),
      /Cannot load config "x.toml": frontend.backend must list at least one backend/,
    );
  });

  it("rejects a file without a frontend", () => {
    assert.throws(() => parseConfig("", "x.toml"), /frontend is required/);
  });

  it("rejects port 0 for a backend but allows it for bind_on", () => {
    assert.throws(
      () =>
        parseConfig(
          `[frontend]\nbind_on = "127.0.0.1:0"\n[[frontend.backend]]\nforward_to = "127.0.0.1:0"\n`,
        ),
      /frontend.backend\[0\].forward_to must be host:port: the port must be between 1 and 65535/,
    );
  });

  it("says an address takes no scheme, rather than that IPv6 needs brackets", () => {
    for (
      const [key, value] of [["forward_to", "http://127.0.0.1:80"], [
        "forward_to",
        "tcp://[::1]:80",
      ]]
    ) {
      assert.throws(
        () =>
          parseConfig(
            `[frontend]\nbind_on = "127.0.0.1:0"\n[[frontend.backend]]\n${key} = "${value}"\n`,
            "lb.toml",
          ),
        {
          message: `Cannot load config "lb.toml": frontend.backend[0].${key} must be host:port ` +
            `without a scheme: current value is "${value}"`,
        },
      );
    }
    assert.throws(
      () =>
        parseConfig(
          `[frontend]\nbind_on = "http://0.0.0.0:80"\n[[frontend.backend]]\nforward_to = "a:1"\n`,
        ),
      /frontend.bind_on must be host:port without a scheme: current value is "http:\/\/0.0.0.0:80"/,
    );
  });

  it("says a resolver must be an IP address and port, whatever is wrong with it", () => {
    const wanted = 'must be an IP address and port, as in "127.0.0.1:8600"';
    const cases: [string, string][] = [
      ["dns.google", wanted],
      ["dns.google:53", wanted],
      ["8.8.8.8", wanted],
      ["udp://8.8.8.8:53", wanted],
      ["8.8.8.8:x", `${wanted}: the port is not a number`],
      ["8.8.8.8:70000", `${wanted}: the port must be between 1 and 65535`],
    ];
    for (const [resolver, problem] of cases) {
      for (const [where, path] of [["top", "resolver"], ["frontend", "frontend.resolver"]]) {
        const text = where === "top"
          ? `resolver = "${resolver}"\n[frontend]\nbind_on = "127.0.0.1:0"\n`
          : `[frontend]\nbind_on = "127.0.0.1:0"\nresolver = "${resolver}"\n`;
        assert.throws(
          () => parseConfig(`${text}[[frontend.backend]]\nforward_to = "web.test:80"\n`, "lb.toml"),
          {
            message:
              `Cannot load config "lb.toml": ${path} ${problem}: current value is "${resolver}"`,
          },
        );
      }
    }
    assert.equal(
      parseConfig(
        `resolver = "[::1]:53"\n[frontend]\nbind_on = "127.0.0.1:0"\n` +
          `[[frontend.backend]]\nforward_to = "web.test:80"\n`,
      ).frontends[0]!.resolver?.hostname,
      "::1",
    );
  });
});

describe("parseAddress", () => {
  it("splits IPv4, bracketed IPv6 and host names", () => {
    assert.deepEqual(parseAddress("127.0.0.1:7070"), { hostname: "127.0.0.1", port: 7070 });
    assert.deepEqual(parseAddress("[::1]:7070"), { hostname: "::1", port: 7070 });
    assert.deepEqual(parseAddress("backend-1.internal:80"), {
      hostname: "backend-1.internal",
      port: 80,
    });
  });

  it("rejects what is not host:port", () => {
    for (const bad of ["", "7070", ":7070", "host:", "host:x", "[::1:7070", "[zz]:1", "a b:1"]) {
      assert.throws(() => parseAddress(bad), TypeError, bad);
    }
    assert.throws(() => parseAddress("h:65536"), RangeError);
  });

  it("reads unix:path as a Unix socket endpoint, absolute or relative", () => {
    assert.deepEqual(parseAddress("unix:/run/lb.sock"), {
      hostname: "",
      port: 0,
      path: "/run/lb.sock",
    });
    assert.deepEqual(parseAddress("unix:lb.sock"), { hostname: "", port: 0, path: "lb.sock" });
    assert.deepEqual(parseAddress("unix:/" + "a".repeat(106)).path?.length, 107);
  });

  it("rejects an empty, NUL-holding or too long Unix path", () => {
    assert.throws(() => parseAddress("unix:"), { name: "TypeError", message: /the path is empty/ });
    assert.throws(() => parseAddress("unix:/a\0b"), { name: "TypeError", message: /NUL/ });
    // sun_path holds 108 bytes with the NUL; "é" is two bytes in UTF-8.
    assert.throws(
      () => parseAddress("unix:/" + "a".repeat(107)),
      { name: "RangeError", message: /at most 107 bytes, not 108/ },
    );
    assert.throws(() => parseAddress("unix:/" + "é".repeat(54)), RangeError);
  });

  it("formats a Unix socket endpoint as unix:path", () => {
    assert.equal(
      formatAddress({ hostname: "", port: 0, path: "/run/lb.sock" }),
      "unix:/run/lb.sock",
    );
    assert.equal(formatAddress(parseAddress("unix:lb.sock")), "unix:lb.sock");
  });

  it("formats IPv6 with brackets", () => {
    assert.equal(formatAddress({ hostname: "::1", port: 1 }), "[::1]:1");
    assert.equal(formatAddress({ hostname: "localhost", port: 2 }), "localhost:2");
  });
});

describe("parseDuration", () => {
  it("reads milliseconds, seconds, minutes and hours", () => {
    assert.equal(parseDuration("250ms"), 250);
    assert.equal(parseDuration("5s"), 5000);
    assert.equal(parseDuration("1.5s"), 1500);
    assert.equal(parseDuration("2m"), 120_000);
    assert.equal(parseDuration("1h"), 3_600_000);
  });

  it("rejects what a timer cannot wait for", () => {
    assert.equal(MAX_DURATION_MS, 2 ** 31 - 1);
    assert.equal(parseDuration("2147483647ms"), MAX_DURATION_MS);
    assert.throws(
      () => parseDuration("2147483648ms"),
      RangeError,
      "must be at most 2147483647ms (about 24.8 days)",
    );
    assert.throws(() => parseDuration("600h"), RangeError);
  });

  it("rejects numbers without a unit", () => {
    assert.throws(() => parseDuration("5"), TypeError);
    assert.throws(() => parseDuration("-1s"), TypeError);
  });
});

describe("the edge keys", () => {
  const one = (frontend: string, backend = "") =>
    `[frontend]\nbind_on = "127.0.0.1:1"\n${frontend}\n` +
    `[[frontend.backend]]\nforward_to = "127.0.0.1:2"\n${backend}\n`;
  const shared = (a: string, b: string) =>
    `[[frontends]]\nname = "a"\nbind_on = "127.0.0.1:443"\n${a}\n` +
    `[[frontends.backend]]\nforward_to = "127.0.0.1:2"\n` +
    `[[frontends]]\nname = "b"\nbind_on = "127.0.0.1:443"\n${b}\n` +
    `[[frontends.backend]]\nforward_to = "127.0.0.1:3"\n`;
  const fails = (text: string, message: string) =>
    assert.throws(() => parseConfig(text), {
      message: `Cannot load config "<config>": ${message}`,
    });

  it("reads every edge key, all off by default", () => {
    const plain = parseConfig(one("")).frontends[0]!;
    assert.equal(plain.acceptProxy, false);
    assert.equal(plain.headerTimeoutMs, 5000);
    for (const key of ["trusted", "sni", "tls", "allow", "deny"] as const) {
      assert.equal(plain[key], undefined, key);
    }
    assert.equal(plain.connectionRatePerClient, undefined);
    assert.equal(plain.maxBytesPerSecond, undefined);
    assert.equal(plain.backends[0]!.sendProxy, undefined);
    const set = parseConfig(one(
      'accept_proxy = true\ntrusted = ["10.0.0.0/8", "::1"]\nheader_timeout = "2s"\n' +
        'allow = ["192.168.0.0/16"]\ndeny = ["192.168.7.0/24"]\n' +
        'connection_rate_per_client = "600/m"\nmax_bytes_per_second = "10MiB"',
      'send_proxy = "v2"',
    )).frontends[0]!;
    assert.equal(set.acceptProxy, true);
    assert.deepEqual(set.trusted?.toJSON(), ["10.0.0.0/8", "::1"]);
    assert.equal(set.trusted?.has("10.9.8.7"), true);
    assert.equal(set.headerTimeoutMs, 2000);
    assert.equal(set.allow?.has("192.168.1.1"), true);
    assert.equal(set.deny?.has("192.168.7.1"), true);
    assert.deepEqual(set.connectionRatePerClient, { count: 600, perMs: 60_000, text: "600/m" });
    assert.equal(set.maxBytesPerSecond, 10 * 1024 * 1024);
    assert.equal(set.backends[0]!.sendProxy, "v2");
    assert.equal(
      parseConfig(one("max_bytes_per_second = 65536")).frontends[0]!.maxBytesPerSecond,
      65536,
    );
    const unix = parseConfig(
      `[frontend]\nbind_on = "unix:/tmp/lb.sock"\nunix_mode = "0660"\naccept_proxy = true\n` +
        `[[frontend.backend]]\nforward_to = "unix:/tmp/app.sock"\n`,
    ).frontends[0]!;
    assert.equal(unix.unixMode, 0o660);
    assert.equal(unix.trusted, undefined, "a Unix socket needs no trusted list");
    assert.deepEqual(unix.backends[0]!.forwardTo, { hostname: "", port: 0, path: "/tmp/app.sock" });
  });

  it("names the field and the value of a bad edge key", () => {
    fails(
      one("", 'send_proxy = "v3"'),
      'frontend.backend[0].send_proxy must be one of v1, v2: current value is "v3"',
    );
    fails(
      one('allow = ["10.0.0.1/33"]'),
      'frontend.allow[0] must be an IP address or CIDR range: the prefix /33 is longer than 32 bits: current value is "10.0.0.1/33"',
    );
    fails(
      one('deny = "10.0.0.0/8"'),
      'frontend.deny must be an array of IP ranges such as ["10.0.0.0/8"]: current value is "10.0.0.0/8"',
    );
    fails(
      one('connection_rate_per_client = "20/h"'),
      'frontend.connection_rate_per_client must be a rate such as "20/s" or "600/m": current value is "20/h"',
    );
    fails(
      one('max_bytes_per_second = "fast"'),
      'frontend.max_bytes_per_second must be a size such as "10MiB", "512KB" or a number of bytes: current value is "fast"',
    );
    fails(
      one("max_bytes_per_second = 10"),
      "frontend.max_bytes_per_second must be at least 1024 bytes (1KiB): current value is 10",
    );
    fails(
      one('sni = ["bad name"]'),
      'frontend.sni[0] must be a server name such as "api.example.com" or "*.example.com": current value is "bad name"',
    );
    fails(
      one('unix_mode = "rw"'),
      'frontend.unix_mode must be octal permissions such as "0660": current value is "rw"',
    );
    fails(
      one('tls = { cert = "c.pem" }'),
      "frontend.tls.key is required: the private key file (PEM)",
    );
  });

  it("refuses edge keys that make no sense together", () => {
    fails(
      one("accept_proxy = true"),
      'frontend.trusted is required with accept_proxy = true: list the addresses of the proxies in front, such as ["10.0.0.0/8"]',
    );
    fails(
      one('trusted = ["10.0.0.0/8"]'),
      "frontend.trusted has no effect without accept_proxy = true",
    );
    fails(
      one('unix_mode = "0600"'),
      'frontend.unix_mode applies to a Unix socket only (bind_on = "unix:/path"): bind_on is "127.0.0.1:1"',
    );
    assert.throws(
      () => parseConfig(one('sni = ["a.test"]\ntls = { cert = "c.pem", key = "k.pem" }')),
      /frontend.sni cannot stand beside tls/,
    );
  });

  it("lets frontends share an address to route by server name, one of them the default", () => {
    const config = parseConfig(shared('sni = ["a.test", "*.a.test"]', ""));
    assert.deepEqual(config.frontends.map((f) => f.sni), [["a.test", "*.a.test"], undefined]);
    parseConfig(shared('sni = ["a.test"]', 'sni = ["b.test"]'));
    assert.throws(
      () => parseConfig(shared("", "")),
      /frontends\[1\].bind_on repeats an address: frontend "[a-z]+" and frontend "[a-z]+" \(frontends\[0\]\) are both on "127.0.0.1:443" \(frontends share an address only to route by protocol, TLS server name, ALPN or HTTP Host/,
    );
    fails(
      shared('sni = ["a.test"]', 'sni = ["A.test"]'),
      'frontends[1].sni would take the same connections as frontends[0] ("a"), which shares its address "127.0.0.1:443": both list sni "a.test" without alpn',
    );
    assert.throws(
      () =>
        parseConfig(shared('sni = ["a.test"]\naccept_proxy = true\ntrusted = ["10.0.0.0/8"]', "")),
      /frontends\[1\].accept_proxy differs from frontends\[0\], which shares its address "127.0.0.1:443"/,
    );
    // The fallback may terminate TLS: it takes the names no sni lists.
    const terminating = parseConfig(
      shared('sni = ["a.test"]', 'tls = { cert = "c.pem", key = "k.pem" }'),
    );
    assert.equal(terminating.frontends[1]!.tls?.certificates.length, 1);
  });
});

describe("workers", () => {
  const text = (workers: string, extra = "") =>
    `workers = ${workers}\n${extra}[frontend]\nbind_on = "127.0.0.1:7070"\n` +
    `[[frontend.backend]]\nforward_to = "127.0.0.1:2"\n`;
  const fails = (config: string, message: string) =>
    assert.throws(() => parseConfig(config), {
      message: `Cannot load config "<config>": ${message}`,
    });

  it("reads workers, one by default and one per core for auto", () => {
    assert.equal(parseConfig(text("1").replace("workers = 1\n", "")).workers, 1);
    assert.equal(parseConfig(text("4")).workers, 4);
    assert.ok(parseConfig(text('"auto"')).workers >= 1);
  });

  it("refuses a bad count, and what workers cannot do yet", () => {
    fails(text("0"), 'workers must be a whole number from 1 to 256, or "auto": current value is 0');
    fails(
      text('"many"'),
      'workers must be a whole number from 1 to 256, or "auto": current value is "many"',
    );
    // The supervisor's admin listener answers for every worker.
    assert.equal(parseConfig(text("2", '[admin]\nbind_on = "127.0.0.1:0"\n')).workers, 2);
    assert.throws(
      () => parseConfig(text("2").replace("127.0.0.1:7070", "127.0.0.1:0")),
      /workers need a fixed port \(frontend.bind_on is port 0\)/,
    );
    // The supervisor probes for every worker.
    assert.equal(parseConfig(text("2") + "[frontend.health]\n").frontends[0]!.health.active, true);
  });
});

describe("[admin] and its secrets", () => {
  const FRONTEND = '[frontend]\nbind_on = "127.0.0.1:7070"\n[[frontend.backend]]\n' +
    'forward_to = "127.0.0.1:8080"\n';
  const SECRET = "hunter2-but-short";

  /** The one-line error of a config text, checked to be a ConfigError. */
  function parseError(text: string): string {
    try {
      parseConfig(text, "lb.toml");
    } catch (error) {
      assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
      return error.message;
    }
    assert.fail("the config parsed");
  }

  it("never quotes the token in an error, however wrong it is", () => {
    const short = parseError(`${FRONTEND}[admin]\ntoken = "s3cr3t-short"\n`);
    assert.equal(
      short,
      'Cannot load config "lb.toml": admin.token must be at least 16 characters: it has 12',
    );
    const number = parseError(`${FRONTEND}[admin]\ntoken = 1234567890123456\n`);
    assert.doesNotMatch(number, /1234567890123456/);
    assert.equal(
      number,
      'Cannot load config "lb.toml": admin.token must be a string: its value is not shown',
    );
    const table = parseError(`${FRONTEND}[admin]\ntoken = ["${SECRET}"]\n`);
    assert.doesNotMatch(table, new RegExp(SECRET));
  });

  it("reads token_file's first line at load, without ever quoting it", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mb-token-"));
    try {
      const file = join(dir, "lb.toml");
      const tokenFile = join(dir, "token");
      await writeFile(file, `${FRONTEND}[admin]\ntoken_file = "${tokenFile}"\n`);
      await writeFile(tokenFile, "short-secret\nsecond line\n", { mode: 0o600 });
      await assert.rejects(loadConfig(file), (error: Error) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.path, "admin.token_file");
        assert.doesNotMatch(error.message, /short-secret/);
        assert.match(error.message, /at least 16 characters on its first line: it has 12/);
        return true;
      });
      await writeFile(tokenFile, "a-long-enough-secret-token\n");
      await chmod(tokenFile, 0o640);
      const admin = (await loadConfig(file)).admin!;
      assert.equal(admin.token, "a-long-enough-secret-token");
      assert.equal(admin.tokenFileMode, 0o640);
      await rm(tokenFile);
      await assert.rejects(
        loadConfig(file),
        new RegExp(`admin\\.token_file file not found: current value is "${tokenFile}"`),
      );
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  it("refuses an admin bind_on that takes or overlaps a frontend's address", () => {
    const admin = (bind: string) => parseError(`${FRONTEND}[admin]\nbind_on = "${bind}"\n`);
    assert.equal(
      admin("127.0.0.1:7070"),
      'Cannot load config "lb.toml": admin.bind_on clashes with frontend ("default" on ' +
        '127.0.0.1:7070): "127.0.0.1:7070"',
    );
    assert.match(admin("0.0.0.0:7070"), /admin\.bind_on clashes with frontend/);
    assert.match(admin("[::]:7070"), /admin\.bind_on clashes with frontend/);
    const wildcard = '[frontend]\nbind_on = "0.0.0.0:7070"\n[[frontend.backend]]\n' +
      'forward_to = "127.0.0.1:8080"\n[admin]\nbind_on = "127.0.0.1:7070"\n';
    assert.match(parseError(wildcard), /admin\.bind_on clashes with frontend/);
    // Another port, or another address family under 0.0.0.0, binds side by side.
    assert.equal(parseConfig(`${FRONTEND}[admin]\nbind_on = "127.0.0.1:7071"\n`).workers, 1);
    assert.equal(parseConfig(`${FRONTEND}[admin]\nbind_on = "127.0.0.2:7070"\n`).workers, 1);
  });

  it("refuses a host that looks like an IPv4 address and is not one", () => {
    assert.match(
      parseError(`${FRONTEND}[admin]\nbind_on = "256.1.1.1:9901"\n`),
      /admin\.bind_on must be host:port: the host is not a valid IPv4 address: current value is "256\.1\.1\.1:9901"/,
    );
    assert.match(
      parseError(FRONTEND.replace("127.0.0.1:7070", "1.2.3:7070")),
      /frontend\.bind_on must be host:port: the host is not a valid IPv4 address/,
    );
  });

  it("takes allowed_hosts as lowercase names", () => {
    const config = parseConfig(`${FRONTEND}[admin]\nallowed_hosts = ["LB.Internal", "ops."]\n`);
    assert.deepEqual(config.admin!.allowedHosts, ["lb.internal", "ops"]);
    assert.deepEqual(parseConfig(`${FRONTEND}[admin]\n`).admin!.allowedHosts, []);
    assert.match(
      parseError(`${FRONTEND}[admin]\nallowed_hosts = ["lb:9901"]\n`),
      /admin\.allowed_hosts\[0\] must be a host name such as "lb\.internal", without a port/,
    );
  });
});

describe("config files that are not configs", () => {
  /**
   * Loads `file` and returns its error and how long the load took; fails
   * after 2 s rather than wait for a load that never ends (`unblock` lets a
   * stuck reader go).
   */
  async function timedError(
    file: string,
    unblock = () => {},
  ): Promise<{ message: string; ms: number }> {
    const started = performance.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        unblock();
        reject(new Error(`loading ${file} did not answer within 2 s`));
      }, 2000);
    });
    try {
      await Promise.race([loadConfig(file), deadline]);
    } catch (error) {
      clearTimeout(timer);
      assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
      return { message: error.message, ms: performance.now() - started };
    }
    clearTimeout(timer);
    assert.fail(`${file} loaded`);
  }

  it("refuses /dev/zero at once, before reading it", async () => {
    const { message, ms } = await timedError("/dev/zero");
    assert.equal(
      message,
      'Cannot load config "/dev/zero": is not a regular file (a character device)',
    );
    assert.ok(ms < 2000, `answered in ${ms}ms`);
  });

  it("refuses a FIFO at once, without waiting for a writer", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mb-fifo-"));
    try {
      const fifo = join(dir, "lb.toml");
      execFileSync("mkfifo", [fifo]);
      // A writer that comes and goes ends a read that is waiting on the FIFO.
      const { message, ms } = await timedError(fifo, () => closeSync(openSync(fifo, "w")));
      assert.equal(message, `Cannot load config "${fifo}": is not a regular file (a FIFO)`);
      assert.ok(ms < 2000, `answered in ${ms}ms`);
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  it("refuses a file larger than 1 MiB, and reads one of exactly 1 MiB", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mb-big-"));
    try {
      const file = join(dir, "lb.toml");
      const head = '[frontend]\nbind_on = "127.0.0.1:7070"\n[[frontend.backend]]\n' +
        'forward_to = "127.0.0.1:8080"\n';
      const padded = (size: number) => head + "#".repeat(size - head.length - 1) + "\n";
      await writeFile(file, padded(1024 * 1024 + 1));
      const { message, ms } = await timedError(file);
      assert.equal(
        message,
        `Cannot load config "${file}": is larger than 1 MiB: it has ${1024 * 1024 + 1} bytes`,
      );
      assert.ok(ms < 2000, `answered in ${ms}ms`);
      await writeFile(file, padded(1024 * 1024));
      assert.equal((await loadConfig(file)).frontends.length, 1);
    } finally {
      await rm(dir, { recursive: true });
    }
  });
});
