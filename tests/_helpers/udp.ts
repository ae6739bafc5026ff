/**
 * Real UDP peers on loopback for the UDP tests (issue 21): free UDP ports,
 * echo backends that count what they saw, a client socket that records what
 * comes back, two dnsmasq servers on 127.0.0.2 and 127.0.0.3 sharing a
 * port, `dig`, and the real program started on a UDP config with its admin
 * listener.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import type { DatagramSocket, Endpoint } from "../../src/runtime/types.ts";
import { runCommand } from "./command.ts";
import { DNSMASQ } from "./dns.ts";
import { findCommand, net, tempDir } from "./env.ts";
import { programCommand, type ProgramKind, signalProgram } from "./program.ts";
import { eventually, sleep, within } from "./wait.ts";

/** Where dig is (Debian's bind9-dnsutils), or undefined when it is not installed. */
export const DIG = findCommand("dig");

/**
 * Binds a UDP socket on the runtime's own {@linkcode Net}.
 *
 * @param hostname where to bind
 * @param port the port, 0 for any free one
 * @param message what to do with each datagram
 * @throws Error when this runtime's Net has no datagram sockets
 */
export function bindUdp(
  hostname: string,
  port: number,
  message: (data: Uint8Array, from: Endpoint, socket: () => DatagramSocket) => void,
): Promise<DatagramSocket> {
  const bind = net.bindDatagram;
  if (bind === undefined) {
    throw new Error(`tests/_helpers/udp.ts: ${net.runtime} has no bindDatagram`);
  }
  let socket: DatagramSocket | undefined;
  return bind({
    hostname,
    port,
    handlers: { message: (data, from) => message(data, from, () => socket!), error() {} },
  }).then((bound) => (socket = bound));
}

/** A UDP port on 127.0.0.1 nobody binds (bound, then closed). */
export async function freeUdpPort(): Promise<number> {
  return (await freeUdpPorts(1))[0]!;
}

/** `count` different free UDP ports, bound together then closed. */
export async function freeUdpPorts(count: number): Promise<number[]> {
  const sockets = await Promise.all(
    Array.from({ length: count }, () => bindUdp("127.0.0.1", 0, () => {})),
  );
  for (const socket of sockets) socket.close();
  // Deno lets the port go once the pending receive is cancelled, a turn of the
  // event loop after close(): a bind before that finds it in use (measured: 50 of 50).
  await sleep(5);
  return sockets.map((socket) => socket.address.port);
}

/** A UDP echo backend, as {@linkcode udpEcho} starts it. */
export interface UdpEcho {
  /** `HOST:PORT`, for `forward_to`. */
  readonly address: string;
  readonly port: number;
  /** Datagrams received so far, from anyone. */
  readonly datagrams: number;
  /** Datagrams received per source `HOST:PORT` (the balancer's flow sockets). */
  readonly sources: Map<string, number>;
  /** Closes its socket: later datagrams to it get ICMP port unreachable. */
  close(): void;
}

/**
 * Starts a UDP echo backend: each datagram goes back to its sender, after
 * `prefix` when given (to tell backends apart), byte for byte otherwise.
 *
 * @param options where to bind (127.0.0.1 on a free port by default) and the reply's prefix
 */
export async function udpEcho(
  options: { hostname?: string; port?: number; prefix?: string } = {},
): Promise<UdpEcho> {
  const sources = new Map<string, number>();
  let datagrams = 0;
  const prefix = new TextEncoder().encode(options.prefix ?? "");
  const socket = await bindUdp(
    options.hostname ?? "127.0.0.1",
    options.port ?? 0,
    (data, from, self) => {
      datagrams++;
      const key = `${from.hostname}:${from.port}`;
      sources.set(key, (sources.get(key) ?? 0) + 1);
      if (prefix.length === 0) return void self().send(data, from);
      const reply = new Uint8Array(prefix.length + data.length);
      reply.set(prefix);
      reply.set(data, prefix.length);
      self().send(reply, from);
    },
  );
  return {
    address: `${socket.address.hostname}:${socket.address.port}`,
    port: socket.address.port,
    get datagrams() {
      return datagrams;
    },
    sources,
    close: () => socket.close(),
  };
}

/** A client UDP socket, as {@linkcode udpClient} opens it. */
export interface UdpClient {
  readonly socket: DatagramSocket;
  /** Its local port (one flow per port at the balancer). */
  readonly port: number;
  /** Every datagram received so far, in order. */
  readonly replies: Uint8Array[];
  /** Sends one datagram to 127.0.0.1:`port`. */
  send(data: Uint8Array): boolean;
  /** Sends `data` and waits (at most `ms`) for the next datagram back. */
  request(data: Uint8Array, ms?: number): Promise<Uint8Array>;
  close(): void;
}

/**
 * Opens a client UDP socket on 127.0.0.1 that sends to 127.0.0.1:`port`.
 *
 * @param port the balancer's UDP frontend port
 * @param localPorts where to bind: the next free port of these (see
 *   {@linkcode portsBelowEphemeral}), or any ephemeral one by default
 */
export async function udpClient(
  port: number,
  localPorts?: Iterator<number>,
): Promise<UdpClient> {
  const replies: Uint8Array[] = [];
  let wake: (() => void) | undefined;
  const received = (data: Uint8Array) => {
    // Bun hands a Buffer: a plain Uint8Array compares equal to what was sent.
    replies.push(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    wake?.();
  };
  let socket: DatagramSocket | undefined;
  // With thousands of sockets open on a busy machine, the ephemeral ports can
  // run short for a moment (EADDRINUSE on port 0): try again a few times. A
  // given port may be someone else's: the next one is tried.
  for (let attempt = 1; socket === undefined; attempt++) {
    const local = localPorts === undefined ? 0 : localPorts.next().value;
    if (local === undefined) throw new Error("tests/_helpers/udp.ts: out of local ports");
    socket = await bindUdp("127.0.0.1", local, received).catch((error) => {
      if ((error as { code?: string }).code !== "EADDRINUSE") throw error;
      if (local === 0 && attempt === 5) throw error;
      return local === 0 ? sleep(20).then(() => undefined) : undefined;
    });
  }
  const to = { hostname: "127.0.0.1", port };
  return {
    socket,
    port: socket.address.port,
    replies,
    send: (data) => socket.send(data, to),
    async request(data, ms = 2_000) {
      const count = replies.length;
      const arrived = new Promise<void>((resolve) => (wake = resolve));
      socket.send(data, to);
      if (replies.length === count) {
        await within(arrived, ms, `a reply on udp client port ${socket.address.port}`);
      }
      wake = undefined;
      return replies[count]!;
    },
    close: () => socket.close(),
  };
}

/**
 * Ports from `first` up to 32767, below Linux's ephemeral range (32768-60999
 * by default), for clients by the thousand: binding them by number draws
 * nothing from the ephemeral ports, which other programs on a busy machine
 * (and the balancer's own flow sockets) may have nearly used up.
 *
 * @param first where to start
 */
export function* portsBelowEphemeral(first = 10_000): Generator<number> {
  for (let port = first; port < 32_768; port++) yield port;
}

/** Two dnsmasq servers on one port of 127.0.0.2 and 127.0.0.3, as {@linkcode startDnsmasqPair} starts them. */
export interface DnsmasqPair {
  /** The port both listen on. */
  readonly port: number;
  /** `127.0.0.2:PORT` and `127.0.0.3:PORT`, for `forward_to`. */
  readonly addresses: string[];
  stop(): Promise<void>;
}

/**
 * Starts two real dnsmasq servers on the same UDP port, one bound to
 * 127.0.0.2 answering `who.test` with 10.0.0.2, the other on 127.0.0.3
 * answering 10.0.0.3 (and nothing else: no upstream, no hosts file).
 *
 * @throws Error naming dnsmasq when it is missing or does not answer within 5 s
 */
export async function startDnsmasqPair(): Promise<DnsmasqPair> {
  const dnsmasq = DNSMASQ;
  if (dnsmasq === undefined) {
    throw new Error("dnsmasq is not installed: run scripts/ensure-tools.sh dnsmasq");
  }
  const hosts = ["127.0.0.2", "127.0.0.3"];
  for (let attempt = 0;; attempt++) {
    // A port free on 127.0.0.1 is almost always free on .2 and .3 too; a clash retries.
    const port = await freeUdpPort();
    const children: { child: ChildProcess; errors: () => string }[] = hosts.map((host) => {
      const child = spawn(dnsmasq, [
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        `--port=${port}`,
        `--listen-address=${host}`,
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        `--address=/who.test/10.0.0.${host.split(".")[3]}`,
        "--pid-file=",
        ...(process.getuid?.() === 0 ? ["--user=root"] : []),
      ], { stdio: ["ignore", "ignore", "pipe"] });
      let errors = "";
      child.stderr!.on("data", (chunk) => (errors += chunk));
      return { child, errors: () => errors };
    });
    const stop = async () => {
      await Promise.all(children.map(({ child }) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGTERM");
        return exited;
      }));
    };
    const up = await Promise.all(hosts.map(async (host) => {
      const deadline = Date.now() + 5_000;
      while (Date.now() < deadline) {
        if (children.some(({ child }) => child.exitCode !== null)) return false;
        const answer = await dig(port, "who.test", host).catch(() => "");
        if (answer === `10.0.0.${host.split(".")[3]}`) return true;
        await sleep(20);
      }
      return false;
    }));
    if (up.every(Boolean)) {
      return { port, addresses: hosts.map((host) => `${host}:${port}`), stop };
    }
    await stop();
    if (attempt === 2) {
      throw new Error(
        `dnsmasq did not answer on 127.0.0.2/3: ${children.map((c) => c.errors()).join(" ")}`,
      );
    }
  }
}

/**
 * Asks `server`:`port` for `name`'s A record with dig, one try of 2 s.
 *
 * @returns dig's `+short` answer, trimmed ("" when there was none)
 * @throws Error naming dig when it is missing
 */
export async function dig(port: number, name: string, server = "127.0.0.1"): Promise<string> {
  if (DIG === undefined) throw new Error("dig is not installed: run scripts/ensure-tools.sh dig");
  const result = await runCommand(DIG, [
    `@${server}`,
    "-p",
    String(port),
    name,
    "+short",
    "+tries=1",
    "+time=2",
  ], { timeout: 5_000 });
  return result.stdout.trim();
}

/** The real program on a UDP config, as {@linkcode startUdpProgram} starts it. */
export interface UdpProgram {
  child: ChildProcess;
  /** Its UDP frontend's port, when the config was made for a free one; else 0. */
  port: number;
  /** Standard error so far (the logs). */
  stderr(): string;
  /** The config file (rewrite it and send SIGHUP to reload). */
  file: string;
  /** `http://HOST:PORT` of its admin listener. */
  admin: string;
  /** GET /api/status, parsed. */
  status(): Promise<StatusJson>;
  /** GET /metrics, as text. */
  metrics(): Promise<string>;
  /** Sends a signal and waits for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Kills it if running and removes its folder. */
  cleanup(): Promise<void>;
}

/** The parts of /api/status these tests read. */
export interface StatusJson {
  frontends: {
    name: string;
    transport?: string;
    active: number;
    backends: { address: string; state: string; active: number; total: number }[];
  }[];
}

/**
 * Starts the program as `kind` on `config` (which must have an `[admin]`
 * table on 127.0.0.1:0) with -v, or on the config `config(port)` makes for
 * a free UDP port (another is tried when that one is taken meanwhile), and
 * waits (20 s at most) until its admin listener and `listeners` frontends
 * (or workers) are announced on its log.
 *
 * @param kind how to run it
 * @param config the config's text, or what makes it for a UDP port
 * @param options how many "listening" lines to wait for (one per frontend and
 *   worker, 1 by default), and arguments after `-c FILE -v`
 * @throws Error with its log when it does not start
 */
export async function startUdpProgram(
  kind: ProgramKind,
  config: string | ((port: number) => string),
  options: { listeners?: number; args?: string[] } = {},
): Promise<UdpProgram> {
  if (typeof config === "string") return await startOn(kind, config, 0, options);
  // A free port can be taken by another process before the program binds it.
  for (let attempt = 1;; attempt++) {
    const port = await freeUdpPort();
    try {
      return await startOn(kind, config(port), port, options);
    } catch (error) {
      if (attempt === 3 || !/address already in use/.test(String(error))) throw error;
    }
  }
}

/** Starts the program on `config`, whose UDP frontend is on `port`. */
async function startOn(
  kind: ProgramKind,
  config: string,
  port: number,
  options: { listeners?: number; args?: string[] },
): Promise<UdpProgram> {
  const listeners = options.listeners ?? 1;
  const dir = await tempDir();
  const file = join(dir.path, "mini-balancer.toml");
  await writeFile(file, config);
  const [command, ...rest] = programCommand(kind, [
    "--unstable-net",
    `--allow-run=${process.execPath}`,
  ]);
  const child = spawn(command!, [...rest, "-c", file, "-v", ...options.args ?? []], {
    cwd: dir.path,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) =>
    child.on("close", (code) => resolve(exitCode = code))
  );
  const ready = () =>
    /admin listening address=\S+/.test(stderr) &&
    // A UDP frontend says "listening for datagrams" (with the flow log lines), a TCP one
    // "listening for connections".
    (stderr.match(/listening for (connections|datagrams)/g) ?? []).length >= listeners;
  await eventually(() => ready() || exitCode !== undefined, "the balancer to listen", 20_000)
    .catch(() => {});
  if (!ready()) {
    if (exitCode === undefined) signalProgram(child, "SIGKILL");
    await exited;
    await dir.cleanup();
    throw new Error(`the balancer did not start:\n${stderr}`);
  }
  const admin = `http://${/admin listening address=(\S+)/.exec(stderr)![1]}`;
  return {
    child,
    port,
    stderr: () => stderr,
    file,
    admin,
    status: async () => await (await fetch(`${admin}/api/status`)).json(),
    metrics: async () => await (await fetch(`${admin}/metrics`)).text(),
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (exitCode === undefined) signalProgram(child, signal);
      return await exited;
    },
    async cleanup() {
      if (exitCode === undefined) signalProgram(child, "SIGKILL");
      await exited;
      await dir.cleanup();
    },
  };
}

/**
 * A config with one UDP frontend named `name` on 127.0.0.1:`port` in front
 * of `backends`, an admin listener on a free port, and `extra` lines in the
 * frontend's table.
 */
export function udpConfig(
  port: number,
  backends: string[],
  extra = "",
  options: { name?: string; top?: string; backendExtra?: string } = {},
): string {
  return `${options.top ?? ""}\n[admin]\nbind_on = "127.0.0.1:0"\n\n[[frontends]]\n` +
    `name = "${options.name ?? "udp"}"\nbind_on = "udp:127.0.0.1:${port}"\n${extra}\n` +
    backends.map((b) =>
      `[[frontends.backend]]\nforward_to = "${b}"\n${options.backendExtra ?? ""}\n`
    )
      .join("\n");
}
