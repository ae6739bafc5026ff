/**
 * `Net.notify`, checked on the adapter of the runtime running the tests
 * (Bun's libc FFI, Deno's unixpacket): one datagram, whole, to a path and
 * to an abstract `@name`, and a rejection when nobody receives. Node's
 * adapter has none (no Unix datagram sockets, no FFI).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import process from "node:process";
import { describe, it } from "node:test";
import { net, tempDir } from "../_helpers/index.ts";
import { notifyReceiver } from "../_helpers/notify.ts";

describe(`Net.notify on ${net.runtime}`, {
  skip: net.notify === undefined ? "this runtime has no Net.notify" : false,
}, () => {
  it("delivers one datagram, newlines and all, to a socket path", async () => {
    const dir = await tempDir();
    const receiver = await notifyReceiver(join(dir.path, "notify.sock"));
    try {
      await net.notify!(join(dir.path, "notify.sock"), "READY=1\nSTATUS=a b c");
      const got = await receiver.nth("READY=1", 1, 5_000);
      assert.equal(got.message, "READY=1\nSTATUS=a b c");
      assert.equal(got.pid, process.pid);
    } finally {
      await receiver.close();
      await dir.cleanup();
    }
  });

  it("delivers to an abstract @name", async () => {
    const name = `@mini-balancer-contract-${process.pid}-${Date.now()}`;
    const receiver = await notifyReceiver(name);
    try {
      await net.notify!(name, "WATCHDOG=1");
      await net.notify!(name, "STOPPING=1");
      await receiver.nth("STOPPING=1", 1, 5_000);
      assert.deepEqual(receiver.got.map((d) => d.message), ["WATCHDOG=1", "STOPPING=1"]);
    } finally {
      await receiver.close();
    }
  });

  it("rejects when nobody receives on the path", async () => {
    const dir = await tempDir();
    try {
      await assert.rejects(net.notify!(join(dir.path, "nobody.sock"), "READY=1"));
    } finally {
      await dir.cleanup();
    }
  });
});
