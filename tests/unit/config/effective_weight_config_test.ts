/**
 * The effective weight keys (slow_start, [frontend.health] agent_port and
 * agent_interval): read, defaulted, refused with one clear line, and shown
 * by `check`.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseConfig } from "../../../src/config/load.ts";
import { summarizeConfig } from "../../../src/config/summary.ts";

const BASE = '[frontend]\nbind_on = "127.0.0.1:1"\n';
const BACKEND = '[[frontend.backend]]\nforward_to = "127.0.0.1:2"\n';

/** Asserts that `toml` is refused with exactly `message` after the file's name, on one line. */
function refused(toml: string, message: string): void {
  assert.throws(() => parseConfig(toml, "w.toml"), (error: Error) => {
    assert.equal(error.message, `Cannot load config "w.toml": ${message}`);
    assert.ok(!error.message.includes("\n"), "one line");
    return true;
  });
}

describe("slow_start and agent checks in the config", () => {
  it("reads them, the backend's slow_start beside the frontend's, agent_interval defaulting to interval", () => {
    const frontend = parseConfig(
      BASE.replace("\n", '\nslow_start = "30s"\n') +
        '[frontend.health]\ninterval = "3s"\nagent_port = 9777\n' + BACKEND +
        '[[frontend.backend]]\nforward_to = "127.0.0.1:3"\nslow_start = "5s"\n',
    ).frontends[0]!;
    assert.equal(frontend.slowStartMs, 30_000);
    assert.equal(frontend.backends[0]!.slowStartMs, undefined);
    assert.equal(frontend.backends[1]!.slowStartMs, 5000);
    assert.equal(frontend.health.agentPort, 9777);
    assert.equal(frontend.health.agentIntervalMs, 3000);
    const plain = parseConfig(BASE + BACKEND).frontends[0]!;
    assert.equal(plain.slowStartMs, undefined);
    assert.equal(plain.health.agentPort, undefined);
    const own = parseConfig(
      BASE + '[frontend.health]\nagent_port = 1\nagent_interval = "250ms"\n' + BACKEND,
    );
    assert.equal(own.frontends[0]!.health.agentIntervalMs, 250);
  });

  it("refuses bad values with one line naming the file, the key and the problem", () => {
    refused(
      BASE + "[frontend.health]\nagent_port = 0\n" + BACKEND,
      "frontend.health.agent_port must be a whole number from 1 to 65535: current value is 0",
    );
    refused(
      BASE + '[frontend.health]\nagent_port = "x"\n' + BACKEND,
      'frontend.health.agent_port must be a whole number: current value is "x"',
    );
    refused(
      BASE + '[frontend.health]\nagent_port = 9\nagent_interval = "1ms"\n' + BACKEND,
      'frontend.health.agent_interval must be at least 10ms: current value is "1ms"',
    );
    refused(
      BASE.replace("\n", '\nslow_start = "soon"\n') + BACKEND,
      'frontend.slow_start must be a duration such as "250ms", "5s" or "1m": current value is "soon"',
    );
    refused(
      BASE + BACKEND + "slow_start = 5\n",
      "frontend.backend[0].slow_start must be a string: current value is 5",
    );
  });

  it("check shows them", () => {
    const lines = summarizeConfig(parseConfig(
      BASE.replace("\n", '\nslow_start = "30s"\n') +
        '[frontend.health]\nagent_port = 9777\nagent_interval = "1s"\n' + BACKEND +
        'slow_start = "5s"\n',
    )).join("\n");
    assert.match(lines, /agent checks on port 9777 every 1s/);
    assert.match(lines, /slow start 30s/);
    assert.match(lines, /slow_start 5s/);
  });
});
