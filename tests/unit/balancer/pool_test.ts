/**
 * The pool: choosing among primaries and backups, passing over full
 * backends, and `update`, which keeps a backend's state across a change of
 * the list (the door reload and discovery will use).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Pool } from "../../../src/balancer/upstream/pool.ts";
import type { Algorithm, BackendConfig } from "../../../src/config/config.ts";

function backend(name: string, extra: Partial<BackendConfig> = {}): BackendConfig {
  const port = 8000 + name.charCodeAt(0);
  return {
    name,
    address: `127.0.0.1:${port}`,
    forwardTo: { hostname: "127.0.0.1", port },
    weight: 1,
    ...extra,
  };
}

const client = { client: { hostname: "127.0.0.1", port: 40000 } };

function pool(backends: BackendConfig[], algorithm: Algorithm = "round_robin") {
  return new Pool({ algorithm, backends });
}

const names = (p: Pool, n: number) =>
  Array.from({ length: n }, () => p.pick(client)?.config.name ?? "-");

describe("Pool", () => {
  it("uses backups only while no primary is up", () => {
    const p = pool([backend("a"), backend("b", { backup: true }), backend("c")]);
    assert.deepEqual(names(p, 4), ["a", "c", "a", "c"]);
    for (const b of p.backends) if (!b.config.backup) b.up = false;
    assert.deepEqual(names(p, 2), ["b", "b"]);
    assert.equal(p.why, "backup, no primary up");
    p.backends[0]!.up = true;
    assert.deepEqual(names(p, 2), ["a", "a"]);
  });

  it("passes over a full backend to the next one in config order", () => {
    const p = pool([backend("a", { maxConnections: 1 }), backend("b"), backend("c")]);
    p.backends[0]!.active = 1;
    assert.equal(p.pick(client)?.config.name, "b"); // round-robin chose a, which is full
    assert.equal(p.why, "next not full");
  });

  it("says all full only when every backend that is up is full", () => {
    const p = pool([backend("a", { maxConnections: 1 }), backend("b", { maxConnections: 2 })]);
    assert.equal(p.allFull(), false);
    p.backends[0]!.active = 1;
    assert.equal(p.allFull(), false);
    p.backends[1]!.active = 2;
    assert.equal(p.allFull(), true);
    p.backends[1]!.up = false;
    assert.equal(p.allFull(), true, "the one that is up is full");
    p.backends[0]!.up = false;
    assert.equal(p.allFull(), false, "nothing is up: that is down, not full");
    assert.equal(p.anyUp(), false);
  });

  it("never says all full without a max_connections", () => {
    const p = pool([backend("a")]);
    p.backends[0]!.active = 1_000_000;
    assert.equal(p.allFull(), false);
  });

  it("retries on an untried backend, then on none", () => {
    const p = pool([backend("a"), backend("b")], "source_hash");
    const first = p.pick(client)!;
    const second = p.pickAnother(client, [first])!;
    assert.notEqual(second, first);
    assert.equal(p.pickAnother(client, [first, second]), undefined);
  });

  it("keeps a backend's state across an update that keeps its name", () => {
    const p = pool([backend("a"), backend("b")]);
    const [a, b] = p.backends;
    a!.active = 3;
    b!.up = false;
    const changes = p.update({
      algorithm: "round_robin",
      backends: [backend("b", { weight: 5 }), backend("c")],
    });
    assert.deepEqual(changes, { added: ["c"], removed: ["a"] });
    assert.equal(p.backends[0], b, "the same state object");
    assert.equal(p.backends[0]!.config.weight, 5, "with its new settings");
    assert.equal(p.backends[0]!.up, false, "and its health");
    assert.equal(a!.removed, true);
    assert.equal(a!.active, 3, "its open connections finish on it");
    assert.deepEqual(names(p, 3), ["c", "c", "c"], "removed and down backends get nothing");
  });

  it("changes the algorithm on update", () => {
    const p = pool([backend("a", { weight: 3 }), backend("b")]);
    assert.deepEqual(names(p, 4), ["a", "b", "a", "b"]);
    p.update({
      algorithm: "weighted_round_robin",
      backends: [backend("a", { weight: 3 }), backend("b")],
    });
    assert.deepEqual(names(p, 4), ["a", "a", "b", "a"]);
  });
});
