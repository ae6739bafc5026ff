/**
 * {@linkcode Net} over `Deno.listen`, `Deno.listenTls` and `Deno.connect`,
 * using the connection's `read`/`write`/`closeWrite` directly rather than web
 * streams.
 *
 * Deno 2.9 behaviour this relies on (checked with small experiments):
 * `write()` may write only part of a large buffer; `read()` resolves `null`
 * at the peer's FIN; `closeWrite()` sends FIN and keeps reading. Deno has no
 * way to send a TCP reset, so {@linkcode Conn.reset} closes at once instead.
 * A `TlsConn` behaves the same (`closeWrite()` sends close_notify, `read()`
 * resolves `null` at the peer's); `Deno.listenTls` serves one certificate
 * and has no Unix transport. A Unix socket (`transport: "unix"`) needs
 * `--allow-net`, `--allow-read` and `--allow-write` for its path, to listen
 * and to connect alike; its peer has no name (`path: null`); closing the
 * listener removes the file (later: see `removeSocketFile`); a path that
 * exists fails with `AddrInUse`.
 *
 * @module
 */
import { unlinkSync } from "node:fs";
import { AdapterConn, deferClose } from "./_conn.ts";
import { CLOSE, END, HIGH_WATER, NOTHING } from "./_outbox.ts";
import { codeOfErrorName } from "../errors.ts";
import {
  applyMode,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  isPlainText,
  onlyCertificate,
  tlsListenError,
  unixListenEndpoint,
} from "./_listen.ts";
import { unixEndpoint } from "./_endpoint.ts";
import { AcceptPause, describeAddress, isOutOfDescriptors } from "./_accept_pause.ts";
import { serveHttp1 } from "./_http1.ts";
import type {
  ChildProcessHandle,
  Conn,
  Dialer,
  Endpoint,
  HttpServeOptions,
  HttpServer,
  Listener,
  ListenOptions,
  Net,
  SpawnProcess,
} from "./types.ts";

/**
 * Each connection reads into one buffer of its own, reused for every read.
 * It starts at 1 KiB, since an idle connection always has a read pending on it,
 * and grows fourfold each time a read fills it, up to the largest size.
 */
const FIRST_READ_SIZE = 1024;
const LARGEST_READ_SIZE = 64 * 1024;

class DenoConn extends AdapterConn implements Conn {
  #conn: Deno.Conn;
  #readBuffer = new Uint8Array(FIRST_READ_SIZE);
  #reading = false;
  #paused = false;
  #readDone = false;
  #writing = false;
  #wantDrain = false;
  #writeDone = false;
  #closed = false;
  /** Both addresses of a Unix socket, which Deno does not name. */
  readonly #unix: Endpoint | undefined;
  #local: Endpoint | undefined;
  #remote: Endpoint | undefined;

  /** `unix` gives both addresses of a Unix socket (Deno names no Unix peer). */
  constructor(conn: Deno.Conn, unix?: Endpoint) {
    super();
    this.#conn = conn;
    this.#unix = unix;
    // A TlsConn has no setNoDelay (Deno 2.9): its Nagle stays as it is.
    if (unix === undefined) (conn as Partial<Deno.TcpConn>).setNoDelay?.(true);
    this.#read();
  }

  // Made when first asked (most connections never are: logs below INFO,
  // round robin); Deno keeps the runtime's address objects after a close.
  get localAddress(): Endpoint {
    return this.#unix ?? (this.#local ??= endpointOf(this.#conn.localAddr));
  }
  get remoteAddress(): Endpoint {
    return this.#unix ?? (this.#remote ??= endpointOf(this.#conn.remoteAddr));
  }

  write(chunk: Uint8Array): boolean {
    const out = this.out;
    if (!out.accepting) return false;
    // The caller may reuse the chunk's memory once we return: the outbox copies.
    out.push(chunk);
    if (!this.#writing) this.#write();
    if (out.bytes < HIGH_WATER) return true;
    this.#wantDrain = true;
    return false;
  }

  pause(): void {
    this.#paused = true;
  }
  resume(): void {
    this.#paused = false;
    this.#read();
  }

  end(): void {
    if (this.out.end() && !this.#writing) this.#write();
  }
  close(): void {
    if (this.out.close() && !this.#writing) this.#write();
  }
  reset(): void {
    this.#finish(undefined);
  }

  async #read(): Promise<void> {
    if (this.#reading || this.#readDone || this.#closed) return;
    this.#reading = true;
    try {
      while (!this.#paused && !this.#closed) {
        const buffer = this.#readBuffer;
        const n = await this.#conn.read(buffer);
        if (this.#closed) return;
        if (n === null) {
          this.#readDone = true;
          this.handlers.end();
          if (this.#writeDone) this.#finish(undefined);
          return;
        }
        this.handlers.data(buffer.subarray(0, n));
        if (n === buffer.length && n < LARGEST_READ_SIZE) {
          this.#readBuffer = new Uint8Array(n * 4);
        }
      }
    } catch (error) {
      this.#finish(withCode(error) as Error);
    } finally {
      this.#reading = false;
    }
  }

  async #write(): Promise<void> {
    this.#writing = true;
    const out = this.out;
    try {
      for (let head = out.head(); head !== undefined && !this.#closed; head = out.head()) {
        const n = await this.#conn.write(head);
        if (this.#closed) break;
        out.written(n);
      }
      if (this.#closed) return;
      const due = out.takeDue();
      if (due === CLOSE) return this.#finish(undefined);
      if (due === END) {
        this.#writeDone = true;
        await this.#conn.closeWrite();
        if (this.#readDone) return this.#finish(undefined);
      }
    } catch (error) {
      return this.#finish(withCode(error) as Error);
    } finally {
      this.#writing = false;
    }
    if (this.#closed) return;
    // A close asked while FIN was going out is still due.
    if (out.due !== NOTHING) return void this.#write();
    if (this.#wantDrain) {
      // After `#writing` is false, so that a handler writing from drain starts a write.
      this.#wantDrain = false;
      this.handlers.drain();
    }
  }

  #finish(error: Error | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    this.out.clear();
    try {
      this.#conn.close();
    } catch {
      // Already closed by the runtime after an error: nothing left to free.
    }
    this.#closeError = error;
    deferClose(this);
  }

  /** Why it closed: undefined for a clean close. */
  #closeError: Error | undefined;

  /** Reports its close to the handlers (see {@linkcode deferClose}). */
  reportClose(): void {
    this.handlers.close(this.#closeError);
  }
}

function endpointOf(addr: Deno.Addr): Endpoint {
  const { hostname, port } = addr as Deno.NetAddr;
  return { hostname, port };
}

async function accept(
  listener: Deno.Listener,
  take: (conn: Deno.Conn) => void,
  pause: AcceptPause,
) {
  for (;;) {
    let conn: Deno.Conn;
    try {
      conn = await listener.accept();
    } catch (error) {
      if (error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted) {
        return; // the listener was closed
      }
      // Out of file descriptors: stop accepting for a while (see _accept_pause.ts);
      // anything else (a connection aborted while queued) is retried soon.
      await sleep(isOutOfDescriptors(error) ? pause.pause() : 10);
      continue;
    }
    if (pause.failing) pause.accepted();
    take(conn);
  }
}

/**
 * Reports a TLS client once its handshake is done. `Deno.listenTls`'s
 * accept returns at the TCP accept, before any TLS byte (the handshake
 * would run at the first read or write): a client that has not finished
 * within the deadline is closed and never reported, so it never gets a
 * session or a backend connection. (Its socket stays open until the peer
 * leaves, see `closesUnfinishedTls`: the core puts only its own loopback
 * router's connections here, and closes their other end itself.)
 */
function handshake(conn: Deno.TlsConn, options: ListenOptions): void {
  const acceptedAt = performance.now();
  let over = false;
  const timer = setTimeout(() => {
    over = true;
    closeQuietly(conn);
  }, options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);
  conn.handshake().then(() => {
    clearTimeout(timer);
    if (!over) options.onConnection(new DenoConn(conn), acceptedAt);
  }, (error) => {
    clearTimeout(timer);
    if (over) return;
    if (options.onPlainText !== undefined && isPlainText(error)) {
      options.onPlainText(endpointOf(conn.remoteAddr));
    }
    closeQuietly(conn);
  });
}

/** Closes a Deno connection that may be closed already. */
function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Closed already: nothing left to free.
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Removes a closed listener's socket file; gone already is fine. */
function removeSocketFile(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Deno removed it first, or someone else did: nothing left to do.
  }
}

/**
 * Binds what `options` ask for: TCP, TLS over TCP, or a Unix socket (TLS on
 * one is refused before: see `unixListenEndpoint`).
 */
function bind(options: ListenOptions): Deno.Listener {
  const { hostname, port, path, tls } = options;
  // SO_REUSEPORT is unstable in Deno 2.9: without --unstable-net it throws.
  const reuse = options.reusePort === true ? { reusePort: true } : {};
  if (tls !== undefined) {
    const { cert, key } = onlyCertificate(tls, "deno");
    try {
      return Deno.listenTls({ hostname, port, cert, key, ...reuse });
    } catch (error) {
      throw tlsListenError(withCode(error));
    }
  }
  try {
    return path === undefined
      ? Deno.listen({ hostname, port, ...reuse })
      : Deno.listen({ transport: "unix", path });
  } catch (error) {
    throw withCode(error);
  }
}

/** Sets the `code` Node and Bun use on one of Deno's error classes (see src/errors.ts). */
function withCode(error: unknown): unknown {
  if (!(error instanceof Error) || "code" in error) return error;
  const code = codeOfErrorName(error.name);
  if (code !== undefined) Object.assign(error, { code });
  return error;
}

/**
 * Starts a process with `Deno.Command` (it needs `--allow-run` for the
 * command; `node:child_process` would ask for environment access too).
 */
export const denoSpawn: SpawnProcess = (command): ChildProcessHandle => {
  const [file, ...args] = command;
  const child = new Deno.Command(file!, {
    args,
    stdin: "piped",
    stdout: "inherit",
    stderr: "inherit",
    detached: true,
  }).spawn();
  let done = false;
  const stdin = child.stdin.getWriter();
  const exited = child.status.then(({ code, signal }) => {
    done = true;
    return { code: signal === null ? code : null, signal };
  });
  return {
    pid: child.pid,
    exited,
    kill(signal) {
      if (done) return;
      try {
        child.kill(signal);
      } catch {
        // It exited meanwhile.
      }
    },
    send(line) {
      if (!done) stdin.write(new TextEncoder().encode(`${line}\n`)).catch(() => {});
    },
  };
};

/**
 * Says what this Deno process lacks to run `workers`, or undefined when it
 * has it all: `--allow-run` for Deno itself (to start the workers) and
 * `--unstable-net` (their SO_REUSEPORT). Asked before any worker starts:
 * without the first, every start fails and is retried forever; without the
 * second, Deno ends the process at the first `reusePort` with exit code 70.
 *
 * @returns what to do, naming the missing flags ("run deno with --unstable-net …")
 */
export function denoWorkersUnavailable(): string | undefined {
  const missing: string[] = [];
  const run = Deno.permissions.querySync({ name: "run", command: Deno.execPath() });
  if (run.state !== "granted") {
    missing.push(`--allow-run=${Deno.execPath()} (to start the workers)`);
  }
  // Deno 2.9 has no query for an unstable feature; `Deno.listenDatagram`
  // exists exactly when "net" is on (`--unstable-net`, `--unstable`, or
  // `"unstable": ["net"]` in deno.json), as `reusePort` needs.
  if (!("listenDatagram" in Deno)) missing.push("--unstable-net (for SO_REUSEPORT)");
  return missing.length === 0 ? undefined : `run deno with ${missing.join(" and ")}`;
}

/** The Deno implementation of {@linkcode Net}. */
export const denoNet: Net = {
  runtime: "deno",
  // A TlsConn closed before its handshake keeps its socket until the peer
  // leaves (Deno 2.9, checked: silent clients were still open after 100 s).
  closesUnfinishedTls: false,
  listen(options: ListenOptions): Listener {
    const unix = unixListenEndpoint(options);
    const listener = bind(options);
    const close = () => {
      try {
        listener.close();
      } catch {
        // Closing twice is harmless.
      }
      // Deno removes the file only when it drops the listener, once the
      // pending accept is cancelled: later than close() returns, and late
      // enough to remove a socket re-bound at the same path in between
      // (denoland/deno#31947). Remove it now, as Bun does.
      if (unix !== undefined) removeSocketFile(unix.path);
    };
    if (unix !== undefined) applyMode(unix.path, options.mode, close);
    const { onConnection, tls } = options;
    const address = unix ?? endpointOf(listener.addr);
    accept(
      listener,
      tls === undefined
        ? (conn) => onConnection(new DenoConn(conn, unix))
        : (conn) => handshake(conn as Deno.TlsConn, options),
      new AcceptPause(() => describeAddress(address)),
    );
    return { address, close };
  },
  fetch: (input, init) => fetch(input, init),
  serveHttp(options: HttpServeOptions): HttpServer {
    // Not Deno.serve: it has no request timeout, and dies of a failed accept (see _http1.ts).
    return serveHttp1(denoNet, options);
  },
  async connect(endpoint: Endpoint): Promise<Conn> {
    const { hostname, port, path } = endpoint;
    try {
      if (path === undefined) return new DenoConn(await Deno.connect({ hostname, port }));
      const conn = await Deno.connect({ transport: "unix", path });
      return new DenoConn(conn, unixEndpoint(path));
    } catch (error) {
      throw withCode(error);
    }
  },
  dial(endpoint: Endpoint, to: Dialer, tag: number): void {
    // Deno.connect's own promise, without connect's async wrapper around it.
    const { hostname, port, path } = endpoint;
    const connecting = path === undefined
      ? Deno.connect({ hostname, port })
      : Deno.connect({ transport: "unix", path });
    const unix = unixEndpoint(path);
    connecting.then(
      (conn) => to.dialed(new DenoConn(conn, unix), tag),
      (error) => to.dialFailed(withCode(error), tag),
    );
  },
};
