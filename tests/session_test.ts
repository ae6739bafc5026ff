/**
 * Session races that real sockets cannot be made to produce on demand: two
 * connect attempts whose answers arrive out of order. The backends' connects
 * are controlled promises (the one mock here); the client is a real socket.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { NO_EVENTS } from "../src/balancer/events.ts";
import { Pool } from "../src/balancer/pool.ts";
import { Session, type SessionScope } from "../src/balancer/session.ts";
import { Sessions } from "../src/balancer/sessions.ts";
import { parseConfig } from "../src/config/load.ts";
import type { Conn } from "../src/runtime/types.ts";
import { bytes, connect, echoServer, eventually, net, text } from "./_helpers.ts";

describe("Session", () => {
  it("serves through a retry even when the abandoned first connect succeeds meanwhile", async () => {
    const echo = echoServer({ greeting: "second:" });
    const [config] = parseConfig(
      '[frontend]\nbind_on = "127.0.0.1:0"\nconnect_timeout = "50ms"\nretries = 1\n' +
        '[[frontend.backend]]\nname = "first"\nforward_to = "127.0.0.1:1"\n' +
        '[[frontend.backend]]\nname = "second"\nforward_to = "127.0.0.1:2"\n',
    ).frontends;
    const pool = new Pool(config!);
    const [first, second] = pool.backends;
    const pending: { resolve: (conn: Conn) => void; reject: (error: Error) => void }[] = [];
    let ended = false;
    const scope: SessionScope = {
      name: "test",
      localAddress: "127.0.0.1:0",
      config: config!,
      pool,
      events: NO_EVENTS,
      net: {
        ...net,
        // Every connect goes through this one (no dial of the adapter's own).
        dial: undefined,
        connect: () => new Promise((resolve, reject) => pending.push({ resolve, reject })),
      },
      sessions: new Sessions<Session>(() => void (ended = true)),
    };
    let accepted!: (conn: Conn) => void;
    const acceptedConn = new Promise<Conn>((resolve) => (accepted = resolve));
    const listener = net.listen({ hostname: "127.0.0.1", port: 0, onConnection: accepted });
    try {
      const client = await connect(listener.address.port);
      new Session(scope, await acceptedConn, undefined, undefined).start();
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
      assert.equal(first!.active + second!.active, 0);
      assert.equal(scope.sessions.timers, 0);
    } finally {
      listener.close();
      echo.close();
    }
  });
});
