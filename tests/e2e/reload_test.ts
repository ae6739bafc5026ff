/**
 * The real program reloading its config: on SIGHUP without dropping
 * connections (keeping the old config when the new one is bad), and with --watch.
 */
import assert from "node:assert/strict";
import { rename, writeFile } from "node:fs/promises";
import { describe, it } from "node:test";
import {
  bytes,
  configText,
  connect,
  eventually,
  exchange,
  signalProgram,
  startProgram,
  text,
} from "../_helpers/index.ts";
import { buildBefore, kinds, programBackends } from "./_setup.ts";

for (const kind of kinds) {
  describe(`mini-balancer as ${kind}`, () => {
    const backends = programBackends();

    buildBefore(kind);

    it("reloads its config on SIGHUP without dropping connections, and keeps it when the new one is bad", async () => {
      const [b1, b2] = backends;
      const program = await startProgram(kind, configText([b1!.address]));
      try {
        const held = await connect(program.port);
        await eventually(() => held.receivedLength() === 3, "the first greeting");
        await writeFile(program.file, configText([b1!.address, b2!.address]));
        signalProgram(program.child, "SIGHUP");
        await eventually(() => /reloaded config/.test(program.stderr()), "the reload line");
        assert.match(
          program.stderr(),
          new RegExp(`INFO .*reloaded config .*backends_added=default/${b2!.address}`),
        );
        const replies: string[] = [];
        for (let i = 0; i < 4; i++) {
          replies.push(text((await exchange(program.port, bytes("x"))).data));
        }
        assert.deepEqual(replies, ["b1:x", "b2:x", "b1:x", "b2:x"]);
        await writeFile(program.file, "[frontend]\nbind_on = 7070\n");
        signalProgram(program.child, "SIGHUP");
        await eventually(() => /reload rejected/.test(program.stderr()), "the rejection");
        assert.match(
          program.stderr(),
          /ERROR .*reload rejected: Cannot load config ".*": frontend.bind_on must be a string: current value is 7070/,
        );
        assert.equal(
          text((await exchange(program.port, bytes("y"))).data),
          "b1:y",
          "still serving",
        );
        held.conn.write(bytes("z"));
        held.conn.end();
        await held.closed;
        assert.equal(text(held.received()), "b1:z", "the connection from before both reloads");
        assert.equal(await program.stop("SIGTERM"), 0);
      } finally {
        await program.cleanup();
      }
    });

    it("reloads its config when the file changes with --watch", async () => {
      const [b1, b2] = backends;
      const program = await startProgram(kind, configText([b1!.address]), ["--watch"]);
      try {
        // Written as editors do: a new file renamed over the old one.
        await writeFile(`${program.file}.new`, configText([b2!.address]));
        await rename(`${program.file}.new`, program.file);
        await eventually(() => /reloaded config/.test(program.stderr()), "the reload line");
        assert.equal(text((await exchange(program.port, bytes("w"))).data), "b2:w");
        assert.equal(program.stderr().split("reloaded config").length, 2, "one reload per change");
      } finally {
        await program.cleanup();
      }
    });
  });
}
