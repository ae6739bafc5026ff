/**
 * The real program's memory: bounded while a backend does not read, and near
 * idle at its peak while a large stream passes through.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  configText,
  connect,
  eventually,
  net,
  randomBytes,
  sleep,
  startProgram,
} from "../_helpers/index.ts";
import type { Conn } from "../../src/runtime/types.ts";
import { buildBefore, kinds, peakRssKiB, rssKiB } from "./_setup.ts";

for (const kind of kinds) {
  describe(`mini-balancer as ${kind}`, () => {
    buildBefore(kind);

    it("keeps its memory bounded while a backend does not read", async () => {
      let received = 0;
      const stalled = new Set<Conn>();
      const sink = net.listen({
        hostname: "127.0.0.1",
        port: 0,
        onConnection(conn) {
          stalled.add(conn);
          conn.setHandlers({
            data: (chunk) => void (received += chunk.length),
            end: () => conn.end(),
            drain() {},
            close() {},
          });
          conn.pause();
        },
      });
      const program = await startProgram(kind, configText([`127.0.0.1:${sink.address.port}`]));
      try {
        const pid = program.child.pid!;
        const before = await rssKiB(pid);
        const total = 128 * 1024 * 1024;
        const client = await connect(program.port);
        const sending = client.send(randomBytes(total, 5));
        await sleep(1500);
        const during = await rssKiB(pid);
        for (const conn of stalled) conn.resume();
        await sending;
        client.conn.end();
        await eventually(() => received === total, "the backend to read everything", 60_000);
        client.conn.close();
        // 128 MiB were pushed at a backend that read nothing for 1.5 s.
        console.log(`${kind}: RSS ${before} KiB idle, ${during} KiB with the backend stalled`);
        assert.ok(
          during - before < 48 * 1024,
          `RSS grew by ${during - before} KiB while the backend stalled`,
        );
      } finally {
        sink.close();
        await program.cleanup();
      }
    });

    it("keeps its peak memory near idle while 512 MiB stream through", async () => {
      let received = 0;
      const sink = net.listen({
        hostname: "127.0.0.1",
        port: 0,
        onConnection(conn) {
          conn.setHandlers({
            data: (chunk) => void (received += chunk.length),
            end: () => conn.end(),
            drain() {},
            close() {},
          });
        },
      });
      const program = await startProgram(kind, configText([`127.0.0.1:${sink.address.port}`]));
      try {
        const pid = program.child.pid!;
        const idle = await rssKiB(pid);
        // Its start-up peak is its idle RSS, so VmHWM afterwards is the streaming peak.
        const block = randomBytes(16 * 1024 * 1024, 6);
        const rounds = 32;
        const client = await connect(program.port);
        for (let i = 0; i < rounds; i++) await client.send(block);
        client.conn.end();
        await eventually(() => received === rounds * block.length, "the sink to read it", 60_000);
        await client.closed;
        const peak = await peakRssKiB(pid);
        console.log(`${kind}: RSS ${idle} KiB idle, peak ${peak} KiB while 512 MiB streamed`);
        // Node gives every read an ArrayBuffer of its own, and Node 20 cannot
        // free one before the collector does (no ArrayBuffer.transfer): about
        // 32 MiB of them wait for it (process.memoryUsage().arrayBuffers).
        const bound = kind === "node" ? 48 * 1024 : 24 * 1024;
        assert.ok(peak - idle < bound, `peak RSS ${peak - idle} KiB above idle`);
      } finally {
        sink.close();
        await program.cleanup();
      }
    });
  });
}
