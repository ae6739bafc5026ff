/**
 * The supervisor's admin listener as pure merges: the workers' Prometheus
 * texts and statuses summed into one.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { mergeMetrics, mergeStatus } from "../../../src/workers/admin.ts";

describe("merging the workers' figures", () => {
  it("sums counters and connections, keeps the largest state and the smallest start time", () => {
    const worker = (accepted: number, up: number, start: number) =>
      [
        "# HELP mini_balancer_connections_accepted_total Client connections accepted.",
        "# TYPE mini_balancer_connections_accepted_total counter",
        `mini_balancer_connections_accepted_total{frontend="web"} ${accepted}`,
        `mini_balancer_backend_up{frontend="web",backend="a",state="up"} ${up}`,
        `process_start_time_seconds ${start}`,
        "",
      ].join("\n");
    assert.equal(
      mergeMetrics([worker(3, 1, 100), worker(4, 1, 90)]),
      [
        "# HELP mini_balancer_connections_accepted_total Client connections accepted.",
        "# TYPE mini_balancer_connections_accepted_total counter",
        'mini_balancer_connections_accepted_total{frontend="web"} 7',
        'mini_balancer_backend_up{frontend="web",backend="a",state="up"} 1',
        "process_start_time_seconds 90",
        "",
      ].join("\n"),
    );
  });

  it("sums frontends and backends by name, but not their weights", () => {
    const status = (active: number, total: number) => ({
      frontends: [{
        name: "web",
        active,
        algorithm: "round_robin",
        backends: [{ name: "a", weight: 3, total, state: "up" }],
      }],
    });
    assert.deepEqual(mergeStatus([status(1, 10), status(2, 5)]), [{
      name: "web",
      active: 3,
      algorithm: "round_robin",
      backends: [{ name: "a", weight: 3, total: 15, state: "up" }],
    }]);
  });
});
