/**
 * A service manager's end of the notify protocol (sd_notify(3)), for the
 * tests: python3 binds a Unix datagram socket (Bun cannot bind one) and
 * prints each datagram as a JSON line, with its sender's pid (SO_PASSCRED)
 * and its own CLOCK_MONOTONIC at arrival. Not re-exported by index.ts:
 * only the sd_notify tests use it.
 *
 * @module
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { eventually } from "./wait.ts";

/** The receiver: binds argv[1] (`@name` is abstract), one JSON line per datagram. */
const RECEIVER = `
import json, socket, struct, sys, time
name = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind("\\0" + name[1:] if name.startswith("@") else name)
print(json.dumps({"bound": name}), flush=True)
while True:
    data, ancillary, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
    pid = None
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", value[:12])[0]
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    print(json.dumps({"message": data.decode(), "pid": pid, "at": now, "ms": time.time() * 1000}), flush=True)
`;

/** One datagram as the receiver got it. */
export interface Datagram {
  message: string;
  pid: number;
  /** The receiver's CLOCK_MONOTONIC at arrival, in microseconds. */
  at: number;
  /** The wall clock at arrival, in milliseconds. */
  ms: number;
}

/**
 * Starts a receiver on `socket` (a path, or an abstract `@name`) and waits
 * until it is bound; `close` kills it.
 */
export async function notifyReceiver(socket: string) {
  const child = spawn("python3", ["-c", RECEIVER, socket], { stdio: ["ignore", "pipe", "pipe"] });
  const got: Datagram[] = [];
  let bound = false;
  let rest = "";
  let errors = "";
  child.stderr!.on("data", (chunk) => (errors += chunk));
  child.stdout!.on("data", (chunk) => {
    rest += chunk;
    const lines = rest.split("\n");
    rest = lines.pop()!;
    for (const line of lines) {
      const parsed = JSON.parse(line);
      if ("bound" in parsed) bound = true;
      else got.push(parsed);
    }
  });
  const exited = new Promise((resolve) => child.on("close", resolve));
  await eventually(() => bound || errors !== "", "the python receiver to bind");
  assert.equal(errors, "", "the receiver failed");
  /** The messages that hold a field (`READY=1`). */
  const having = (field: string) => got.filter((d) => d.message.split("\n").includes(field));
  return {
    got,
    having,
    /** Waits for the `n`th message with `field` (1-based) and returns it. */
    async nth(field: string, n: number, ms = 15_000): Promise<Datagram> {
      await eventually(
        () => having(field).length >= n,
        `${field} number ${n} (got ${JSON.stringify(got.map((d) => d.message))})`,
        ms,
      );
      return having(field)[n - 1]!;
    },
    async close() {
      child.kill("SIGKILL");
      await exited;
    },
  };
}
