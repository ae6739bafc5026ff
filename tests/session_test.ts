/**
 * Session races that real sockets cannot be made to produce on demand: two
 * connect attempts whose answers arrive out of order. The backends' connects
 * are controlled promises (the one mock here); the client is a real socket.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { getLogger } from "@logtape/logtape";
import { BackendState } from "../src/balancer/backend.ts";
import { Session, type SessionHost } from "../src/balancer/session.ts";
import type { Conn } from "../src/runtime/types.ts";
import { bytes, connect, echoServer, eventually, net, text } from "./_helpers.ts";

function backend(name: string): BackendState {
  return new BackendState({
    name,
    address: name,
    forwardTo: { hostname: "127.0.0.1", port: 1 },
    weight: 1,
  });
}

describe("Session", () => {
  it("serves through a retry even when the abandoned first connect succeeds meanwhile", async () => {
    const echo = echoServer({ greeting: "second:" });
    const [first, second] = [backend("first"), backend("second")];
    const pending: { resolve: (conn: Conn) => void; reject: (error: Error) => void }[] = [];
    let ended = false;
    const host: SessionHost = {
      connect: () => new Promise((resolve, reject) => pending.push({ resolve, reject })),
      pick: () => first,
      pickAnother: () => second,
      retries: 1,
      connectTimeoutMs: 50,
      refuseWith: "close",
      idleTimeoutMs: undefined,
      maxLifetimeMs: undefined,
      log: getLogger(["mini_balancer", "test"]),
      logInfo: false,
      ended: () => void (ended = true),
      timerStarted() {},
      timerCleared() {},
      connectFailed() {},
      connectSucceeded() {},
    };
    let accepted!: (conn: Conn) => void;
    const acceptedConn = new Promise<Conn>((resolve) => (accepted = resolve));
    const listener = net.listen({ hostname: "127.0.0.1", port: 0, onConnection: accepted });
    try {
      const client = await connect(listener.address.port);
      new Session(host, await acceptedConn);
      // The first attempt times out after 50 ms; the second one starts.
      await eventually(() => pending.length === 2, "the retry");
      // Now the first connect succeeds, late, while the second is under way.
      pending[0]!.resolve(
        await net.connect({ hostname: "127.0.0.1", port: echo.listener.address.port }),
      );
      await new Promise((resolve) => setTimeout(resolve, 20));
      pending[1]!.resolve(
        await net.connect({ hostname: "127.0.0.1", port: echo.listener.address.port }),
      );
      client.conn.write(bytes("x"));
      client.conn.end();
      await client.closed;
      assert.equal(text(client.received()), "second:x");
      await eventually(() => ended, "the session to end");
      assert.equal(first.active + second.active, 0);
    } finally {
      listener.close();
      echo.close();
    }
  });
});
