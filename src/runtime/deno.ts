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
import { CLOSE, END, NOTHING, Outbox } from "./_outbox.ts";
import { codeOfErrorName } from "../errors.ts";
import type {
  Conn,
  ConnHandlers,
  Endpoint,
  HttpServeOptions,
  HttpServer,
  Listener,
  ListenOptions,
  Net,
} from "./types.ts";

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
  #out = new Outbox();
  #writing = false;
  #wantDrain = false;
  #writeDone = false;
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
    return this.#out.bytes;
  }

  setHandlers(handlers: ConnHandlers): void {
    const early = this.#handlers;
    this.#handlers = handlers;
    if (early instanceof EarlyEvents) early.replay(handlers);
  }

  write(chunk: Uint8Array): boolean {
    const out = this.#out;
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
    if (this.#out.end() && !this.#writing) this.#write();
  }
  close(): void {
    if (this.#out.close() && !this.#writing) this.#write();
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
    const out = this.#out;
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
      this.#handlers.drain();
    }
  }

  #finish(error: Error | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#out.clear();
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

/** Sets the `code` Node and Bun use on one of Deno's error classes (see src/errors.ts). */
function withCode(error: unknown): unknown {
  if (!(error instanceof Error) || "code" in error) return error;
  const code = codeOfErrorName(error.name);
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
  serveHttp(options: HttpServeOptions): HttpServer {
    let server: Deno.HttpServer<Deno.NetAddr>;
    try {
      server = Deno.serve(
        { hostname: options.hostname, port: options.port, onListen() {} },
        options.fetch,
      );
    } catch (error) {
      throw withCode(error);
    }
    return { address: endpointOf(server.addr), close: () => server.shutdown() };
  },
  async connect(endpoint: Endpoint): Promise<Conn> {
    try {
      return new DenoConn(await Deno.connect({ hostname: endpoint.hostname, port: endpoint.port }));
    } catch (error) {
      throw withCode(error);
    }
  },
};
