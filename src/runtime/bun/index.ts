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
import { unixEndpoint } from "../_endpoint.ts";
import { applyMode, onlyCertificate, tlsListenError, unixListenEndpoint } from "../_listen.ts";
import { AcceptPause, describeAddress, watchDescriptors } from "../_accept_pause.ts";
import type { Conn, Dialer, Endpoint, Listener, ListenOptions, Net } from "../types.ts";
import { bunAddress, type BunGlobal, type BunServer } from "./api.ts";
import {
  BunConn,
  type BunSocketHandler,
  connectHandlers,
  dialHandlers,
  Dialing,
  localCause,
} from "./conn.ts";
import { bunServeHttp } from "./http.ts";
import { bunBindDatagram } from "./udp.ts";
import { bunNotify } from "./notify.ts";
import { bunConnectTls, tlsHandlers } from "./tls.ts";

declare const Bun: BunGlobal;

/** The Bun implementation of {@linkcode Net}. */
export const bunNet: Net = {
  runtime: "bun",
  datagramReusePort: true,
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
  serveHttp: bunServeHttp,
  connectTls: bunConnectTls,
  bindDatagram: bunBindDatagram,
  notify: bunNotify,
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
