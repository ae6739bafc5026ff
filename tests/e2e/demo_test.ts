import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { startBackends } from "../../examples/demo.ts";
import type { Listener, Net } from "../../src/runtime/types.ts";
import { net } from "../_helpers/index.ts";

describe("startBackends", () => {
  it("says in one line which port is busy, and closes the backends it started", () => {
    const busy = net.listen({ hostname: "127.0.0.1", port: 0, onConnection: (c) => c.reset() });
    // The real sockets, counting which listeners were opened and closed.
    const opened: string[] = [];
    const closed: string[] = [];
    const counting: Net = Object.assign(Object.create(net), {
      listen(options: Parameters<Net["listen"]>[0]): Listener {
        const listener = net.listen(options);
        const port = String(listener.address.port);
        opened.push(port);
        return {
          address: listener.address,
          close() {
            closed.push(port);
            listener.close();
          },
        };
      },
    });
    try {
      assert.throws(
        () => startBackends(counting, [{ hostname: "127.0.0.1", port: 0 }, busy.address]),
        (error: Error) => {
          assert.equal(
            error.message,
            `demo: cannot listen on 127.0.0.1:${busy.address.port}: address already in use`,
          );
          return true;
        },
      );
      assert.equal(opened.length, 1, "the first backend started");
      assert.deepEqual(closed, opened, "and was closed again");
    } finally {
      busy.close();
    }
  });
});
