/**
 * Agent checks in the real program: an agent on the backend's host drains
 * it and gives it a share; the log says so once per change. With
 * `workers = 2` the supervisor polls the agent once for both workers.
 */
import assert from "node:assert/strict";
import process from "node:process";
import { after, describe, it } from "node:test";
import type { Listener } from "../../src/runtime/types.ts";
import {
  bytes,
  echoServer,
  eventually,
  exchange,
  freePort,
  net,
  sleep,
  startProgram,
  text,
} from "../_helpers/index.ts";
import { buildBefore, kinds } from "./_setup.ts";

/** An agent on 127.0.0.2 that answers each poll with `state.line`. */
function agent() {
  const state = { line: "drain", polls: 0 };
  const listener: Listener = net.listen({
    hostname: "127.0.0.2",
    port: 0,
    onConnection(conn) {
      state.polls++;
      conn.setHandlers({ data() {}, drain() {}, end: () => conn.end(), close() {} });
      conn.write(bytes(`${state.line}\n`));
      conn.end();
    },
  });
  return { state, listener };
}

/** Who greeted each of `count` connections in a row. */
async function tally(port: number, count: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (let i = 0; i < count; i++) {
    const name = text((await exchange(port, bytes(""))).data).replace(/:$/, "");
    out[name] = (out[name] ?? 0) + 1;
  }
  return out;
}

const changes = (stderr: string, words: string) =>
  stderr.split("\n").filter((line) =>
    line.includes("backend weight changed by agent") && line.includes(`agent=${words}`)
  ).length;

for (const kind of kinds) {
  describe(`agent checks in mini-balancer as ${kind}`, () => {
    buildBefore(kind);
    // The agent's backend on 127.0.0.2 (the agent is per host), its peer on 127.0.0.1.
    const a = echoServer({ greeting: "a:", hostname: "127.0.0.2" });
    const b = echoServer({ greeting: "b:" });
    after(() => {
      a.close();
      b.close();
    });

    async function start(workers: number) {
      const { state, listener } = agent();
      const port = workers === 1 ? 0 : await freePort();
      const program = await startProgram(
        kind,
        `workers = ${workers}\n[frontend]\nbind_on = "127.0.0.1:${port}"\n` +
          `[frontend.health]\ninterval = "1s"\ntimeout = "500ms"\n` +
          `agent_port = ${listener.address.port}\nagent_interval = "100ms"\n` +
          `[[frontend.backend]]\nname = "a"\nforward_to = "127.0.0.2:${a.listener.address.port}"\n` +
          `[[frontend.backend]]\nname = "b"\nforward_to = "${b.address}"\n`,
        [],
        [`--allow-run=${process.execPath}`, "--unstable-net"],
      );
      return { state, listener, program, port: port === 0 ? program.port : port };
    }

    it("drains, then shares, as the agent says, logged once per change", async () => {
      const { state, listener, program } = await start(1);
      try {
        await eventually(() => changes(program.stderr(), "drain") === 1, "the drain in the log");
        const drained = await tally(program.port, 40);
        assert.equal(drained.a, undefined, `a took ${drained.a} of 40 while drained`);
        state.line = "50%";
        await eventually(() => changes(program.stderr(), "50%") === 1, "the 50% in the log");
        const half = await tally(program.port, 90);
        assert.ok((half.a ?? 0) >= 20 && (half.a ?? 0) <= 40, `a took ${half.a} of 90 at 50%`);
        assert.equal(changes(program.stderr(), "drain"), 1, "each change logged once");
      } finally {
        await program.stop();
        await program.cleanup();
        listener.close();
      }
    });

    it("with workers = 2, the supervisor polls the agent once and every worker follows", {
      skip: kind === "node",
    }, async () => {
      const { state, listener, program, port } = await start(2);
      try {
        await eventually(
          () => program.stderr().split("listening for connections").length > 2,
          "both workers to listen",
        );
        await eventually(() => changes(program.stderr(), "drain") === 1, "the drain in the log");
        // Both workers told: no connection reaches a, whichever worker takes it.
        await sleep(200);
        const drained = await tally(port, 40);
        assert.equal(drained.a, undefined, `a took ${drained.a} of 40 while drained`);
        const before = state.polls;
        await sleep(1000);
        const polls = state.polls - before;
        // One poller every 100 ms: about 10 (two would make about 20).
        assert.ok(polls >= 5 && polls <= 14, `${polls} polls in 1 s`);
        assert.equal(changes(program.stderr(), "drain"), 1, "logged once, not once per worker");
      } finally {
        await program.stop();
        await program.cleanup();
        listener.close();
      }
    });
  });
}
