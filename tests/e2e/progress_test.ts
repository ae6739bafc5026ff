/**
 * Long connections through the real program: a connection that streams for
 * 12 s shows in `/metrics` while it is open (scraped at ~3 s and ~11 s),
 * logs `connection in progress` every `log_interval`, and once closed its
 * bytes are counted exactly once.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import {
  type Client,
  configText,
  connect,
  echoServer,
  eventually,
  randomBytes,
  sleep,
  startProgram,
  within,
} from "../_helpers/index.ts";
import { buildBefore, kinds } from "./_setup.ts";

const STREAM_MS = 12_000;
const CHUNK = 10_000;

/** Bytes each way on the backend's `bytes_total`, as `/metrics` shows them. */
async function scrape(admin: string): Promise<{ fromClient: number; fromBackend: number }> {
  const text = await (await fetch(`${admin}/metrics`)).text();
  const sample = (direction: string) => {
    const match = new RegExp(
      `^mini_balancer_bytes_total\\{frontend="default",backend="127[^"]+",direction="${direction}"\\} (\\d+)$`,
      "m",
    ).exec(text);
    return match === null ? 0 : Number(match[1]);
  };
  return { fromClient: sample("from_client"), fromBackend: sample("from_backend") };
}

/** Sends CHUNK bytes every 100 ms until `until` (performance.now() time); returns the bytes sent. */
async function stream(client: Client, until: number): Promise<number> {
  let sent = 0;
  for (let i = 0; performance.now() < until; i++) {
    await client.send(randomBytes(CHUNK, i + 1));
    sent += CHUNK;
    await sleep(100);
  }
  return sent;
}

for (const kind of kinds) {
  describe(`mini-balancer as ${kind}`, () => {
    const backend = echoServer();
    after(() => backend.close());
    buildBefore(kind);

    it("shows a 12 s connection in /metrics while open and logs its progress every log_interval", async () => {
      const program = await startProgram(
        kind,
        configText([backend.address], 'log_interval = "1s"') +
          '\n[admin]\nbind_on = "127.0.0.1:0"\ntoken = "an-e2e-token-0123"\n',
      );
      try {
        await eventually(() => /admin listening/.test(program.stderr()), "the admin line");
        const admin = `http://${/admin listening address=(\S+)/.exec(program.stderr())![1]}`;
        const client = await connect(program.port);
        const t0 = performance.now();
        const streaming = stream(client, t0 + STREAM_MS);
        const scrapes: { fromClient: number; fromBackend: number }[] = [];
        for (const at of [3_000, 11_000]) {
          await sleep(t0 + at - performance.now());
          scrapes.push(await scrape(admin));
        }
        const sent = await streaming;
        await eventually(() => client.receivedLength() === sent, `the echo of ${sent} bytes`);
        client.conn.end();
        await within(client.closed, 5_000, "the connection to close");
        const [early, late] = scrapes as [typeof scrapes[0], typeof scrapes[0]];
        // About 100 kB a second, counted every 2 s: at 3 s what 2 s moved, at 11 s what 10 s did.
        assert.ok(
          early.fromClient >= 100_000 && early.fromBackend >= 100_000,
          `counted while open at 3 s: ${JSON.stringify(scrapes)}`,
        );
        assert.ok(
          late.fromClient > early.fromClient + 400_000 && late.fromBackend > early.fromBackend,
          `more at 11 s: ${JSON.stringify(scrapes)}`,
        );
        assert.ok(late.fromClient < sent && late.fromBackend < sent, `below ${sent} while open`);
        // Once closed: every byte, once.
        let closed = await scrape(admin);
        const deadline = Date.now() + 5_000;
        while (closed.fromClient !== sent && Date.now() < deadline) {
          await sleep(50);
          closed = await scrape(admin);
        }
        assert.deepEqual(closed, { fromClient: sent, fromBackend: sent });
        await eventually(() => / served connection /.test(program.stderr()), "the served line");
        const lines = program.stderr().split("\n").filter((l) =>
          l.includes(" connection in progress ")
        );
        // Due at 1 s, 2 s, … from the accept; the connection closes a little after 12 s.
        assert.ok(
          lines.length >= 11 && lines.length <= 12,
          `${lines.length} progress lines:\n${program.stderr()}`,
        );
        const fromClient = lines.map((l) => Number(/ bytes_from_client=(\d+)/.exec(l)?.[1]));
        for (let i = 1; i < fromClient.length; i++) {
          assert.ok(fromClient[i]! > fromClient[i - 1]!, `growing: ${fromClient.join(", ")}`);
        }
        // The 12 s line may come after the last chunk: all of it, and no more.
        assert.ok(fromClient.at(-2)! < sent && fromClient.at(-1)! <= sent, `of ${sent}`);
        assert.match(lines[0]!, / duration_ms=1\d\d\d /);
        assert.equal(await program.stop("SIGTERM"), 0);
      } finally {
        await program.cleanup();
      }
    });
  });
}
