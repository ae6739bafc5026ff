/**
 * The Net contract, checked on the adapter of the runtime running the tests:
 * the same file runs under `bun test` (Bun adapter) and `deno test` (Deno's).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Conn, ConnHandlers, Listener } from "../src/runtime/types.ts";
import { bytes, connect, eventually, net, randomBytes, sha256, text, within } from "./_helpers.ts";

/** Listens on a free port and hands over the first accepted connection. */
function acceptOne(): { listener: Listener; accepted: Promise<Conn> } {
  let resolve!: (conn: Conn) => void;
  const accepted = new Promise<Conn>((r) => (resolve = r));
  const listener = net.listen({ hostname: "127.0.0.1", port: 0, onConnection: resolve });
  return { listener, accepted };
}

function recorder(conn: Conn) {
  const events: string[] = [];
  let received = 0;
  const handlers: ConnHandlers = {
    data(chunk) {
      received += chunk.length;
      if (events.at(-1) !== "data") events.push("data");
    },
    end: () => events.push("end"),
    drain: () => events.push("drain"),
    close: (error) => events.push(error ? `close:${error.message}` : "close"),
  };
  conn.setHandlers(handlers);
  return { events, received: () => received };
}

describe(`${net.runtime} adapter`, () => {
  it("reports the bound port and both addresses of a connection", async () => {
    const { listener, accepted } = acceptOne();
    try {
      assert.ok(listener.address.port > 0);
      const client = await connect(listener.address.port);
      const server = await accepted;
      assert.equal(server.localAddress.port, listener.address.port);
      assert.equal(server.remoteAddress.port, client.conn.localAddress.port);
      assert.equal(client.conn.remoteAddress.hostname, "127.0.0.1");
      client.conn.close();
      server.close();
      await client.closed;
    } finally {
      listener.close();
    }
  });

  it("replays what arrived before setHandlers, in order", async () => {
    let resolve!: (conn: Conn) => void;
    const accepted = new Promise<Conn>((r) => (resolve = r));
    // Hand the connection over without setting handlers right away.
    const listener = net.listen({ hostname: "127.0.0.1", port: 0, onConnection: resolve });
    try {
      const client = await connect(listener.address.port);
      client.conn.write(bytes("early bytes"));
      client.conn.end();
      const server = await accepted;
      await new Promise((r) => setTimeout(r, 50));
      let got = "";
      let ended = false;
      server.setHandlers({
        data: (chunk) => void (got += text(chunk)),
        end: () => void (ended = true),
        drain() {},
        close() {},
      });
      await eventually(() => ended, "the replayed end");
      assert.equal(got, "early bytes");
      server.close();
      await client.closed;
    } finally {
      listener.close();
    }
  });

  it("half-closes with end() and keeps reading", async () => {
    const { listener, accepted } = acceptOne();
    try {
      const client = await connect(listener.address.port);
      const server = await accepted;
      const seen = recorder(server);
      client.conn.write(bytes("request"));
      client.conn.end();
      await eventually(() => seen.events.includes("end"), "the FIN");
      // The client's write side is closed; its read side is not.
      server.write(bytes("response after FIN"));
      server.end();
      await client.closed;
      assert.equal(text(client.received()), "response after FIN");
      await eventually(() => seen.events.at(-1) === "close", "the server side to close");
      assert.deepEqual(seen.events, ["data", "end", "close"]);
    } finally {
      listener.close();
    }
  });

  it("signals backpressure with write() false and drain, losing nothing", async () => {
    const { listener, accepted } = acceptOne();
    try {
      const client = await connect(listener.address.port);
      const server = await accepted;
      client.conn.pause(); // the reader stops: the kernel buffers fill up
      const payload = randomBytes(16 * 1024 * 1024, 11);
      const seen = recorder(server);
      let acceptedAll = true;
      for (let offset = 0; offset < payload.length; offset += 1024 * 1024) {
        acceptedAll = server.write(payload.subarray(offset, offset + 1024 * 1024)) &&
          acceptedAll;
      }
      assert.equal(acceptedAll, false, "a paused reader makes write() return false");
      assert.ok(server.bufferedAmount > 0);
      client.conn.resume();
      await eventually(() => seen.events.includes("drain"), "drain");
      assert.equal(server.bufferedAmount, 0);
      server.end();
      await client.ended;
      assert.equal(sha256(client.received()), sha256(payload));
      client.conn.close();
      await client.closed;
    } finally {
      listener.close();
    }
  });

  it("sends every buffered byte before the FIN of end(), and keeps reading after it", async () => {
    const { listener, accepted } = acceptOne();
    try {
      const client = await connect(listener.address.port);
      const server = await accepted;
      const events: string[] = [];
      let got = "";
      server.setHandlers({
        data: (chunk) => void (got += text(chunk)),
        end: () => events.push("end"),
        drain: () => events.push("drain"),
        close: () => events.push("close"),
      });
      client.conn.pause(); // the kernel buffers fill up: end() must wait for the flush
      const payload = randomBytes(16 * 1024 * 1024, 12);
      for (let offset = 0; offset < payload.length; offset += 1024 * 1024) {
        server.write(payload.subarray(offset, offset + 1024 * 1024));
      }
      assert.ok(server.bufferedAmount > 0, "bytes are still buffered when end() is called");
      server.end();
      assert.equal(server.write(bytes("after end")), false);
      let receivedAtFin = -1;
      client.ended.then(() => (receivedAtFin = client.receivedLength()));
      client.conn.resume();
      await within(client.ended, 20_000, "the FIN after the buffered bytes");
      assert.equal(receivedAtFin, payload.length, "every byte arrived before the FIN");
      assert.equal(sha256(client.received()), sha256(payload));
      // The half-closed side still reads.
      client.conn.write(bytes("reply after the FIN"));
      client.conn.end();
      await eventually(() => events.includes("end"), "the client's FIN at the server");
      assert.equal(got, "reply after the FIN");
      await within(client.closed, 5_000, "both directions to close");
      await eventually(() => events.at(-1) === "close", "the server side to close");
    } finally {
      listener.close();
    }
  });

  it("discards bytes written after end(), close() or reset(), without throwing", async () => {
    const servers: Conn[] = [];
    const listener = net.listen({
      hostname: "127.0.0.1",
      port: 0,
      onConnection: (conn) => servers.push(conn),
    });
    try {
      for (const how of ["end", "close", "reset"] as const) {
        const client = await connect(listener.address.port);
        await eventually(() => servers.length === 1, "the accepted connection");
        const server = servers.pop()!;
        server.setHandlers({ data() {}, end: () => server.end(), drain() {}, close() {} });
        server.write(bytes("before"));
        server[how]();
        assert.equal(server.write(bytes(" after")), false, `write after ${how}()`);
        assert.equal(server.write(bytes(" and again")), false, `write after ${how}()`);
        client.conn.end();
        await within(client.closed, 5_000, `the client to close after the server's ${how}()`);
        // A reset may drop "before" too; nothing written after it ever arrives.
        const got = text(client.received());
        assert.ok(got === "before" || (how === "reset" && got === ""), `${how}: got "${got}"`);
        assert.equal(server.write(bytes(" once closed")), false, `write once closed (${how})`);
      }
    } finally {
      listener.close();
    }
  });

  it("stops delivering data while paused", async () => {
    const { listener, accepted } = acceptOne();
    try {
      const client = await connect(listener.address.port);
      const server = await accepted;
      const seen = recorder(server);
      client.conn.write(bytes("first"));
      await eventually(() => seen.received() === 5, "the first bytes");
      server.pause();
      client.conn.write(bytes("second"));
      await new Promise((r) => setTimeout(r, 100));
      // Deno may finish one read that was already under way; nothing more.
      assert.ok(seen.received() <= 11);
      const before = seen.received();
      client.conn.write(bytes("third"));
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(seen.received(), before, "no data while paused");
      server.resume();
      await eventually(() => seen.received() === 16, "the rest after resume");
      client.conn.close();
      server.close();
      await client.closed;
    } finally {
      listener.close();
    }
  });

  it("rejects a connect to a closed port with ECONNREFUSED", async () => {
    const { listener } = acceptOne();
    const port = listener.address.port;
    listener.close();
    // Deno releases the listening socket once its pending accept is cancelled.
    await new Promise((r) => setTimeout(r, 50));
    await assert.rejects(net.connect({ hostname: "127.0.0.1", port }), { code: "ECONNREFUSED" });
  });

  it("throws EADDRINUSE when the port is taken", () => {
    const { listener } = acceptOne();
    try {
      assert.throws(
        () => net.listen({ ...listener.address, onConnection() {} }),
        { code: "EADDRINUSE" },
      );
    } finally {
      listener.close();
    }
  });
});
