/**
 * The datagram half of the Net contract (`Net.bindDatagram`), checked on the
 * adapter of the runtime running the tests: the same file runs under
 * `bun test`, `deno test` (with `--unstable-net`) and, bundled, `node --test`
 * (`npm run test:node`).
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import type { DatagramOptions, DatagramSocket, Endpoint, Net } from "../../src/runtime/types.ts";
import {
  bytes,
  eventually,
  net,
  randomBytes,
  sha256,
  sleep,
  text,
  within,
} from "../_helpers/index.ts";

/** What one socket received. */
interface Inbox {
  messages: { data: Uint8Array; from: Endpoint }[];
  errors: Error[];
}

const open: DatagramSocket[] = [];

afterEach(() => {
  for (const socket of open.splice(0)) socket.close();
});

/** The adapter's bindDatagram, which every adapter has. */
function bindDatagram(): NonNullable<Net["bindDatagram"]> {
  const bind = net.bindDatagram;
  assert.ok(bind !== undefined, `${net.runtime} has no bindDatagram`);
  return bind;
}

/** Binds a socket on loopback (a free port unless given) that records what it receives. */
async function bound(
  options: Partial<Omit<DatagramOptions, "handlers">> = {},
): Promise<{ socket: DatagramSocket; inbox: Inbox }> {
  const inbox: Inbox = { messages: [], errors: [] };
  const socket = await bindDatagram()({
    hostname: "127.0.0.1",
    port: 0,
    ...options,
    handlers: {
      message: (data, from) => inbox.messages.push({ data, from }),
      error: (error) => inbox.errors.push(error),
    },
  });
  open.push(socket);
  return { socket, inbox };
}

/** A UDP port nobody binds (bound, then closed). */
async function closedUdpPort(): Promise<number> {
  const { socket } = await bound();
  socket.close();
  return socket.address.port;
}

describe(`datagrams on ${net.runtime}`, () => {
  it("binds loopback and reports the real port", async () => {
    const { socket } = await bound();
    assert.equal(socket.address.hostname, "127.0.0.1");
    assert.ok(socket.address.port > 0 && socket.address.port < 65536);
  });

  it("carries datagrams of 1 to 65,507 bytes intact, with the sender's address", async () => {
    const a = await bound();
    const b = await bound();
    const sizes = [1, 2, 512, 1472, 1473, 8192, 32_768, 65_507];
    for (const [i, size] of sizes.entries()) {
      assert.equal(a.socket.send(randomBytes(size, i + 1), b.socket.address), true);
      await eventually(() => b.inbox.messages.length === i + 1, `the ${size}-byte datagram`, 3000);
    }
    assert.deepEqual(
      b.inbox.messages.map((m) => [m.data.byteLength, sha256(m.data)]),
      sizes.map((size, i) => [size, sha256(randomBytes(size, i + 1))]),
    );
    for (const { from } of b.inbox.messages) assert.deepEqual(from, a.socket.address);
  });

  it("drops a datagram larger than maxDatagramBytes, never delivering it truncated", async () => {
    const a = await bound();
    const b = await bound({ maxDatagramBytes: 100 });
    a.socket.send(randomBytes(101, 1), b.socket.address);
    a.socket.send(randomBytes(100, 2), b.socket.address);
    await eventually(() => b.inbox.messages.length >= 1, "the 100-byte datagram", 3000);
    await sleep(50);
    assert.deepEqual(b.inbox.messages.map((m) => sha256(m.data)), [sha256(randomBytes(100, 2))]);
  });

  it("keeps boundaries: three datagrams sent back to back arrive as three", async () => {
    const a = await bound();
    const b = await bound();
    for (const word of ["one", "two", "three"]) a.socket.send(bytes(word), b.socket.address);
    await eventually(() => b.inbox.messages.length === 3, "three datagrams", 3000);
    assert.deepEqual(b.inbox.messages.map((m) => text(m.data)).sort(), ["one", "three", "two"]);
    await sleep(50);
    assert.equal(b.inbox.messages.length, 3);
  });

  it("a datagram handed to message is the handler's to keep", async () => {
    const a = await bound();
    const b = await bound();
    a.socket.send(bytes("first"), b.socket.address);
    a.socket.send(bytes("other"), b.socket.address);
    await eventually(() => b.inbox.messages.length === 2, "two datagrams", 3000);
    assert.deepEqual(b.inbox.messages.map((m) => text(m.data)).sort(), ["first", "other"]);
  });

  it("a connected socket sends to its peer and gets its replies", async () => {
    const server = await bound();
    const client = await bound({ connect: server.socket.address });
    assert.equal(client.socket.send(bytes("ping")), true);
    await eventually(() => server.inbox.messages.length === 1, "the request", 3000);
    const request = server.inbox.messages[0]!;
    assert.equal(text(request.data), "ping");
    assert.deepEqual(request.from, client.socket.address);
    server.socket.send(bytes("pong"), request.from);
    await eventually(() => client.inbox.messages.length === 1, "the reply", 3000);
    assert.equal(text(client.inbox.messages[0]!.data), "pong");
    assert.deepEqual(client.inbox.messages[0]!.from, server.socket.address);
  });

  it("a connected socket ignores a stranger's datagram", async () => {
    const server = await bound();
    const stranger = await bound();
    const client = await bound({ connect: server.socket.address });
    stranger.socket.send(bytes("stranger"), client.socket.address);
    server.socket.send(bytes("peer"), client.socket.address);
    await eventually(() => client.inbox.messages.length >= 1, "the peer's datagram", 3000);
    await sleep(100);
    assert.deepEqual(client.inbox.messages.map((m) => text(m.data)), ["peer"]);
  });

  it(
    net.runtime === "deno"
      ? "a connected socket sending to a closed port reports nothing (Deno reports no ICMP error)"
      : "a connected socket sending to a closed port gets ECONNREFUSED and stays open",
    async () => {
      const port = await closedUdpPort();
      const client = await bound({ connect: { hostname: "127.0.0.1", port } });
      client.socket.send(bytes("anyone?"));
      if (net.runtime === "deno") {
        await sleep(300);
        assert.deepEqual(client.inbox.errors, []);
      } else {
        await eventually(() => client.inbox.errors.length >= 1, "ECONNREFUSED", 3000);
        assert.equal((client.inbox.errors[0] as { code?: string }).code, "ECONNREFUSED");
      }
      // Still open: once the peer binds its port, the same socket reaches it and gets its reply.
      const server = await within(bound({ port }), 3000, "a bind of the peer's port");
      assert.equal(client.socket.send(bytes("again")), true);
      await eventually(() => server.inbox.messages.length === 1, "a send after the error", 3000);
      server.socket.send(bytes("back"), server.inbox.messages[0]!.from);
      await eventually(() => client.inbox.messages.length === 1, "the reply", 3000);
      assert.equal(text(client.inbox.messages[0]!.data), "back");
    },
  );

  it("close() stops the handlers and frees the port", async () => {
    const a = await bound();
    const b = await bound();
    const port = b.socket.address.port;
    a.socket.send(bytes("late"), b.socket.address);
    b.socket.close();
    b.socket.close();
    assert.equal(b.socket.send(bytes("after close"), a.socket.address), false);
    await sleep(100);
    assert.deepEqual(b.inbox.messages, []);
    assert.deepEqual(b.inbox.errors, []);
    const again = await within(bound({ port }), 3000, "a rebind of the closed port");
    assert.equal(again.socket.address.port, port);
    a.socket.send(bytes("to the new one"), again.socket.address);
    await eventually(
      () => again.inbox.messages.length === 1,
      "a datagram to the rebound port",
      3000,
    );
  });

  it("binding a taken port fails with EADDRINUSE and one clear line", async () => {
    const a = await bound();
    const port = a.socket.address.port;
    await assert.rejects(bound({ port }), (error: Error & { code?: string }) => {
      assert.equal(error.code, "EADDRINUSE");
      assert.equal(error.message, `cannot bind UDP 127.0.0.1:${port}: the port is taken`);
      return true;
    });
  });

  it(
    net.runtime === "bun"
      ? "reusePort: two sockets share a port and the kernel spreads senders over both"
      : "reusePort is refused in one line (the runtime cannot set SO_REUSEPORT on UDP)",
    async () => {
      const a = await bound({ reusePort: true }).catch((error: Error & { code?: string }) => error);
      if (net.runtime !== "bun") {
        assert.ok(a instanceof Error);
        assert.equal(a.code, "ENOTSUP");
        assert.match(a.message, /^cannot bind UDP 127\.0\.0\.1:0 with reusePort: \w+ .*cannot/);
        return;
      }
      assert.ok(!(a instanceof Error), String(a));
      const b = await bound({ reusePort: true, port: a.socket.address.port });
      for (let i = 0; i < 40; i++) {
        const sender = await bound();
        sender.socket.send(bytes("x"), a.socket.address);
      }
      const total = () => a.inbox.messages.length + b.inbox.messages.length;
      await eventually(() => total() === 40, "40 datagrams", 3000);
      assert.ok(a.inbox.messages.length >= 1 && b.inbox.messages.length >= 1);
    },
  );
});
