/**
 * {@linkcode Net} over `Bun.listen` and `Bun.connect`: callback socket
 * handlers, no promise or allocation per chunk on the hot path.
 *
 * Bun 1.4 behaviour this relies on (checked with small experiments):
 * - with `allowHalfOpen: true`, a peer's FIN calls `end` and the socket stays
 *   writable; `shutdown()` with no argument sends FIN and keeps reading;
 * - `end()` closes both directions and calls `close` synchronously;
 * - once this side has sent FIN, the peer's FIN closes the socket and calls
 *   `close` without `end`: the adapter reports the `end` itself;
 * - `write()` returns how many bytes the kernel took and keeps none of the
 *   rest, so the remainder is ours to keep and retry on `drain`;
 * - `pause()`/`resume()` stop and restart reading;
 * - accepted and connected sockets come with TCP_NODELAY on;
 * - over TLS (`tls: { cert, key }`, one certificate: `Bun.listen` takes no
 *   list, unlike `Bun.serve`) the same holds: `shutdown()` sends
 *   close_notify and FIN, the peer's close_notify calls `end`;
 * - a Unix socket (`unix: path`) reports no addresses; `stop()` removes its
 *   file; a path that exists, socket or not, fails with EADDRINUSE.
 *
 * @module
 */
import { deferClose, SocketConn } from "./_conn.ts";
import { CLOSE, END } from "./_outbox.ts";
import { release } from "./_release.ts";
import {
  applyMode,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  isPlainText,
  onlyCertificate,
  tlsListenError,
  unixListenEndpoint,
} from "./_listen.ts";
import { unixEndpoint } from "./_endpoint.ts";
import {
  AcceptPause,
  describeAddress,
  descriptorsExhausted,
  watchDescriptors,
} from "./_accept_pause.ts";
import type {
  Conn,
  Dialer,
  Endpoint,
  HttpServeOptions,
  HttpServer,
  Listener,
  ListenOptions,
  Net,
} from "./types.ts";
import { HTTP_REQUEST_TIMEOUT_MS } from "./types.ts";

// The few Bun APIs used here, declared locally so `deno check` covers this file.
interface BunSocket {
  data: BunConn;
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  readonly localAddress: string | undefined;
  readonly localPort: number | undefined;
  write(data: Uint8Array): number;
  shutdown(halfClose?: boolean): void;
  end(): void;
  terminate(): void;
  pause(): void;
  resume(): void;
}
interface BunSocketHandler {
  binaryType: "uint8array";
  open(socket: BunSocket): void;
  connectError?(socket: BunSocket, error: Error): void;
  data(socket: BunSocket, chunk: Uint8Array): void;
  drain(socket: BunSocket): void;
  end(socket: BunSocket): void;
  error(socket: BunSocket, error: Error): void;
  close(socket: BunSocket, error?: Error): void;
  /** A TLS socket's handshake ended: `success` says whether it completed. */
  handshake?(socket: BunSocket, success: boolean, authorizationError: Error | null): void;
}
interface BunServer {
  readonly hostname: string;
  readonly port: number;
  stop(closeActiveConnections?: boolean): void;
}
interface BunHttpServer {
  readonly hostname: string;
  readonly port: number;
  stop(closeActiveConnections?: boolean): Promise<void>;
  requestIP(request: Request): { address: string; port: number } | null;
}
/** Where `Bun.listen` and `Bun.connect` go: a host and port, or a Unix socket. */
type BunAddress = { hostname: string; port: number } | { unix: string };
declare const Bun: {
  serve(options: {
    hostname: string;
    port: number;
    /** Seconds. */
    idleTimeout?: number;
    fetch(request: Request, server: BunHttpServer): Response | Promise<Response>;
  }): BunHttpServer;
  listen(
    options: BunAddress & {
      allowHalfOpen: boolean;
      reusePort?: boolean;
      tls?: { cert: string; key: string };
      socket: BunSocketHandler;
    },
  ): BunServer;
  connect(
    options: BunAddress & { allowHalfOpen: boolean; socket: BunSocketHandler; data?: unknown },
  ): Promise<BunSocket>;
};

function bunAddress(endpoint: Endpoint): BunAddress {
  const { path } = endpoint;
  return path === undefined ? { hostname: endpoint.hostname, port: endpoint.port } : { unix: path };
}

class BunConn extends SocketConn<BunSocket> implements Conn {
  #closed = false;
  #error: Error | undefined;
  /** Our FIN is out and nothing closed the socket on our side since. */
  #finSent = false;
  /** The peer's FIN was reported. */
  #peerEnded = false;
  /** Why it closed, once closed: undefined for a clean close. */
  #reason: Error | undefined;
  /** Whether its close came from the peer's FIN after ours: an `end` is reported first. */
  #peerFin = false;

  /** Reports its close to the handlers (see {@linkcode deferClose}). */
  reportClose(): void {
    if (this.#peerFin) this.handlers.end();
    this.handlers.close(this.#reason);
  }

  constructor(socket: BunSocket, unix?: Endpoint) {
    super(socket, unix);
    // No setNoDelay: Bun's sockets already have TCP_NODELAY on (strace shows
    // the setsockopt after accept and connect), and calling it again cost
    // about a sixth of the CPU on a new-connection load.
  }

  write(chunk: Uint8Array): boolean {
    const out = this.out;
    if (!out.accepting) return false;
    if (out.bytes === 0) {
      const written = this.socket.write(chunk);
      if (written === chunk.length) return true;
      // The chunk's memory may be reused once we return: the outbox copies.
      out.push(written > 0 ? chunk.subarray(written) : chunk);
      return false;
    }
    out.push(chunk);
    return false;
  }

  pause(): void {
    if (!this.#closed) this.socket.pause();
  }
  resume(): void {
    if (!this.#closed) this.socket.resume();
  }

  end(): void {
    const out = this.out;
    if (!out.end() || out.bytes > 0) return; // FIN after the flush, on drain
    out.takeDue();
    this.#shutdown();
  }
  close(): void {
    const out = this.out;
    if (!out.close()) return;
    this.#finSent = false;
    if (out.bytes > 0) return; // closes after the flush, on drain
    out.takeDue();
    this.socket.end();
  }
  reset(): void {
    if (this.#closed) return;
    this.#finSent = false;
    this.out.clear();
    this.socket.terminate();
  }

  #flush(): void {
    const out = this.out;
    for (let head = out.head(); head !== undefined; head = out.head()) {
      const written = this.socket.write(head);
      if (written > 0) out.written(written);
      if (written < head.length) return;
    }
    const due = out.takeDue();
    if (due === END) this.#shutdown();
    else if (due === CLOSE) return this.socket.end();
    this.handlers.drain();
  }

  #shutdown(): void {
    // After the peer's FIN, our FIN finishes both directions: close at once.
    // A shutdown here cost a syscall and an epoll re-arm per proxied
    // connection (strace under wrk: 23.3 syscalls per connection against
    // 22.3 before the adapters shared their write side).
    if (this.#peerEnded) return this.socket.end();
    this.#finSent = true;
    this.socket.shutdown();
  }

  static readonly handlers: Omit<BunSocketHandler, "open"> = {
    // Plain Uint8Array chunks: no Buffer prototype to set up per read.
    binaryType: "uint8array",
    data(socket, chunk) {
      socket.data.handlers.data(chunk);
      // Bun gives every read an ArrayBuffer of its own, and the chunk is only
      // valid during the call (see ConnHandlers): give its memory back now.
      release(chunk, false);
    },
    drain(socket) {
      const conn = socket.data;
      if (conn.out.bytes > 0) conn.#flush();
    },
    end(socket) {
      const conn = socket.data;
      conn.#peerEnded = true;
      conn.handlers.end();
    },
    error(socket, error) {
      const conn = socket.data;
      if (conn !== undefined) conn.#error ??= error;
    },
    close(socket, error) {
      const conn = socket.data;
      if (conn === undefined || conn.#closed) return;
      conn.#closed = true;
      conn.out.clear();
      conn.#reason = error ?? conn.#error;
      // Closed cleanly after our FIN, by nothing we did: the peer's FIN did it.
      conn.#peerFin = conn.#reason === undefined && conn.#finSent && !conn.#peerEnded;
      // Bun calls close from inside end()/terminate(): report it later, so
      // handlers never run re-entrantly from a call on the same connection.
      deferClose(conn);
    },
  };
}

const connectHandlers: BunSocketHandler = {
  ...BunConn.handlers,
  open(socket) {
    socket.data = new BunConn(socket);
  },
};

/** Who waits for a dial, carried as the socket's data until it opens. */
class Dialing {
  readonly to: Dialer;
  readonly tag: number;
  readonly unix: Endpoint | undefined;
  constructor(to: Dialer, tag: number, unix: Endpoint | undefined) {
    this.to = to;
    this.tag = tag;
    this.unix = unix;
  }
}

/**
 * Handlers for {@linkcode bunNet.dial}: the outcome goes to the dialer from
 * Bun's own open and connectError callbacks, so the promise Bun.connect
 * returns is left alone (with connectError set it never rejects unhandled).
 */
const dialHandlers: BunSocketHandler = {
  ...BunConn.handlers,
  open(socket) {
    const dialing = socket.data as unknown as Dialing;
    const conn = new BunConn(socket, dialing.unix);
    socket.data = conn;
    dialing.to.dialed(conn, dialing.tag);
  },
  connectError(socket, error) {
    const dialing = socket.data as unknown as Dialing;
    // Bun fails a Unix path that does not exist from inside Bun.connect:
    // report later, never from within dial (the rare path, so always).
    const reported = localCause(error);
    queueMicrotask(() => dialing.to.dialFailed(reported, dialing.tag));
  },
};

/**
 * Bun 1.4 reports a connect that failed for want of file descriptors
 * (`socket()` failing with EMFILE) as ECONNREFUSED, "Failed to connect":
 * when no descriptor can be had right now, say what it was, so that the
 * backend is not blamed for it.
 */
function localCause(error: Error): Error {
  if ((error as { code?: unknown }).code !== "ECONNREFUSED" || !descriptorsExhausted()) {
    return error;
  }
  return Object.assign(new Error("Failed to connect: out of file descriptors", { cause: error }), {
    code: "EMFILE",
  });
}

/** A TLS client accepted and still in its handshake. */
interface Handshaking {
  readonly acceptedAt: number;
  readonly timer: ReturnType<typeof setTimeout>;
}

/**
 * The handlers of a TLS listener: `Bun.listen` calls `open` at the TCP
 * accept, before any TLS byte, and `handshake` once the handshake is over
 * (`success` false when it failed, also when the client left first, with
 * the reason as `authorizationError`; after a success that argument is the
 * client certificate's verification, which means nothing to a server that
 * asks for none). The connection is reported only after a successful
 * handshake; one that has not finished within the deadline is closed, so a
 * silent client costs a socket for that long only.
 */
function tlsHandlers(options: ListenOptions, pause: AcceptPause): BunSocketHandler {
  const { onConnection } = options;
  const handshaking = new Map<BunConn, Handshaking>();
  /** Forgets a client's handshake; returns when it was accepted, if it was still under way. */
  const done = (conn: BunConn | undefined): Handshaking | undefined => {
    const entry = conn === undefined ? undefined : handshaking.get(conn);
    if (entry === undefined) return undefined;
    clearTimeout(entry.timer);
    handshaking.delete(conn!);
    return entry;
  };
  return {
    ...BunConn.handlers,
    open(socket) {
      if (pause.failing) pause.accepted();
      const conn = new BunConn(socket);
      socket.data = conn;
      const ms = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
      const timer = setTimeout(() => {
        if (done(conn) !== undefined) conn.reset();
      }, ms);
      handshaking.set(conn, { acceptedAt: performance.now(), timer });
    },
    handshake(socket, success, error) {
      const conn = socket.data;
      const entry = done(conn);
      if (entry === undefined) return; // not the first handshake, or timed out
      if (success) return onConnection(conn, entry.acceptedAt);
      // On a failure, Bun passes its reason as `authorizationError`.
      if (options.onPlainText !== undefined && isPlainText(error)) {
        options.onPlainText(conn.remoteAddress);
      }
      conn.reset();
    },
    close(socket, error) {
      done(socket.data);
      BunConn.handlers.close(socket, error);
    },
  };
}

/** The Bun implementation of {@linkcode Net}. */
export const bunNet: Net = {
  runtime: "bun",
  listen(options: ListenOptions): Listener {
    const { onConnection, tls } = options;
    const unix = unixListenEndpoint(options);
    let certificate: { cert: string; key: string } | undefined;
    if (tls !== undefined) {
      const { cert, key } = onlyCertificate(tls, "bun");
      certificate = { cert, key };
    }
    const pause = new AcceptPause(() => describeAddress(address));
    const socket: BunSocketHandler = certificate === undefined
      ? {
        ...BunConn.handlers,
        open(socket) {
          if (pause.failing) pause.accepted();
          const conn = new BunConn(socket, unix);
          socket.data = conn;
          onConnection(conn);
        },
      }
      : tlsHandlers(options, pause);
    const bind = (port: number) =>
      Bun.listen({
        ...bunAddress({ ...options, port }),
        allowHalfOpen: true,
        reusePort: unix === undefined && options.reusePort === true,
        tls: certificate,
        socket,
      });
    let server: BunServer;
    try {
      server = bind(options.port);
    } catch (error) {
      throw tlsListenError(error);
    }
    const address = unix ?? { hostname: server.hostname, port: server.port };
    // Bun retries a failing accept in a busy loop: see _accept_pause.ts.
    let listening = true;
    const stop = () => {
      if (listening) server.stop(false);
      listening = false;
    };
    const watch = watchDescriptors({
      pause,
      stop,
      start() {
        server = bind(address.port);
        listening = true;
        if (unix !== undefined) applyMode(unix.path, options.mode, stop);
      },
    });
    const close = () => {
      watch.close();
      stop();
    };
    if (unix !== undefined) applyMode(unix.path, options.mode, close);
    return { address, close };
  },
  fetch: (input, init) => fetch(input, init),
  serveHttp(options: HttpServeOptions): HttpServer {
    const pause = new AcceptPause(() => describeAddress(address));
    const serve = (port: number) =>
      Bun.serve({
        hostname: options.hostname,
        port,
        // Closes a connection idle this long, a half-sent request included.
        idleTimeout: HTTP_REQUEST_TIMEOUT_MS / 1000,
        fetch(request, server) {
          if (pause.failing) pause.accepted();
          const peer = server.requestIP(request);
          return options.fetch(request, { hostname: peer?.address ?? "", port: peer?.port ?? 0 });
        },
      });
    let server = serve(options.port);
    const address = { hostname: server.hostname, port: server.port };
    const stopped: BunHttpServer[] = [];
    const watch = watchDescriptors({
      pause,
      stop() {
        // Requests under way finish; the listening socket closes.
        server.stop(false);
        // Their connections end within the idle timeout: keep the last few
        // servers for close(), not one per pause of a long episode.
        if (stopped.push(server) > 16) stopped.shift()!.stop(true);
      },
      start() {
        server = serve(address.port);
      },
    });
    return {
      address,
      close() {
        watch.close();
        return Promise.all([server, ...stopped].map((s) => s.stop(true))).then(() => {});
      },
    };
  },
  async connect(endpoint: Endpoint): Promise<Conn> {
    const { path } = endpoint;
    const socket = await Bun.connect({
      ...bunAddress(endpoint),
      allowHalfOpen: true,
      socket: path === undefined ? connectHandlers : {
        ...BunConn.handlers,
        open(socket) {
          socket.data = new BunConn(socket, unixEndpoint(path));
        },
      },
    }).catch((error) => {
      throw error instanceof Error ? localCause(error) : error;
    });
    return socket.data;
  },
  dial(endpoint: Endpoint, to: Dialer, tag: number): void {
    const unix = unixEndpoint(endpoint.path);
    Bun.connect({
      ...bunAddress(endpoint),
      allowHalfOpen: true,
      socket: dialHandlers,
      data: new Dialing(to, tag, unix),
    });
  },
};
