/**
 * Real loopback peers on the runtime's own {@linkcode Net}: free and closed
 * ports, echo and recording backends, clients, an events sink that records
 * refusals, and python3 peers for what neither runtime can do.
 *
 * @module
 */
import { spawn } from "node:child_process";
import { type Events, NO_EVENTS } from "../../src/balancer/events.ts";
import type {
  Conn,
  ConnHandlers,
  Endpoint,
  Listener,
  TlsOptions,
} from "../../src/runtime/types.ts";
import { net } from "./env.ts";
import { bytes, concat, text } from "./bytes.ts";
import { eventually, sleep } from "./wait.ts";

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
