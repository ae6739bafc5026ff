/**
 * {@linkcode DenoConn}, a {@linkcode Conn} over a `Deno.Conn` (TCP, TLS or
 * Unix), read and written with its own `read`/`write`/`closeWrite`; and the
 * two conversions the Deno adapter needs from Deno's types (an address, an
 * error's `code`).
 *
 * @module
 */
import { AdapterConn, deferClose } from "../_conn.ts";
import { CLOSE, END, HIGH_WATER, NOTHING } from "../_outbox.ts";
import { codeOfErrorName } from "../../errors.ts";
import type { Conn, Endpoint } from "../types.ts";

/**
 * Each connection reads into one buffer of its own, reused for every read.
 * It starts at 1 KiB, since an idle connection always has a read pending on it,
 * and grows fourfold each time a read fills it, up to the largest size.
 */
const FIRST_READ_SIZE = 1024;
const LARGEST_READ_SIZE = 64 * 1024;

/** A {@linkcode Conn} over a `Deno.Conn`, reading into a buffer of its own. */
export class DenoConn extends AdapterConn implements Conn {
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

/** A Deno TCP address as an endpoint. */
export function endpointOf(addr: Deno.Addr): Endpoint {
  const { hostname, port } = addr as Deno.NetAddr;
  return { hostname, port };
}

/** Sets the `code` Node and Bun use on one of Deno's error classes (see src/errors.ts). */
export function withCode(error: unknown): unknown {
  if (!(error instanceof Error) || "code" in error) return error;
  const code = codeOfErrorName(error.name);
  if (code !== undefined) Object.assign(error, { code });
  return error;
}
