/**
 * {@linkcode Net} over `node:net` (and `node:tls` for TLS listeners,
 * `node:http` for the admin server), for Node 20 and later.
 *
 * Node 20 behaviour this relies on (checked with small experiments):
 * - with `allowHalfOpen: true`, a peer's FIN emits `end` and the socket stays
 *   writable; `end()` sends FIN (close_notify and FIN over TLS) once what was
 *   written is out, and keeps reading; once both directions are done, Node
 *   destroys the socket and emits `close`, always on a later tick;
 * - `write(chunk)` keeps a reference to `chunk` until its callback runs, so
 *   the adapter writes only copies of its own (the shared {@linkcode Outbox}),
 *   one at a time, and frees a block only once its callback has run;
 * - `pause()` stops `data` events; Node stops reading from the kernel once
 *   its own small read buffer is full, so the peer's window pushes back;
 * - `resetAndDestroy()` sends a TCP reset, on plain TCP sockets only: a Unix
 *   or TLS socket throws `ERR_INVALID_HANDLE_TYPE`, so those are destroyed;
 * - `server.listen()` reports a bind failure on the next tick, and with a
 *   host it binds on the next tick too (after a `dns.lookup`, even of an IP
 *   literal); see {@linkcode bind} for how `listen` stays synchronous.
 *
 * @module
 */
import net from "node:net";
import tls from "node:tls";
import {
  applyMode,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  onlyCertificate,
  tlsListenError,
  unixListenEndpoint,
} from "../_listen.ts";
import { unixEndpoint } from "../_endpoint.ts";
import {
  AcceptPause,
  describeAddress,
  isOutOfDescriptors,
  watchDescriptors,
} from "../_accept_pause.ts";
import type { Conn, Endpoint, Listener, ListenOptions, Net } from "../types.ts";
import { bind, boundAddress } from "./bind.ts";
import { nodeConnectTls } from "../_tls_connect.ts";
import { NodeConn } from "./conn.ts";
import { nodeServeHttp } from "./http.ts";
import { nodeBindDatagram } from "./udp.ts";
import { watchHandshakes } from "./tls.ts";

/** The Node implementation of {@linkcode Net}. */
export const nodeNet: Net = {
  runtime: "node",
  listen(options: ListenOptions): Listener {
    const { onConnection, tls: tlsOptions } = options;
    const unix = unixListenEndpoint(options);
    const serverOptions = { allowHalfOpen: true, noDelay: true };
    let server: net.Server;
    const pause = new AcceptPause(() => describeAddress(address));
    if (tlsOptions === undefined) {
      server = net.createServer(serverOptions, (socket) => {
        if (pause.failing) pause.accepted();
        onConnection(new NodeConn(socket, unix, unix === undefined));
      });
    } else {
      const { cert, key } = onlyCertificate(tlsOptions, "node");
      try {
        // Node reads its handshake deadline once, here: a reload's new
        // header_timeout reaches a Node TLS listener when it is bound again.
        const handshakeTimeout = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
        server = tls.createServer({ ...serverOptions, cert, key, handshakeTimeout });
      } catch (error) {
        throw tlsListenError(error);
      }
      watchHandshakes(server as tls.Server, options);
    }
    bind(server, options);
    const address = unix ?? boundAddress(server);
    if (tlsOptions !== undefined) {
      server.on("connection", () => {
        if (pause.failing) pause.accepted();
      });
    }
    const stop = () => void (server.listening && server.close());
    // libuv accepts and closes what waits when out of descriptors and says
    // nothing: see _accept_pause.ts. A closed net.Server listens again.
    const watch = watchDescriptors({
      pause,
      stop,
      start() {
        bind(server, address);
        if (unix !== undefined) applyMode(unix.path, options.mode, stop);
      },
    });
    // Once libuv has lost its spare descriptor, a failed accept comes as an
    // `error` event, which would end the process unheard.
    server.on("error", (error) => {
      if (isOutOfDescriptors(error)) watch.outOfDescriptors();
    });
    const close = () => {
      watch.close();
      stop();
    };
    // Node's close() removes a Unix socket's file itself (libuv unlinks it).
    if (unix !== undefined) applyMode(unix.path, options.mode, close);
    return { address, close };
  },
  fetch: (input, init) => fetch(input, init),
  serveHttp: nodeServeHttp,
  connectTls: nodeConnectTls,
  bindDatagram: nodeBindDatagram,
  connect(endpoint: Endpoint): Promise<Conn> {
    const { hostname, port, path } = endpoint;
    const socket = path === undefined
      ? net.connect({ host: hostname, port, allowHalfOpen: true, noDelay: true })
      : net.connect({ path, allowHalfOpen: true });
    return new Promise((resolve, reject) => {
      const failed = (error: Error) => reject(error);
      socket.once("error", failed);
      socket.once("connect", () => {
        socket.off("error", failed);
        const unix = unixEndpoint(path);
        resolve(new NodeConn(socket, unix, unix === undefined));
      });
    });
  },
};
