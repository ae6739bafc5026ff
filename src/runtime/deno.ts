/**
 * {@linkcode Net} over `Deno.listen` and `Deno.connect`, using the
 * connection's `read`/`write`/`closeWrite` directly rather than web streams.
 *
 * Deno 2.9 behaviour this relies on (checked with small experiments):
 * `write()` may write only part of a large buffer; `read()` resolves `null`
 * at the peer's FIN; `closeWrite()` sends FIN and keeps reading. Deno has no
 * way to send a TCP reset, so {@linkcode Conn.reset} closes at once instead.
 *
 * @module
 */
import { EarlyEvents } from "./_early.ts";
import { WriteQueue } from "./_write_queue.ts";
import type { Conn, ConnHandlers, Endpoint, Listener, ListenOptions, Net } from "./types.ts";

/**
 * Each connection reads into one buffer of its own, reused for every read.
 * It starts at 1 KiB, since an idle connection always has a read pending on it,
 * and grows fourfold each time a read fills it, up to the largest size.
 */
const FIRST_READ_SIZE = 1024;
const LARGEST_READ_SIZE = 64 * 1024;
/** `write` reports backpressure past this many buffered bytes. */
const HIGH_WATER = 128 * 1024;

class DenoConn implements Conn {
  #conn: Deno.TcpConn;
  #handlers: ConnHandlers = new EarlyEvents();
  #readBuffer = new Uint8Array(FIRST_READ_SIZE);
  #reading = false;
  #paused = false;
  #readDone = false;
  #queue = new WriteQueue();
  #buffered = 0;
  #writing = false;
  #wantDrain = false;
  #endRequested = false;
  #writeDone = false;
  #closeRequested = false;
  #closed = false;
  readonly localAddress: Endpoint;
  readonly remoteAddress: Endpoint;

  constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    conn.setNoDelay(true);
    this.localAddress = endpointOf(conn.localAddr);
    this.remoteAddress = endpointOf(conn.remoteAddr);
    this.#read();
  }

  get bufferedAmount(): number {
    return this.#buffered;
  }

  setHandlers(handlers: ConnHandlers): void {
    const early = this.#handlers;
    this.#handlers = handlers;
    if (early instanceof EarlyEvents) early.replay(handlers);
  }

  write(chunk: Uint8Array): boolean {
    if (this.#closed || this.#endRequested) return false;
    // The caller may reuse the chunk's memory once we return: the queue copies.
    this.#queue.push(chunk);
    this.#buffered += chunk.length;
    if (!this.#writing) this.#write();
    if (this.#buffered < HIGH_WATER) return true;
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
    if (this.#closed || this.#endRequested) return;
    this.#endRequested = true;
    if (!this.#writing) this.#write();
  }
  close(): void {
    if (this.#closed) return;
    this.#closeRequested = true;
    if (!this.#writing) this.#write();
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
          this.#handlers.end();
          if (this.#writeDone) this.#finish(undefined);
          return;
        }
        this.#handlers.data(buffer.subarray(0, n));
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
    try {
      const queue = this.#queue;
      for (let head = queue.head(); head !== undefined && !this.#closed; head = queue.head()) {
        const n = await this.#conn.write(head);
        if (this.#closed) break;
        this.#buffered -= n;
        queue.written(n);
      }
      if (this.#closed) return;
      if (this.#closeRequested) return this.#finish(undefined);
      if (this.#endRequested && !this.#writeDone) {
        this.#writeDone = true;
        await this.#conn.closeWrite();
        if (this.#readDone) return this.#finish(undefined);
      }
      if (this.#wantDrain) {
        this.#wantDrain = false;
        this.#handlers.drain();
      }
    } catch (error) {
      this.#finish(withCode(error) as Error);
    } finally {
      this.#writing = false;
    }
  }

  #finish(error: Error | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue.clear();
    this.#buffered = 0;
    try {
      this.#conn.close();
    } catch {
      // Already closed by the runtime after an error: nothing left to free.
    }
    queueMicrotask(() => this.#handlers.close(error));
  }
}

function endpointOf(addr: Deno.Addr): Endpoint {
  const { hostname, port } = addr as Deno.NetAddr;
  return { hostname, port };
}

async function accept(listener: Deno.TcpListener, onConnection: (conn: Conn) => void) {
  for (;;) {
    let conn: Deno.TcpConn;
    try {
      conn = await listener.accept();
    } catch (error) {
      if (error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted) {
        return; // the listener was closed
      }
      // Out of file descriptors and the like: keep serving the others.
      await new Promise((resolve) => setTimeout(resolve, 10));
      continue;
    }
    onConnection(new DenoConn(conn));
  }
}

/** Maps Deno's error classes onto the `code` strings Node and Bun use. */
function withCode(error: unknown): unknown {
  if (!(error instanceof Error) || "code" in error) return error;
  const codes: Record<string, string> = {
    AddrInUse: "EADDRINUSE",
    AddrNotAvailable: "EADDRNOTAVAIL",
    ConnectionRefused: "ECONNREFUSED",
    ConnectionReset: "ECONNRESET",
    ConnectionAborted: "ECONNABORTED",
    BrokenPipe: "EPIPE",
    PermissionDenied: "EACCES",
    NotFound: "ENOTFOUND",
    TimedOut: "ETIMEDOUT",
  };
  const code = codes[error.name];
  if (code !== undefined) Object.assign(error, { code });
  return error;
}

/** The Deno implementation of {@linkcode Net}. */
export const denoNet: Net = {
  runtime: "deno",
  listen(options: ListenOptions): Listener {
    let listener: Deno.TcpListener;
    try {
      listener = Deno.listen({ hostname: options.hostname, port: options.port });
    } catch (error) {
      throw withCode(error);
    }
    accept(listener, options.onConnection);
    return {
      address: endpointOf(listener.addr),
      close: () => {
        try {
          listener.close();
        } catch {
          // Closing twice is harmless.
        }
      },
    };
  },
  async connect(endpoint: Endpoint): Promise<Conn> {
    try {
      return new DenoConn(await Deno.connect({ hostname: endpoint.hostname, port: endpoint.port }));
    } catch (error) {
      throw withCode(error);
    }
  },
};
