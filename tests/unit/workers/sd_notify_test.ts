/**
 * The notify protocol's messages, their order and timers, and the status
 * line, with a recording `Net.notify` (the real socket is the contract
 * test's and the end-to-end test's).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { FrontendStatus } from "../../../src/balancer/balancer.ts";
import type { Net } from "../../../src/runtime/types.ts";
import {
  isWorkerReadyReport,
  SdNotify,
  statusLine,
  workerReadyReport,
} from "../../../src/workers/sd_notify.ts";
import { net, sleep } from "../../_helpers/index.ts";

/** A Net whose notify records what it was asked to send, or fails. */
function recording(fail = false) {
  const sent: { socket: string; message: string }[] = [];
  const fake: Net = {
    ...net,
    notify(socket, message) {
      sent.push({ socket, message });
      return fail ? Promise.reject(new Error("nobody there")) : Promise.resolve();
    },
  };
  return { fake, sent };
}

describe("SdNotify", () => {
  it("is made only when NOTIFY_SOCKET is set", () => {
    const { fake } = recording();
    assert.equal(SdNotify.fromEnvironment(fake, {}), undefined);
    assert.equal(SdNotify.fromEnvironment(fake, { NOTIFY_SOCKET: "" }), undefined);
    assert.ok(SdNotify.fromEnvironment(fake, { NOTIFY_SOCKET: "@x" }));
    const { notify: _, ...without } = net;
    assert.equal(SdNotify.fromEnvironment(without, { NOTIFY_SOCKET: "@x" }), undefined);
  });

  it("pings the watchdog at half WATCHDOG_USEC, only when WATCHDOG_PID is unset or ours", () => {
    const { fake } = recording();
    const at = (env: Record<string, string>) =>
      SdNotify.fromEnvironment(fake, { NOTIFY_SOCKET: "@x", ...env }, 4242)?.watchdogIntervalMs;
    assert.equal(at({}), undefined);
    assert.equal(at({ WATCHDOG_USEC: "400000" }), 200);
    assert.equal(at({ WATCHDOG_USEC: "400000", WATCHDOG_PID: "4242" }), 200);
    assert.equal(at({ WATCHDOG_USEC: "400000", WATCHDOG_PID: "1" }), undefined);
    assert.equal(at({ WATCHDOG_USEC: "soon" }), undefined);
    assert.equal(at({ WATCHDOG_USEC: "0" }), undefined);
  });

  it("sends its messages in order, the status on one line", async () => {
    const { fake, sent } = recording();
    const notify = SdNotify.fromEnvironment(fake, { NOTIFY_SOCKET: "/run/x" })!;
    notify.ready("a\nb");
    notify.reloading();
    notify.ready("c");
    notify.stopping();
    await notify.flushed();
    assert.deepEqual(sent.map((s) => s.socket), ["/run/x", "/run/x", "/run/x", "/run/x"]);
    const messages = sent.map((s) => s.message);
    assert.equal(messages[0], "READY=1\nSTATUS=a b");
    assert.match(messages[1]!, /^RELOADING=1(\nMONOTONIC_USEC=\d+)?$/);
    assert.deepEqual(messages.slice(2), ["READY=1\nSTATUS=c", "STOPPING=1"]);
  });

  it("pings the watchdog from a timer, and stops at STOPPING=1", async () => {
    const { fake, sent } = recording();
    const notify = SdNotify.fromEnvironment(fake, {
      NOTIFY_SOCKET: "@x",
      WATCHDOG_USEC: "100000",
    })!;
    notify.start(() => "s");
    await sleep(190);
    notify.stopping();
    const pings = sent.filter((s) => s.message === "WATCHDOG=1").length;
    assert.ok(pings >= 2 && pings <= 4, `${pings} pings in 190 ms at 50 ms`);
    await sleep(120);
    assert.equal(sent.filter((s) => s.message === "WATCHDOG=1").length, pings);
    assert.equal(sent.at(-1)!.message, "STOPPING=1");
  });

  it("sends the status again every so often, made afresh each time", async () => {
    const { fake, sent } = recording();
    const notify = SdNotify.fromEnvironment(fake, { NOTIFY_SOCKET: "@x" })!;
    let n = 0;
    notify.start(() => `n=${++n}`, 40);
    await sleep(150);
    notify.close();
    const statuses = sent.map((s) => s.message);
    assert.ok(statuses.length >= 2 && statuses.length <= 4, statuses.join(" "));
    assert.deepEqual(statuses.slice(0, 2), ["STATUS=n=1", "STATUS=n=2"]);
  });

  it("survives a socket that refuses every message", async () => {
    const { fake, sent } = recording(true);
    const notify = SdNotify.fromEnvironment(fake, { NOTIFY_SOCKET: "@nobody" })!;
    notify.ready("x");
    notify.stopping();
    await notify.flushed();
    assert.equal(sent.length, 2);
  });

  it("drops a ping or a status while another message waits, never a state", async () => {
    const { fake, sent } = recording();
    const notify = SdNotify.fromEnvironment(fake, { NOTIFY_SOCKET: "@x" })!;
    notify.ready("a");
    notify.status("dropped");
    notify.reloading();
    notify.status("dropped too");
    await notify.flushed();
    notify.status("b");
    await notify.flushed();
    const messages = sent.map((s) => s.message.split("\n")[0]);
    assert.deepEqual(messages, ["READY=1", "RELOADING=1", "STATUS=b"]);
  });
});

describe("statusLine", () => {
  const backend = (state: "up" | "down") => ({
    name: state,
    address: "127.0.0.1:1",
    state,
    weight: 1,
    effectiveWeight: 1,
    backup: false,
    active: 0,
  });
  const frontend = (active: number, states: ("up" | "down")[]): FrontendStatus => ({
    name: "f",
    address: "127.0.0.1:2",
    transport: "tcp",
    algorithm: "round-robin",
    active,
    queued: 0,
    backends: states.map(backend),
  });

  it("counts frontends, open connections and backends up", () => {
    assert.equal(
      statusLine([frontend(3, ["up", "down"]), frontend(11, ["up"])]),
      "2 frontends, 14 open connections, 2/3 backends up",
    );
    assert.equal(
      statusLine([frontend(1, ["down"])]),
      "1 frontend, 1 open connection, 0/1 backends up",
    );
  });
});

describe("a worker's ready report", () => {
  it("is one line its supervisor tells from any other", () => {
    assert.ok(isWorkerReadyReport(workerReadyReport()));
    assert.ok(!workerReadyReport().includes("\n"));
    for (const line of ["", "ready", '{"adminPort":80}', '{"ready":false}']) {
      assert.ok(!isWorkerReadyReport(line), line);
    }
  });
});
