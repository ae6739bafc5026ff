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
import { applyMode, onlyCertificate, tlsListenError, unixListenEndpoint } from "../_listen.ts";
import { unixEndpoint } from "../_endpoint.ts";
import { AcceptPause, describeAddress, isOutOfDescriptors } from "../_accept_pause.ts";
import { serveHttp1 } from "../_http1.ts";
import { nodeConnectTls } from "../_tls_connect.ts";
import type {
  Conn,
  Dialer,
  Endpoint,
  HttpServeOptions,
  HttpServer,
  Listener,
  ListenOptions,
  Net,
} from "../types.ts";
import { DenoConn, endpointOf, withCode } from "./conn.ts";
import { handshake } from "./tls.ts";
import { denoBindDatagram } from "./udp.ts";
import { denoNotify } from "./notify.ts";

export { denoSpawn, denoWorkersUnavailable } from "./workers.ts";

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
  // node:tls, since Deno.connectTls cannot skip verification (see ../_tls_connect.ts).
  connectTls: nodeConnectTls,
  bindDatagram: denoBindDatagram,
  notify: denoNotify,
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
