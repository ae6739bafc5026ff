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
import { Buffer } from "node:buffer";
import { subscribe } from "node:diagnostics_channel";
import http from "node:http";
import net from "node:net";
import tls from "node:tls";
import { SocketConn } from "./_conn.ts";
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
  isOutOfDescriptors,
  watchDescriptors,
} from "./_accept_pause.ts";
import { CLOSE, END, HIGH_WATER } from "./_outbox.ts";
import type {
  Conn,
  Endpoint,
  HttpServeOptions,
  HttpServer,
  Listener,
  ListenOptions,
  Net,
} from "./types.ts";
import { HTTP_REQUEST_TIMEOUT_MS } from "./types.ts";

/** Node's listen backlog: 511, which the kernel rounds up to 512. */
const BACKLOG = 511;

class NodeConn extends SocketConn<net.Socket> implements Conn {
  /** Bytes of the write Node holds now (the head of the outbox), 0 when none. */
  #writing = 0;
  #wantDrain = false;
  /** reset() was called or the socket closed: nothing more to write or report but `close`. */
  #dead = false;
  #error: Error | undefined;
  /** Plain TCP, where a reset can be sent (not Unix, not TLS). */
  #canReset: boolean;

  constructor(socket: net.Socket, unix: Endpoint | undefined, canReset: boolean) {
    super(socket, unix);
    this.#canReset = canReset;
    socket.on("data", (chunk: Uint8Array) => this.handlers.data(chunk));
    socket.on("end", () => this.handlers.end());
    socket.on("error", (error: Error) => {
      if (!this.#dead) this.#error ??= error;
    });
    socket.on("close", () => {
      this.#dead = true;
      this.out.clear();
      // Node emits `close` on a later tick than the call that destroyed the
      // socket: handlers never run re-entrantly.
      this.handlers.close(this.#error);
    });
  }

  write(chunk: Uint8Array): boolean {
    const out = this.out;
    if (!out.accepting) return false;
    // Node would keep `chunk` itself, whose memory the caller may reuse: the outbox copies.
    out.push(chunk);
    if (this.#writing === 0) this.#flush();
    if (out.bytes < HIGH_WATER) return true;
    this.#wantDrain = true;
    return false;
  }

  pause(): void {
    this.socket.pause();
  }
  resume(): void {
    this.socket.resume();
  }

  end(): void {
    if (this.out.end() && this.#writing === 0) this.#flush();
  }
  close(): void {
    if (this.out.close() && this.#writing === 0) this.#flush();
  }
  reset(): void {
    if (this.#dead) return;
    this.#dead = true;
    this.out.clear();
    if (this.#canReset) this.socket.resetAndDestroy();
    else this.socket.destroy();
  }

  /** Hands the outbox's head to Node, or does what is due once it is empty. */
  #flush(): void {
    const out = this.out;
    const head = out.head();
    if (head !== undefined) {
      this.#writing = head.length;
      this.socket.write(head, this.#written);
      return;
    }
    const due = out.takeDue();
    if (due === END) this.socket.end();
    else if (due === CLOSE) return void this.socket.end(this.#destroy);
    if (this.#wantDrain) {
      this.#wantDrain = false;
      this.handlers.drain();
    }
  }

  /** Node is done with the head: one callback per connection, not one per write. */
  #written = (error?: Error | null): void => {
    const n = this.#writing;
    this.#writing = 0;
    // A failed write destroys the socket: its `error` and `close` follow.
    if (this.#dead || error) return;
    this.out.written(n);
    this.#flush();
  };

  /** Closes both directions once the FIN of close() is out. */
  #destroy = (): void => void this.socket.destroy();
}

/**
 * The error Node is about to emit for a listen that failed, published on its
 * `net.server.listen` tracing channel (Node 20.16 and later) before
 * `listen` returns, where the `error` event comes a tick later.
 */
let listenFailure: ListenFailure | undefined;
subscribe("tracing:net.server.listen:error", (message) => {
  listenFailure = message as ListenFailure;
});

/** What Node's `net.server.listen` tracing channel publishes for a failed listen. */
interface ListenFailure {
  readonly server: unknown;
  readonly error: Error;
}

/** Returns the failure published since the last call, and forgets it. */
function takeListenFailure(): ListenFailure | undefined {
  const failure = listenFailure;
  listenFailure = undefined;
  return failure;
}

/**
 * Binds and listens at once, or throws what went wrong, as the contract's
 * synchronous `listen` asks. Node binds a Unix path inside `listen`, but a
 * host only after a `dns.lookup` on the next tick; `_listen2` (the step
 * after the lookup, which Node keeps under that name for code that wraps
 * it: see `listenInCluster` in lib/net.js) binds an IP literal at once. Its
 * failure reaches the `error` event a tick later, but the tracing channel
 * above gets it synchronously.
 *
 * @throws {Error} Node's own error (`code` `EADDRINUSE`, …); on Node before
 * 20.16, which lacks the channel, one without a code
 */
function bind(server: net.Server, endpoint: Endpoint): void {
  const { hostname, port, path } = endpoint;
  takeListenFailure();
  if (path !== undefined) {
    server.listen({ path, backlog: BACKLOG });
  } else {
    // Node resolves host names only asynchronously; "localhost" is loopback (RFC 6761).
    const address = hostname === "localhost" ? "127.0.0.1" : hostname;
    const family = net.isIP(address);
    if (family === 0) {
      throw new Error(
        `Cannot listen on host name "${hostname}" on node: its listen resolves names asynchronously: give an IP address`,
      );
    }
    (server as unknown as NodeServerInternals)._listen2(address, port, family, BACKLOG);
  }
  if (server.listening) return;
  const failure = takeListenFailure();
  // The same error comes again as an `error` event next tick: nobody needs it then.
  server.on("error", () => {});
  if (failure !== undefined && failure.server === server) throw failure.error;
  throw new Error(`Cannot listen on ${path ?? `${hostname}:${port}`}`);
}

/** The step of `net.Server.listen` that binds an address already resolved. */
interface NodeServerInternals {
  _listen2(address: string, port: number, family: number, backlog: number): void;
}

/** What Node's `server.address()` gives for a TCP listener, as an endpoint. */
function boundAddress(server: net.Server): Endpoint {
  const { address, port } = server.address() as net.AddressInfo;
  return { hostname: address, port };
}

/** Turns a Node request into a web-standard one, its body read whole (the admin API's are small). */
async function toRequest(request: http.IncomingMessage): Promise<Request> {
  const headers = new Headers();
  const raw = request.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
  const method = request.method ?? "GET";
  let body: Buffer<ArrayBuffer> | undefined;
  if (method !== "GET" && method !== "HEAD") {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    body = Buffer.concat(chunks);
  }
  const url = new URL(request.url ?? "/", `http://${request.headers.host ?? "localhost"}`);
  return new Request(url, { method, headers, body });
}

/** Writes a web-standard response to Node's. */
async function sendResponse(response: Response, out: http.ServerResponse): Promise<void> {
  out.statusCode = response.status;
  for (const [name, value] of response.headers) {
    if (name !== "set-cookie") out.setHeader(name, value);
  }
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) out.setHeader("set-cookie", cookies);
  if (response.body === null) return void out.end();
  for await (const chunk of response.body) out.write(chunk);
  out.end();
}

/**
 * Hands a TLS listener's clients over once their handshake is done
 * (`secureConnection`): a failed one never reaches the core and is
 * destroyed, as is one that has not finished within the server's
 * `handshakeTimeout`. Each is reported with when its TCP connection was
 * accepted, stamped on the raw socket at `connection` (before Node wraps
 * it), which the TLSSocket names as `_parent` (as it has since Node 0.11;
 * were it gone, the stamp would be missing, nothing else).
 */
function watchHandshakes(server: tls.Server, options: ListenOptions): void {
  const acceptedAt = new WeakMap<net.Socket, number>();
  server.prependListener("connection", (raw: net.Socket) => {
    acceptedAt.set(raw, performance.now());
  });
  server.on("secureConnection", (socket: tls.TLSSocket) => {
    const raw = (socket as unknown as { _parent?: net.Socket })._parent;
    const at = raw === undefined ? undefined : acceptedAt.get(raw);
    options.onConnection(new NodeConn(socket, undefined, false), at);
  });
  // With a listener here, Node leaves the socket of a handshake that timed
  // out open (checked: Node 20): destroy every failed one.
  server.on("tlsClientError", (error: Error, socket: tls.TLSSocket) => {
    if (options.onPlainText !== undefined && isPlainText(error)) {
      const { remoteAddress, remotePort } = socket;
      options.onPlainText({ hostname: remoteAddress ?? "", port: remotePort ?? 0 });
    }
    socket.destroy();
  });
}

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
  serveHttp(options: HttpServeOptions): HttpServer {
    const pause = new AcceptPause(() => describeAddress(address));
    const server = http.createServer({
      headersTimeout: HTTP_REQUEST_TIMEOUT_MS,
      requestTimeout: HTTP_REQUEST_TIMEOUT_MS,
      // How often Node checks those two (every 30 s by default).
      connectionsCheckingInterval: 1000,
    }, (incoming, out) => {
      if (pause.failing) pause.accepted();
      const peer = {
        hostname: incoming.socket.remoteAddress ?? "",
        port: incoming.socket.remotePort ?? 0,
      };
      toRequest(incoming).then((request) => options.fetch(request, peer)).then(
        (response) => sendResponse(response, out),
        () => {
          out.statusCode = 500;
          out.end();
        },
      ).catch(() => out.destroy());
    });
    bind(server, options);
    const address = boundAddress(server);
    const watch = watchDescriptors({
      pause,
      stop: () => void server.close(),
      start: () => bind(server, address),
    });
    server.on("error", (error) => {
      if (isOutOfDescriptors(error)) watch.outOfDescriptors();
    });
    return {
      address,
      close: () =>
        new Promise<void>((resolve) => {
          watch.close();
          if (server.listening) server.close(() => resolve());
          else resolve();
          server.closeAllConnections();
        }),
    };
  },
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
