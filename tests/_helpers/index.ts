/**
 * Test peers and tools shared by the test files: real loopback servers and
 * clients on the runtime's own {@linkcode Net}, and a way to run the real
 * program. Runs unchanged under `bun test` and `deno test`, and under
 * `node --test` once bundled (`npm run test:node`).
 *
 * @module
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import process from "node:process";
import tls from "node:tls";
import { type Events, NO_EVENTS } from "../../src/balancer/events.ts";
import { currentNet } from "../../src/runtime/current.ts";
import type {
  Conn,
  ConnHandlers,
  Endpoint,
  Listener,
  Net,
  TlsOptions,
} from "../../src/runtime/types.ts";

/** The adapter of the runtime running the tests. */
export const net: Net = await currentNet();

/** The project's root folder. */
export const ROOT = new URL("../..", import.meta.url).pathname;

/** Encodes text as UTF-8. */
export function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

/** Decodes UTF-8. */
export function text(data: Uint8Array): string {
  return new TextDecoder().decode(data);
}

/** Hex SHA-256 of some bytes. */
export function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** The bytes of `chunks` one after another. */
export function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

/**
 * Where a command is: the first folder of PATH that has it, then `/usr/sbin`
 * and `/sbin` (Debian puts daemons such as haproxy there, and a user's PATH
 * often lacks them).
 *
 * @param name the command's file name
 * @returns its path, or undefined when it is not installed
 */
export function findCommand(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/sbin", "/sbin"];
  for (const dir of dirs) {
    const path = join(dir, name);
    if (dir && existsSync(path)) return path;
  }
  return undefined;
}

/** Pseudo-random bytes from a seed: big, reproducible, not compressible. */
export function randomBytes(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  const words = new Uint32Array(out.buffer, 0, size >>> 2);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return out;
}

/** Waits some milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves when `condition` holds, polling; rejects after `ms` with `what`. */
export async function eventually(condition: () => boolean, what: string, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/**
 * Resolves as `promise` does, or rejects after `ms` with an error naming
 * what did not happen: `timed out after 5000 ms waiting for ${what}`. A test
 * then fails fast and says why, not at the runner's timeout.
 */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** The loopback endpoint of a listener, for configs. */
export function addressOf(listener: Listener): string {
  return `127.0.0.1:${listener.address.port}`;
}

/** A port nobody listens on (bound, then released). */
export function closedPort(): number {
  return closedPorts(1)[0]!;
}

/** `count` different ports nobody listens on: bound together, then released. */
export function closedPorts(count: number): number[] {
  const listeners = Array.from(
    { length: count },
    () => net.listen({ hostname: "127.0.0.1", port: 0, onConnection: (c) => c.reset() }),
  );
  for (const listener of listeners) listener.close();
  return listeners.map((listener) => listener.address.port);
}

/**
 * A port nobody listens on, that this process can bind again at once. Under
 * Deno a closed listener keeps its socket until its pending accept is
 * cancelled, after `close()` returns (see denoland/deno#31947 for the same
 * delay with socket files), so a listen right after {@linkcode closedPort}
 * may find the port in use; this waits until a connect to it is refused.
 */
export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

/** `count` different ports as {@linkcode freePort} gives one. */
export async function freePorts(count: number): Promise<number[]> {
  const ports = closedPorts(count);
  const deadline = Date.now() + 2_000;
  for (const port of ports) {
    while (
      await net.connect({ hostname: "127.0.0.1", port }).then((c) => (c.reset(), true), () => false)
    ) {
      if (Date.now() > deadline) throw new Error(`port ${port} still accepts connections`);
      await sleep(5);
    }
  }
  return ports;
}

/**
 * Starts an echo server: sends back what arrives, with backpressure, and
 * answers a FIN with its own once the echo is out. With `greeting`, each
 * connection first receives that text (to tell backends apart). With `tls`,
 * it terminates TLS.
 */
export function echoServer(
  options: { greeting?: string; hostname?: string; tls?: TlsOptions } = {},
) {
  const conns = new Set<Conn>();
  let received = 0;
  const listener = net.listen({
    hostname: options.hostname ?? "127.0.0.1",
    port: 0,
    tls: options.tls,
    onConnection(conn) {
      conns.add(conn);
      conn.setHandlers({
        data(chunk) {
          received += chunk.length;
          if (!conn.write(chunk)) conn.pause();
        },
        drain: () => conn.resume(),
        end: () => conn.end(),
        close: () => conns.delete(conn),
      });
      if (options.greeting !== undefined) conn.write(bytes(options.greeting));
    },
  });
  return {
    listener,
    address: addressOf(listener),
    conns,
    get received() {
      return received;
    },
    close() {
      listener.close();
      for (const conn of conns) conn.reset();
    },
  };
}

/**
 * Starts a backend that echoes like {@linkcode echoServer} and keeps, per
 * connection in the order they arrived, every byte it received.
 *
 * @param listen a loopback hostname, or a Unix socket path
 */
export function recordingBackend(
  listen: { hostname?: string; port?: number; path?: string } = {},
) {
  const received: Uint8Array[][] = [];
  const conns = new Set<Conn>();
  const listener = net.listen({
    hostname: listen.hostname ?? "127.0.0.1",
    port: listen.port ?? 0,
    path: listen.path,
    onConnection(conn) {
      const chunks: Uint8Array[] = [];
      received.push(chunks);
      conns.add(conn);
      conn.setHandlers({
        data(chunk) {
          chunks.push(chunk.slice());
          if (!conn.write(chunk)) conn.pause();
        },
        drain: () => conn.resume(),
        end: () => conn.end(),
        close: () => conns.delete(conn),
      });
    },
  });
  const address = listen.path === undefined ? addressOf(listener) : `unix:${listen.path}`;
  return {
    address,
    /** What connection `i` received, as text. */
    text: (i: number) => text(concat(received[i] ?? [])),
    /** What connection `i` received, as bytes. */
    bytes: (i: number) => concat(received[i] ?? []),
    /** What each connection received so far, in the order they arrived. */
    contents: () => received.map(concat),
    /** The same, as text. */
    received: () => received.map((chunks) => text(concat(chunks))),
    get connections() {
      return received.length;
    },
    /** Connections still open. */
    get open() {
      return conns.size;
    },
    close() {
      listener.close();
      for (const conn of conns) conn.reset();
    },
  };
}

/** A refusal as {@linkcode Events.refused} tells it. */
export interface Refused {
  why: string;
  peer: string;
  detail: string;
}

/** Events that record refusals as they are told, and ignore the rest. */
export function refusals(): { events: Events; seen: Refused[] } {
  const seen: Refused[] = [];
  return {
    seen,
    events: {
      ...NO_EVENTS,
      refused: (_f, peer, why, detail) => void seen.push({ why, peer, detail }),
    },
  };
}

/** A client connection that collects what it receives. */
export interface Client {
  conn: Conn;
  /** Everything received so far. */
  received(): Uint8Array;
  receivedLength(): number;
  /** Resolves when the peer's FIN arrives. */
  ended: Promise<void>;
  /** Resolves with the close error (or undefined) when fully closed. */
  closed: Promise<Error | undefined>;
  /** Writes all of `data` respecting backpressure. */
  send(data: Uint8Array, chunkSize?: number): Promise<void>;
}

/** Opens a client connection to `endpoint`. */
export async function connect(endpoint: Endpoint | number): Promise<Client> {
  const target = typeof endpoint === "number"
    ? { hostname: "127.0.0.1", port: endpoint }
    : endpoint;
  const conn = await net.connect(target);
  const chunks: Uint8Array[] = [];
  let length = 0;
  let drained: (() => void) | undefined;
  let onEnd!: () => void;
  let onClose!: (error: Error | undefined) => void;
  const ended = new Promise<void>((resolve) => (onEnd = resolve));
  const closed = new Promise<Error | undefined>((resolve) => (onClose = resolve));
  const handlers: ConnHandlers = {
    data(chunk) {
      chunks.push(chunk.slice());
      length += chunk.length;
    },
    drain: () => drained?.(),
    end: () => onEnd(),
    close(error) {
      onEnd();
      onClose(error);
      drained?.();
    },
  };
  conn.setHandlers(handlers);
  let isClosed = false;
  closed.then(() => (isClosed = true));
  return {
    conn,
    received() {
      const out = new Uint8Array(length);
      let offset = 0;
      for (const chunk of chunks) {
        out.set(chunk, offset);
        offset += chunk.length;
      }
      return out;
    },
    receivedLength: () => length,
    ended,
    closed,
    async send(data, chunkSize = 256 * 1024) {
      for (let offset = 0; offset < data.length && !isClosed; offset += chunkSize) {
        if (!conn.write(data.subarray(offset, offset + chunkSize))) {
          await new Promise<void>((resolve) => (drained = resolve));
        }
      }
    },
  };
}

/** Sends `data`, half-closes, and returns everything received until close. */
export async function exchange(endpoint: Endpoint | number, data: Uint8Array) {
  const client = await connect(endpoint);
  await client.send(data);
  client.conn.end();
  const error = await client.closed;
  return { data: client.received(), error };
}

/** A temporary folder removed by `cleanup`. */
export async function tempDir() {
  const path = await mkdtemp(join(tmpdir(), "mini-balancer-test-"));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

/** A self-signed certificate and its key: PEM text, and the files holding them. */
export interface Certificate {
  cert: string;
  key: string;
  certPath: string;
  keyPath: string;
}

/**
 * Makes a self-signed certificate for `names` (the first is its CN, all are
 * its DNS names) with `openssl`, an EC P-256 key (fast), valid two days.
 *
 * @param dir the folder for the two files
 * @param names the names it serves, at least one
 */
export async function makeCertificate(dir: string, names: string[]): Promise<Certificate> {
  const base = join(dir, names[0]!.replace(/[^A-Za-z0-9.-]/g, "_"));
  const certPath = `${base}.crt`;
  const keyPath = `${base}.key`;
  const args = [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-days",
    "2",
    "-subj",
    `/CN=${names[0]}`,
    "-addext",
    `subjectAltName=${names.map((name) => `DNS:${name}`).join(",")}`,
    "-keyout",
    keyPath,
    "-out",
    certPath,
  ]; // deno-fmt-ignore
  await new Promise<void>((resolve, reject) => {
    execFile("openssl", args, (error, _stdout, stderr) => {
      if (error) reject(new Error(`openssl could not make a certificate: ${stderr || error.message}`));
      else resolve();
    });
  });
  const [cert, key] = await Promise.all([readFile(certPath, "utf8"), readFile(keyPath, "utf8")]);
  return { cert, key, certPath, keyPath };
}

/**
 * The `[[TABLE.tls]]` tables of a TLS-terminating frontend, one per certificate.
 *
 * @param table the frontend's table: `frontend` or `frontends`
 * @param certificates the certificates, the default first
 */
export function tlsTables(table: string, certificates: Certificate[]): string {
  return certificates.map(({ certPath, keyPath }) =>
    `[[${table}.tls]]\ncert = "${certPath}"\nkey = "${keyPath}"\n`
  ).join("");
}

/**
 * A node:tls client trusting only `ca`, collecting what it receives.
 *
 * @param port the TLS server's port on 127.0.0.1
 * @param servername the SNI it sends
 * @param ca the certificate it trusts (PEM)
 */
export function tlsClient(port: number, servername: string, ca: string) {
  const socket = tls.connect({ host: "127.0.0.1", port, servername, ca });
  let received = "";
  socket.on("data", (chunk) => (received += chunk));
  const secure = new Promise<void>((resolve, reject) => {
    socket.once("secureConnect", resolve);
    socket.once("error", reject);
  });
  const ended = new Promise<void>((resolve) => socket.once("end", resolve));
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  return { socket, secure, ended, closed, received: () => received };
}

/**
 * A config text for one frontend on a free port in front of `backends`.
 *
 * @param backends their `forward_to` addresses
 * @param extra lines for the frontend's table
 * @param backendExtra lines for every backend's table
 */
export function configText(backends: string[], extra = "", backendExtra = ""): string {
  return `[frontend]\nbind_on = "127.0.0.1:0"\n${extra}\n` +
    backends.map((b) => `[[frontend.backend]]\nforward_to = "${b}"\n${backendExtra}\n`).join("\n");
}

/**
 * How to start the real program: the current runtime, the compiled
 * executable, or the Node bundle (`npm run build:node`) under `node`.
 */
export type ProgramKind = "bun" | "deno" | "executable" | "node";

/**
 * The command line that runs mini-balancer as `kind`.
 *
 * @param kind how to run it
 * @param denoFlags permissions beyond the deno task's (`--allow-write=…` for a Unix socket)
 */
export function programCommand(kind: ProgramKind, denoFlags: string[] = []): string[] {
  switch (kind) {
    case "bun":
      return [process.execPath, "run", join(ROOT, "src/main.ts")];
    case "deno":
      return [
        process.execPath,
        "run",
        "--no-prompt",
        "--allow-net",
        "--allow-read",
        ...denoFlags,
        join(ROOT, "src/main_deno.ts"),
      ];
    case "executable":
      return [join(ROOT, "dist/mini-balancer")];
    case "node":
      return ["node", join(ROOT, "dist/mini-balancer.mjs")];
  }
}

/** A running mini-balancer process. */
export interface Program {
  child: ChildProcess;
  /** Standard error so far (the logs). */
  stderr(): string;
  /** The frontend's port, read from the "listening for connections" line. */
  port: number;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  /** Sends a signal and waits for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** The config file it runs on (rewrite it and send SIGHUP to reload). */
  file: string;
}

/**
 * Sends a signal to a child. Deno's `ChildProcess.kill` records the signal
 * as the cause of death even when the child catches it and exits 0
 * (denoland/deno#32081 made exitCode and signalCode exclusive), so signal by
 * pid, which leaves the real exit status alone.
 */
export function signalProgram(child: ChildProcess, signal: NodeJS.Signals): void {
  process.kill(child.pid!, signal);
}

/** Runs the program to completion and returns its exit code and output. */
export function runProgram(
  kind: ProgramKind,
  args: string[],
  cwd = ROOT,
  denoFlags: string[] = [],
) {
  const [command, ...rest] = programCommand(kind, denoFlags);
  const child = spawn(command!, [...rest, ...args], { cwd, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (chunk) => (stdout += chunk));
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * Starts the program on a config and waits until it listens. It runs with
 * -v at least, since the "listening for connections" line gives the port.
 */
export async function startProgram(
  kind: ProgramKind,
  config: string,
  args: string[] = [],
  denoFlags: string[] = [],
): Promise<Program & { cleanup(): Promise<void> }> {
  const dir = await tempDir();
  const file = join(dir.path, "mini-balancer.toml");
  await writeFile(file, config);
  const [command, ...rest] = programCommand(kind, denoFlags);
  const child = spawn(command!, [...rest, "-c", file, "-v", ...args], {
    cwd: dir.path,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  let exitCode: number | null | undefined;
  exited.then((code) => (exitCode = code));
  const match = await eventually(
    () => /listening for connections/.test(stderr) || exitCode !== undefined,
    "the balancer to listen",
    20_000,
  ).then(() => /local_address=[^ ]*:(\d+)\}/.exec(stderr), () => null);
  if (match === null) {
    // Leave nothing running behind a failed start.
    if (exitCode === undefined) signalProgram(child, "SIGKILL");
    await exited;
    await dir.cleanup();
    throw new Error(`the balancer did not start:\n${stderr}`);
  }
  const stop = async (signal: NodeJS.Signals = "SIGTERM") => {
    if (exitCode === undefined) signalProgram(child, signal);
    return await exited;
  };
  return {
    child,
    stderr: () => stderr,
    file,
    port: Number(match[1]),
    exited,
    stop,
    async cleanup() {
      if (exitCode === undefined) signalProgram(child, "SIGKILL");
      await exited;
      await dir.cleanup();
    },
  };
}

/**
 * Runs a python3 socket peer for what neither runtime can do (send a TCP
 * reset, listen with a tiny backlog). `s` listens on a free loopback port
 * with a backlog of one; `setup` runs before the port is announced, `serve`
 * after.
 */
export function pythonPeer(
  setup: string[],
  serve: string[],
  args: string[] = [],
): Promise<{ port: number; close(): void; line(text: string): Promise<void> }> {
  const script = [
    "import socket, struct, sys",
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(0)",
    ...setup,
    "print(s.getsockname()[1], flush=True)",
    ...serve,
  ].join("\n");
  const child = spawn("python3", ["-c", script, ...args], { stdio: ["pipe", "pipe", "inherit"] });
  let output = "";
  child.stdout!.on("data", (chunk) => (output += chunk));
  const line = (text: string) => eventually(() => output.includes(`${text}\n`), text, 30_000);
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    eventually(() => output.includes("\n"), "the python peer's port").then(() => {
      resolve({ port: Number(output.split("\n")[0]), close: () => child.kill(), line });
    }, reject);
  });
}
