/**
 * Free loopback ports, and waiting until a process listens on one.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import type { Proc } from "./processes.ts";

const given = new Set<number>();

/**
 * Finds a port free on 127.0.0.1 that this run has not handed out before.
 *
 * @returns the port
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        const address = server.address();
        const found = typeof address === "object" && address !== null ? address.port : 0;
        server.close(() => resolve(found));
      });
    });
    if (!given.has(port)) {
      given.add(port);
      return port;
    }
  }
}

/** How many sockets listen on `port`, from /proc/net/tcp and tcp6. */
export function listeners(port: number): number {
  let count = 0;
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      const fields = line.trim().split(/\s+/);
      // fields[1] is local address:port, fields[3] the state, 0A = LISTEN.
      if (fields[1]?.endsWith(hex) && fields[3] === "0A") count++;
    }
  }
  return count;
}

/**
 * Waits until `port` is listening, without connecting to it (a probe would
 * reach the backend behind a proxy, and iperf3 counts it as a test).
 *
 * @param proc the process expected to listen; fails early if it exits
 * @param sockets how many listening sockets to wait for: one per worker
 * when each listens with SO_REUSEPORT
 * @throws Error when the process exits or `timeoutMs` passes first
 */
export async function waitListening(
  port: number,
  proc: Proc,
  timeoutMs = 30_000,
  sockets = 1,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (listeners(port) < sockets) {
    if (!proc.alive) throw new Error(proc.describeExit());
    if (Date.now() > deadline) {
      throw new Error(
        `${proc.name} is not listening on ${port}${
          sockets > 1 ? ` with ${sockets} sockets` : ""
        } after ${timeoutMs} ms`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
