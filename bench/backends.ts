/**
 * The real servers behind every contender, all pinned to the load core: an
 * nginx serving a 100-byte response (and a 1 MiB file) on two plain ports and
 * on two that expect a PROXY protocol header, iperf3 servers, and the idle
 * peers (bench/idle_peers.ts) that hold thousands of idle connections.
 *
 * @module
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { freePort, waitListening } from "./ports.ts";
import { type Proc, start } from "./processes.ts";

/** The core that runs load generators and backends. */
export const LOAD_CPU = 1;
/**
 * The fd limit for every process that holds idle connections: this
 * process's hard limit, at most 65,536. Raising the hard limit needs
 * CAP_SYS_RESOURCE, which a container may not have.
 *
 * @returns the limit
 */
export function nofileLimit(): number {
  const limits = readFileSync("/proc/self/limits", "utf8");
  const hard = limits.match(/^Max open files\s+\d+\s+(\d+|unlimited)/m)?.[1];
  return Math.min(hard === undefined || hard === "unlimited" ? 65_536 : Number(hard), 65_536);
}

/** The body the HTTP backends return: 100 bytes. */
export const BODY =
  "mini-balancer benchmark backend: a short response body, like a tiny API answer ".padEnd(
    100,
    ".",
  );

/** The path of the large body the HTTP backends serve: a 1 MiB file. */
export const LARGE_PATH = "/1m";
/** The size of the large body at {@linkcode LARGE_PATH}. */
export const LARGE_BYTES = 1024 * 1024;

/**
 * An nginx serving {@linkcode BODY} at `/` and a 1 MiB file at
 * {@linkcode LARGE_PATH} with keep-alive, on two plain ports and on two that
 * take a PROXY protocol header (v1 or v2) before the request.
 */
export interface HttpBackends {
  ports: [number, number];
  proxyProtocolPorts: [number, number];
  proc: Proc;
}

/**
 * Lines shared by every nginx config the benchmark writes.
 *
 * @param dir where its pid file and error log go
 * @param workers worker processes under the master
 */
export function nginxPreamble(dir: string, workers = 1): string {
  const user = process.getuid?.() === 0 ? "user root;\n" : "";
  return `${user}daemon off;
master_process on;
worker_processes ${workers};
pid ${join(dir, "nginx.pid")};
error_log ${join(dir, "error.log")} warn;
`;
}

/** nginx's command line for a config `file` in `dir`, its logs and pid there too. */
export function nginxArgs(dir: string, file: string): string[] {
  return ["-p", dir, "-e", join(dir, "error.log"), "-c", file];
}

/**
 * Starts one nginx (one worker) with four HTTP servers returning a 100-byte
 * body and a 1 MiB file, with keep-alive that never runs out during a test;
 * two of them expect a PROXY protocol header (`listen … proxy_protocol`).
 *
 * @param dir a fresh directory for its config, pid and logs
 */
export async function startHttpBackends(dir: string): Promise<HttpBackends> {
  const root = join(dir, "www");
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, LARGE_PATH.slice(1)), new Uint8Array(LARGE_BYTES).fill(0x61));
  const ports: [number, number] = [await freePort(), await freePort()];
  const proxyProtocolPorts: [number, number] = [await freePort(), await freePort()];
  const server = (port: number, proxyProtocol: boolean) =>
    `  server {
    listen 127.0.0.1:${port}${proxyProtocol ? " proxy_protocol" : ""} backlog=4096;
    location / { default_type text/plain; return 200 "${BODY}"; }
    location = ${LARGE_PATH} { root ${root}; default_type application/octet-stream; }
  }
`;
  const config = `${nginxPreamble(dir)}events { worker_connections 4096; }
http {
  access_log off;
  server_tokens off;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  sendfile on;
${ports.map((port) => server(port, false)).join("")}${
    proxyProtocolPorts.map((port) => server(port, true)).join("")
  }}
`;
  const file = join(dir, "nginx.conf");
  writeFileSync(file, config);
  const proc = start("nginx backend", "nginx", nginxArgs(dir, file), {
    cpu: LOAD_CPU,
    nofile: nofileLimit(),
  });
  for (const port of [...ports, ...proxyProtocolPorts]) await waitListening(port, proc);
  return { ports, proxyProtocolPorts, proc };
}

/** An iperf3 server. */
export interface IperfServer {
  port: number;
  proc: Proc;
}

/** Starts an iperf3 server on a free loopback port. */
export async function startIperfServer(): Promise<IperfServer> {
  const port = await freePort();
  const proc = start("iperf3 server", "iperf3", ["-s", "-B", "127.0.0.1", "-p", String(port)], {
    cpu: LOAD_CPU,
  });
  await waitListening(port, proc);
  return { port, proc };
}

/**
 * A helper process under Bun that answers each command line on its standard
 * input with one line (bench/idle_peers.ts, bench/soak_peers.ts), pinned to
 * the load core with the highest fd limit allowed.
 */
export class Peer {
  readonly proc: Proc;
  #lines: string[] = [];
  #wake: (() => void) | undefined;

  /**
   * Starts `bun ARGS…`.
   *
   * @param name a label for messages
   * @param args the script's absolute path and its arguments
   */
  constructor(name: string, bun: string, args: string[]) {
    this.proc = start(name, bun, args, {
      cpu: LOAD_CPU,
      nofile: nofileLimit(),
      stdin: true,
    });
    let partial = "";
    this.proc.child.stdout?.on("data", (chunk: Buffer) => {
      const parts = (partial + chunk.toString()).split("\n");
      partial = parts.pop() ?? "";
      this.#lines.push(...parts.filter((line) => line.trim() !== ""));
      this.#wake?.();
    });
  }

  /** Waits for the next line the process prints. */
  async nextLine(timeoutMs = 90_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (this.#lines.length === 0) {
      if (!this.proc.alive) throw new Error(this.proc.describeExit());
      if (Date.now() > deadline) {
        throw new Error(`${this.proc.name} did not answer in ${timeoutMs} ms`);
      }
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, 100);
      });
    }
    return this.#lines.shift()!;
  }

  /**
   * Sends a command and reads the answer after its first word.
   *
   * @param expect the answer's first word
   * @param timeoutMs how long the answer may take
   * @returns the rest of the answer
   * @throws Error when the answer does not start with `expect`
   */
  async ask(line: string, expect: string, timeoutMs?: number): Promise<string> {
    this.proc.child.stdin?.write(`${line}\n`);
    const answer = await this.nextLine(timeoutMs);
    if (!answer.startsWith(`${expect} `)) {
      throw new Error(`${this.proc.name}: ${answer.replace(/^error /, "")}`);
    }
    return answer.slice(expect.length + 1);
  }

  /**
   * Sends a command and reads the answer's last number.
   *
   * @throws Error when the answer does not start with `expect`
   */
  async command(line: string, expect: string): Promise<number> {
    return Number((await this.ask(line, expect)).split(" ").at(-1));
  }
}

/**
 * Drives bench/idle_peers.ts: a backend that holds connections, and a
 * client that opens idle connections through a proxy to it.
 */
export class IdlePeers {
  readonly #hold: Peer;
  readonly #client: Peer;
  readonly holdPort: number;

  private constructor(hold: Peer, client: Peer, holdPort: number) {
    this.#hold = hold;
    this.#client = client;
    this.holdPort = holdPort;
  }

  /**
   * Starts both processes under Bun, pinned to the load core with the
   * highest fd limit allowed, and waits for the backend's port.
   */
  static async start(bun: string, repo: string): Promise<IdlePeers> {
    const script = join(repo, "bench/idle_peers.ts");
    const hold = new Peer("idle peers (hold)", bun, [script, "hold"]);
    const client = new Peer("idle peers (client)", bun, [script, "client"]);
    const first = await hold.nextLine(30_000);
    const port = Number(first.match(/^hold (\d+)$/)?.[1]);
    if (!port) throw new Error(`idle peers said ${first}`);
    return new IdlePeers(hold, client, port);
  }

  /** Whether both processes still run. */
  get alive(): boolean {
    return this.#hold.proc.alive && this.#client.proc.alive;
  }

  async #waitHeld(test: (held: number) => boolean, what: string): Promise<void> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const held = await this.#hold.command("count", "held");
      if (test(held)) return;
      if (Date.now() > deadline) throw new Error(`${what}: the backend holds ${held}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /**
   * Opens `count` idle connections to 127.0.0.1:`port` and waits until the
   * holding backend has as many.
   *
   * @returns milliseconds it took
   */
  async open(port: number, count: number): Promise<number> {
    const started = Date.now();
    await this.#client.command(`open ${port} ${count}`, "opened");
    await this.#waitHeld((held) => held >= count, `not every connection reached the backend`);
    return Date.now() - started;
  }

  /**
   * Closes every idle connection and waits until the backend side is gone too.
   *
   * @returns milliseconds it took
   */
  async close(): Promise<number> {
    const started = Date.now();
    await this.#client.command("close", "closed");
    await this.#waitHeld((held) => held === 0, "connections still open after close");
    return Date.now() - started;
  }
}
