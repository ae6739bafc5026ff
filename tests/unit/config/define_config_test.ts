/**
 * `defineConfig(object)`: a config as a program's object gives the config
 * the same TOML gives, and the same one-line messages and paths (the file
 * named `<object>`); durations may be numbers of milliseconds there, and
 * stay strings in a file.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { defineConfig } from "../../../src/config/define.ts";
import { ConfigError } from "../../../src/config/config_error.ts";
import { parseConfig } from "../../../src/config/load.ts";

const TOML = `
[[frontends]]
name = "web"
bind_on = "127.0.0.1:7070"
algorithm = "weighted_round_robin"
connect_timeout = "2s"
idle_timeout = "1m"
health = { interval = "500ms" }
[[frontends.backend]]
name = "a"
forward_to = "127.0.0.1:8080"
weight = 3
[[frontends.backend]]
forward_to = "127.0.0.1:8081"
`;

function object(connect: unknown = "2s", extra: Record<string, unknown> = {}) {
  return {
    frontends: [{
      name: "web",
      bind_on: "127.0.0.1:7070",
      algorithm: "weighted_round_robin",
      connect_timeout: connect,
      idle_timeout: "1m",
      health: { interval: "500ms" },
      backend: [{ name: "a", forward_to: "127.0.0.1:8080", weight: 3 }, {
        forward_to: "127.0.0.1:8081",
      }],
      ...extra,
    }],
  };
}

/** The message `make` throws, as a ConfigError. */
function messageOf(make: () => unknown): string {
  try {
    make();
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    assert.ok(!error.message.includes("\n"));
    return error.message;
  }
  throw new Error("it was accepted");
}

describe("defineConfig", () => {
  it("gives the config the same TOML gives", () => {
    assert.deepEqual(defineConfig(object()), parseConfig(TOML));
  });

  it("takes a duration as a whole number of milliseconds", () => {
    const config = defineConfig(object(2000, { health: { interval: 500 }, idle_timeout: 60_000 }));
    assert.deepEqual(config, parseConfig(TOML));
    assert.equal(config.frontends[0]!.connectTimeoutMs, 2000);
  });

  it("refuses what the file refuses, with the same message and path", () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ color: "red" }, 'color = "red"'],
      [{ retries: "two" }, 'retries = "two"'],
      [{ idle_timeout: "soon" }, 'idle_timeout = "soon"'],
      [{ algorithm: "fastest" }, 'algorithm = "fastest"'],
      [{ backend: [{ forward_to: "nope" }] }, '[[frontends.backend]]\nforward_to = "nope"'],
    ];
    for (const [extra, toml] of cases) {
      const file = `[[frontends]]\nname = "web"\nbind_on = "127.0.0.1:7070"\n` +
        (extra.backend === undefined
          ? `${toml}\n[[frontends.backend]]\nforward_to = "127.0.0.1:8080"\n`
          : `${toml}\n`);
      const fromFile = messageOf(() => parseConfig(file));
      const fromObject = messageOf(() =>
        defineConfig({
          frontends: [{
            name: "web",
            bind_on: "127.0.0.1:7070",
            backend: [{ forward_to: "127.0.0.1:8080" }],
            ...extra,
          }],
        })
      );
      assert.equal(fromObject, fromFile.replace('"<config>"', '"<object>"'), toml);
    }
    assert.equal(
      messageOf(() => defineConfig({})),
      'Cannot load config "<object>": frontend is required: add a [frontend] table or [[frontends]] tables',
    );
  });

  it("refuses a number of milliseconds that is not whole, negative, too long or too short", () => {
    const at = 'Cannot load config "<object>": frontends[0].connect_timeout';
    assert.equal(
      messageOf(() => defineConfig(object(-1))),
      `${at} must be a whole, non-negative number of milliseconds: current value is -1`,
    );
    assert.equal(
      messageOf(() => defineConfig(object(1.5))),
      `${at} must be a whole, non-negative number of milliseconds: current value is 1.5`,
    );
    assert.equal(
      messageOf(() => defineConfig(object(2 ** 31))),
      `${at} must be at most 2147483647ms (about 24.8 days): current value is 2147483648`,
    );
    assert.equal(
      messageOf(() => defineConfig(object(0))),
      `${at} must be at least 1ms: current value is 0`,
    );
    assert.equal(
      messageOf(() => defineConfig(object(true))),
      `${at} must be a duration string or a whole number of milliseconds: current value is true`,
    );
    assert.equal(
      messageOf(() => defineConfig("frontend" as never)),
      'Cannot load config "<object>": must be an object: current value is "frontend"',
    );
  });

  it("leaves a file's durations strings: a bare number is refused as before", () => {
    assert.equal(
      messageOf(() => parseConfig(TOML.replace('connect_timeout = "2s"', "connect_timeout = 2"))),
      'Cannot load config "<config>": frontends[0].connect_timeout must be a string: ' +
        "current value is 2",
    );
  });
});
