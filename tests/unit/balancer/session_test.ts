/**
 * Session races that real sockets cannot be made to produce on demand: two
 * connect attempts whose answers arrive out of order. The backends' connects
 * are controlled promises (the one mock here); the client is a real socket.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { NO_EVENTS } from "../../../src/balancer/events.ts";
import { Pool } from "../../../src/balancer/upstream/pool.ts";
import { Session, type SessionScope } from "../../../src/balancer/session/session.ts";
import { Sessions } from "../../../src/balancer/session/sessions.ts";
import { parseConfig } from "../../../src/config/load.ts";
import type { Conn } from "../../../src/runtime/types.ts";
import { ThrottledSide } from "../../../src/balancer/session/pipe.ts";
import {
  bytes,
  connect,
  echoServer,
  eventually,
  net,
  randomBytes,
  sha256,
  sleep,
  text,
  within,
} from "../../_helpers/index.ts";
import { pacingBackend } from "../../_helpers/pacing.ts";

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

  it("paces a throttled client's early bytes, and its FIN after them, once the backend connects", async () => {
    const [config] = parseConfig(
      '[frontend]\nbind_on = "127.0.0.1:0"\nmax_bytes_per_second = "100KiB"\n' +
        '[[frontend.backend]]\nname = "slow"\nforward_to = "127.0.0.1:1"\n',
    ).frontends;
    const backend = pacingBackend();
    let connected!: (conn: Conn) => void;
    let ended = false;
    const scope: SessionScope = {
      name: "test",
      localAddress: "127.0.0.1:0",
      config: config!,
      pool: new Pool(config!),
      events: NO_EVENTS,
      net: {
        ...net,
        dial: undefined,
        // The connect answers when the test says: the client's bytes and FIN come first.
        connect: () => new Promise((resolve) => (connected = resolve)),
      },
      sessions: new Sessions<Session>(() => void (ended = true)),
    };
    let accepted!: (conn: Conn) => void;
    const acceptedConn = new Promise<Conn>((resolve) => (accepted = resolve));
    const listener = net.listen({ hostname: "127.0.0.1", port: 0, onConnection: accepted });
    try {
      const client = await connect(listener.address.port);
      const session = new Session(scope, await acceptedConn, undefined, undefined);
      session.start();
      const early = randomBytes(60_000, 3);
      await client.send(early);
      client.conn.end();
      await eventually(() => scope.sessions.size === 1 && connected !== undefined, "the connect");
      await eventually(() => session.bytesFromClient === early.length, "the early bytes");
      await sleep(50); // and the FIN after them
      const port = Number(backend.address.split(":")[1]);
      const backendConn = await net.connect({ hostname: "127.0.0.1", port });
      const start = performance.now();
      connected(backendConn);
      await eventually(() => backend.connection !== undefined, "the backend's connection");
      const got = backend.connection!;
      await within(got.ended, 5_000, "the client's FIN at the backend");
      assert.equal(sha256(got.received()), sha256(early), "every early byte, then the FIN");
      // 60 kB less the tenth of a second's burst, at 100 KiB/s: 0.49 s, the
      // last byte then; a tenth of a second's worth in the first 100 ms.
      const seconds = (got.arrivals.at(-1)!.at - start) / 1000;
      assert.ok(seconds >= 0.42 && seconds <= 1, `the early bytes took ${seconds.toFixed(2)} s`);
      const first = got.arrivals.filter((a) => a.at < start + 100).reduce((n, a) => n + a.bytes, 0);
      assert.ok(first <= 25_000, `${first} bytes in the first 100 ms`);
      await client.closed;
      await eventually(() => ended, "the session to end");
      assert.equal(ThrottledSide.timers, 0, "no pace timer left behind");
    } finally {
      listener.close();
      backend.close();
    }
  });
});
