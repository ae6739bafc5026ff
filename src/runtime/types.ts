/**
 * The tiny socket abstraction the proxy is written against. Each runtime
 * adapter (`bun/`, `deno/`, `node/`) implements {@linkcode Net} and nothing else;
 * no other file touches the runtime's sockets.
 *
 * @module
 */

/**
 * A TCP endpoint (a host name or IP literal, IPv6 without brackets, and a
 * port), or a Unix stream socket when {@linkcode Endpoint.path} is set.
 *
 * @example
 * ```ts
 * import { type Endpoint, formatAddress } from "mini-balancer";
 *
 * const { port }: Endpoint = balancer.addresses[0]!; // the port bound for "127.0.0.1:0"
 * const backend: Endpoint = { hostname: "127.0.0.1", port: 8080 };
 * console.log(formatAddress(backend), port);
 * ```
 */
export interface Endpoint {
  /** Host name, IPv4 literal or IPv6 literal without brackets; "" for a Unix socket. */
  readonly hostname: string;
  /** TCP port, 0 to 65535 (0 asks the system for a free port when listening); 0 for a Unix socket. */
  readonly port: number;
  /**
   * The file of a Unix stream socket. When set, the endpoint is that socket
   * and `hostname` and `port` are ignored (they are "" and 0).
   */
  readonly path?: string;
}

/**
 * A certificate and its private key, PEM text (not paths: the core reads the files, so a reload re-reads them).
 *
 * @example
 * ```ts
 * import type { TlsCertificate } from "mini-balancer";
 * import { readFileSync } from "node:fs";
 *
 * const certificate: TlsCertificate = {
 *   cert: readFileSync("cert.pem", "utf8"),
 *   key: readFileSync("key.pem", "utf8"),
 *   serverNames: ["example.com"],
 * };
 * ```
 */
export interface TlsCertificate {
  /** The certificate chain, PEM. */
  readonly cert: string;
  /** Its private key, PEM. */
  readonly key: string;
  /**
   * The names it serves ("api.example.com", "*.example.com"); the first
   * certificate of the list is the default for other names and clients
   * without SNI.
   */
  readonly serverNames?: readonly string[];
}

/**
 * How a listener terminates TLS.
 *
 * @example
 * ```ts
 * import type { TlsOptions } from "mini-balancer";
 * import { net } from "mini-balancer/bun";
 *
 * const tls: TlsOptions = { certificates: [{ cert: certPem, key: keyPem }] };
 * const listener = net.listen({ hostname: "127.0.0.1", port: 8443, tls, onConnection: (conn) => conn.end() });
 * ```
 */
export interface TlsOptions {
  /**
   * The certificates to serve, the default first. Every adapter serves
   * exactly one: neither `Bun.listen` nor `Deno.listenTls` can choose a
   * certificate by SNI (Node's `tls.Server` could, but behaves alike), so a
   * longer list is refused at listen (the core's `CertificateRouter` serves
   * several, one listener each).
   */
  readonly certificates: readonly TlsCertificate[];
}

/**
 * Callbacks a {@linkcode Conn} reports to. They run on the event loop, never
 * re-entrantly from a call on the same connection.
 *
 * @example
 * ```ts
 * import type { ConnHandlers } from "mini-balancer";
 *
 * const handlers: ConnHandlers = {
 *   data: (chunk) => conn.write(chunk), // echo
 *   end: () => conn.end(),
 *   drain: () => conn.resume(),
 *   close: (error) => error && console.error(error.message),
 * };
 * conn.setHandlers(handlers);
 * ```
 */
export interface ConnHandlers {
  /**
   * Bytes arrived. The chunk is only valid during the call: an adapter may
   * reuse its memory afterwards, so a handler that keeps it must copy it.
   */
  data(chunk: Uint8Array): void;
  /** The peer ended its write side (TCP FIN): no more data will arrive. */
  end(): void;
  /** Everything written so far has been handed to the operating system. */
  drain(): void;
  /**
   * The connection is fully closed; this is always the last call. `error`
   * is set when it ended abnormally (reset, network error).
   */
  close(error?: Error): void;
}

/**
 * One connection, accepted or opened: TCP, a Unix stream socket, or the
 * plaintext side of a TLS connection the listener terminated (same contract).
 *
 * @example
 * ```ts
 * import type { Conn } from "mini-balancer";
 * import { net } from "mini-balancer/node";
 *
 * const conn: Conn = await net.connect({ hostname: "127.0.0.1", port: 8080 });
 * conn.setHandlers({ data: (chunk) => console.log(chunk.length), end: () => conn.end(), drain() {}, close() {} });
 * conn.write(new TextEncoder().encode("hello"));
 * ```
 */
export interface Conn {
  /**
   * The address this side of the connection is bound to. For a Unix socket,
   * `{ hostname: "", port: 0, path }` with the socket's path.
   */
  readonly localAddress: Endpoint;
  /**
   * The address of the peer. A Unix peer is normally unnamed, so this is the
   * socket's path too, as in {@linkcode Conn.localAddress}.
   */
  readonly remoteAddress: Endpoint;
  /** Bytes accepted by {@linkcode Conn.write} but not yet handed to the system. */
  readonly bufferedAmount: number;
  /**
   * Sets the callbacks. Events that happened before the first call are
   * replayed to them synchronously, in order, so a connection handed over
   * asynchronously loses nothing.
   */
  setHandlers(handlers: ConnHandlers): void;
  /**
   * Writes bytes. The connection always takes the whole chunk (copying what
   * the system does not accept at once), and returns `false` when its buffer
   * is at its high-water mark: the caller should stop producing until
   * {@linkcode ConnHandlers.drain}.
   *
   * Once {@linkcode Conn.end}, {@linkcode Conn.close} or {@linkcode Conn.reset}
   * has been called, or the connection has closed, `write` discards the
   * bytes (none of them reaches the peer) and returns `false`. It never throws.
   */
  write(chunk: Uint8Array): boolean;
  /** Stops reading from the peer; the kernel's window pushes back on it. */
  pause(): void;
  /** Reads again after {@linkcode Conn.pause}. */
  resume(): void;
  /**
   * Half-closes: sends FIN once the bytes already buffered are written;
   * reading goes on. Later writes are discarded. Calling it again does nothing.
   */
  end(): void;
  /**
   * Closes gracefully: writes what is buffered, then closes both directions.
   * Later writes are discarded. Calling it again does nothing.
   */
  close(): void;
  /** Aborts at once: drops buffered bytes and closes (with a reset where the runtime can). */
  reset(): void;
}

/**
 * Options for {@linkcode Net.listen}.
 *
 * @example
 * ```ts
 * import type { ListenOptions } from "mini-balancer";
 * import { net } from "mini-balancer/deno";
 *
 * const options: ListenOptions = {
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   onConnection: (conn) => conn.end(),
 * };
 * const listener = net.listen(options);
 * ```
 */
export interface ListenOptions extends Endpoint {
  /**
   * Called once for each accepted connection. Handlers should be set before
   * it returns; events that come earlier are kept and replayed.
   *
   * On a TLS listener, only once the connection's handshake is done (one
   * that fails or takes longer than {@linkcode ListenOptions.handshakeTimeoutMs}
   * is closed and never reported), with `acceptedAt`: when its TCP
   * connection was accepted, in `performance.now()` time, before the handshake.
   */
  onConnection(conn: Conn, acceptedAt?: number): void;
  /**
   * File permissions of a Unix socket, applied right after bind (`0o660`).
   *
   * @default the process umask's
   */
  readonly mode?: number;
  /** Terminates TLS: the connections handed over carry the plaintext. */
  readonly tls?: TlsOptions;
  /**
   * With `tls`: the longest a client may take from its TCP accept to the end
   * of its handshake; a slower one is closed. Bun and Deno read it at each
   * accept, so that a getter can follow a setting that changes; Node's
   * `tls.Server` takes it once, at listen.
   *
   * @default 10000
   */
  readonly handshakeTimeoutMs?: number;
  /**
   * With `tls`: a client was closed because what it sent is not TLS at all
   * (a plain-text client on a TLS port). Other failed handshakes are closed
   * silently.
   */
  onPlainText?(peer: Endpoint): void;
  /**
   * Sets SO_REUSEPORT (TCP only): several processes bind the same address
   * and the kernel spreads new connections over them (workers). Deno needs
   * `--unstable-net` for it.
   */
  readonly reusePort?: boolean;
}

/**
 * A listening socket.
 *
 * @example
 * ```ts
 * import type { Listener } from "mini-balancer";
 * import { net } from "mini-balancer/bun";
 *
 * const listener: Listener = net.listen({ hostname: "127.0.0.1", port: 0, onConnection: (conn) => conn.end() });
 * console.log(`listening on port ${listener.address.port}`);
 * listener.close();
 * ```
 */
export interface Listener {
  /** The address actually bound (the real port when 0 was asked for; the path for a Unix socket). */
  readonly address: Endpoint;
  /**
   * Stops accepting; connections already accepted are not affected. A Unix
   * socket's file is removed.
   */
  close(): void;
}

/**
 * How long {@linkcode Net.serveHttp}'s server waits for a request's head (and,
 * where the runtime can tell, its body) before closing the connection, so that
 * half-sent requests cannot hold descriptors.
 */
export const HTTP_REQUEST_TIMEOUT_MS = 10_000;

/**
 * Options for {@linkcode Net.serveHttp}.
 *
 * @example
 * ```ts
 * import type { HttpServeOptions } from "mini-balancer";
 * import { net } from "mini-balancer/node";
 *
 * const options: HttpServeOptions = {
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   fetch: (request, peer) => new Response(`hello ${peer.hostname}`),
 * };
 * const server = net.serveHttp?.(options);
 * ```
 */
export interface HttpServeOptions extends Endpoint {
  /**
   * Answers each request (web-standard Request and Response); `peer` is the
   * client's address, for the operator's log lines.
   */
  fetch(request: Request, peer: Endpoint): Response | Promise<Response>;
}

/**
 * A listening HTTP server.
 *
 * @example
 * ```ts
 * import type { HttpServer } from "mini-balancer";
 * import { net } from "mini-balancer/bun";
 *
 * const server: HttpServer | undefined = net.serveHttp?.({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("ok") });
 * console.log(server?.address.port);
 * await server?.close();
 * ```
 */
export interface HttpServer {
  /** The address actually bound. */
  readonly address: Endpoint;
  /** Stops listening and closes its connections. */
  close(): Promise<void>;
}

/**
 * Callbacks a {@linkcode DatagramSocket} reports to, on the event loop.
 *
 * @example
 * ```ts
 * import type { DatagramHandlers } from "mini-balancer";
 *
 * const handlers: DatagramHandlers = {
 *   message: (data, from) => console.log(`${data.length} bytes from ${from.hostname}:${from.port}`),
 *   error: (error) => console.error(error.message),
 * };
 * const socket = await net.bindDatagram?.({ hostname: "127.0.0.1", port: 0, handlers });
 * ```
 */
export interface DatagramHandlers {
  /** A datagram arrived, whole (boundaries kept); `data` is the handler's to keep. */
  message(data: Uint8Array, from: Endpoint): void;
  /**
   * An error the runtime reports on the socket (ICMP port unreachable as
   * `ECONNREFUSED` on a connected socket, where the runtime reports it: Bun
   * and Node do, Deno does not). The socket stays open.
   */
  error?(error: Error): void;
}

/**
 * Options for {@linkcode Net.bindDatagram}.
 *
 * @example
 * ```ts
 * import type { DatagramOptions } from "mini-balancer";
 * import { net } from "mini-balancer/node";
 *
 * const options: DatagramOptions = {
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   handlers: { message: (data, from) => socket?.send(data, from) }, // echo
 * };
 * const socket = await net.bindDatagram?.(options);
 * ```
 */
export interface DatagramOptions {
  /** Where to bind: a host name or IP literal. */
  readonly hostname: string;
  /** The UDP port to bind (0: any free one). */
  readonly port: number;
  /**
   * A connected socket: sends go there, only its datagrams are delivered (a
   * flow's socket to its backend). Deno has no connect(): its adapter sends
   * to this peer and drops datagrams from anyone else.
   */
  readonly connect?: Endpoint;
  /**
   * SO_REUSEPORT (one of several workers): the kernel spreads senders over
   * the sockets sharing the port, keeping each sender on one. Bun sets it;
   * Deno (2.9) and Node before 22.12 cannot, and refuse it at bind (`code`
   * `ENOTSUP`).
   */
  readonly reusePort?: boolean;
  /**
   * The largest datagram accepted, in bytes: a larger one is dropped
   * (never delivered truncated).
   *
   * @default 65507
   */
  readonly maxDatagramBytes?: number;
  /** Where datagrams and errors go. */
  readonly handlers: DatagramHandlers;
}

/**
 * A bound UDP socket.
 *
 * @example
 * ```ts
 * import type { DatagramSocket } from "mini-balancer";
 * import { net } from "mini-balancer/deno";
 *
 * const socket: DatagramSocket | undefined = await net.bindDatagram?.({
 *   hostname: "127.0.0.1", port: 0, connect: { hostname: "127.0.0.1", port: 53 }, handlers: { message() {} },
 * });
 * socket?.send(new Uint8Array([0, 1])); // to the connected peer
 * socket?.close();
 * ```
 */
export interface DatagramSocket {
  /** The bound local address. */
  readonly address: Endpoint;
  /**
   * Sends one datagram: to `to`, or to the connected peer when `to` is
   * omitted. Returns false when the runtime dropped it (full buffer), and
   * after {@linkcode DatagramSocket.close}. Never throws.
   */
  send(data: Uint8Array, to?: Endpoint): boolean;
  /** Closes the socket; no handler is called after. Calling it again does nothing. */
  close(): void;
}

/** The largest UDP payload over IPv4 (65,535 - 20 - 8), the default for `maxDatagramBytes`. */
export const MAX_DATAGRAM_BYTES = 65_507;

/**
 * The operating system's TCP and Unix stream sockets (and TLS on TCP), as one runtime exposes them.
 *
 * @example
 * ```ts
 * import { Balancer, type Net } from "mini-balancer";
 * import { net } from "mini-balancer/node";
 *
 * // The runtime's sockets, with each backend connection logged.
 * const logged: Net = {
 *   ...net,
 *   connect: (endpoint) => (console.log("connect", endpoint.port), net.connect(endpoint)),
 * };
 * const balancer = await Balancer.start(config, { net: logged });
 * ```
 */
export interface Net {
  /** The runtime's name, for logs and tests ("bun", "deno", "node"). */
  readonly runtime: string;
  /**
   * Whether closing a TLS listener's connection whose handshake is not done
   * closes its socket. Deno 2.9's does not: the TlsConn waits to finish the
   * handshake, for as long as the peer stays, so a silent client would keep
   * its socket; the core then terminates TLS behind its loopback router,
   * where the client's socket is plain TCP and closes at once.
   *
   * @default true
   */
  readonly closesUnfinishedTls?: boolean;
  /**
   * Binds and listens, on TCP or on a Unix socket (`path`), terminating TLS
   * when `tls` is set. A Unix socket's path must not exist: see
   * `prepareUnixSocket` for a file left behind by a dead process.
   *
   * @throws {Error} when the address cannot be bound; `code` is `EADDRINUSE`
   * when the port is taken or the path exists.
   * @throws {Error} when the TLS certificate or key cannot be used: the
   * message says why ("the certificate and key do not match", "cannot parse
   * the certificate: …"), `cause` holds the runtime's error.
   */
  listen(options: ListenOptions): Listener;
  /**
   * Opens a connection: TCP (TCP_NODELAY on), or a Unix socket when
   * `endpoint.path` is set.
   *
   * @throws {Error} when the connection fails; `code` names the reason
   * (`ECONNREFUSED`, `ENOTFOUND`, `ENOENT` for a Unix path that does not exist, …).
   */
  connect(endpoint: Endpoint): Promise<Conn>;
  /**
   * Opens a connection as {@linkcode Net.connect} does, and reports the
   * outcome to `to` rather than through a promise: `to.dialed(conn, tag)`
   * or `to.dialFailed(error, tag)`, exactly one of them, never before
   * `dial` returns. `tag` is passed back untouched (a session's attempt).
   * Optional: a runtime whose connect is a promise anyway leaves it out,
   * and {@linkcode dial} falls back to `connect`.
   */
  dial?(endpoint: Endpoint, to: Dialer, tag: number): void;
  /**
   * Opens a TCP connection and speaks TLS over it as a client (health
   * probes with `health.tls`); resolves once the handshake is done, with a
   * connection carrying the plaintext. `serverName` is sent as SNI (and is
   * the name the certificate must hold when verifying); the certificate is
   * checked against the system's roots only when `verify` is true. Aborting
   * `signal` before the handshake is done closes the socket and rejects:
   * the caller bounds a handshake that never ends. Optional: a config that
   * needs it on a runtime without it is refused at start.
   *
   * @throws {Error} when the connection or the handshake fails; `code`
   * names the reason (`ECONNREFUSED`, `DEPTH_ZERO_SELF_SIGNED_CERT`, …).
   */
  connectTls?(endpoint: Endpoint, options: TlsConnectOptions): Promise<Conn>;
  /**
   * Serves HTTP with the runtime's own server (the admin listener), closing
   * connections whose request does not arrive within
   * {@linkcode HTTP_REQUEST_TIMEOUT_MS}. Optional,
   * as the members a runtime may lack are: a config that needs it on a
   * runtime without it is refused at start.
   *
   * @throws {Error} when the address cannot be bound (`code` as for listen)
   */
  serveHttp?(options: HttpServeOptions): HttpServer;
  /**
   * The runtime's HTTP client (web-standard fetch): the supervisor's admin
   * listener asks its workers' through it.
   */
  fetch?(input: string, init?: RequestInit): Promise<Response>;
  /**
   * Binds a UDP socket, connected to `options.connect` when set. Optional,
   * as the members a runtime may lack are. Deno needs `--unstable-net`.
   *
   * @throws {Error} when the address cannot be bound; `code` is
   * `EADDRINUSE` when the port is taken, `ENOTSUP` for a `reusePort` the
   * runtime cannot set.
   */
  bindDatagram?(options: DatagramOptions): Promise<DatagramSocket>;
  /**
   * Whether {@linkcode Net.bindDatagram} can set `reusePort`, so that
   * workers share a UDP port: Bun can, Deno (2.9) and Node 20 cannot.
   *
   * @default false
   */
  readonly datagramReusePort?: boolean;
  /**
   * Sends one datagram to a Unix datagram socket: systemd's notify socket
   * (sd_notify(3)), a path or an abstract `@name`. Optional, as the members
   * a runtime may lack are: Node 20 has neither Unix datagram sockets nor
   * FFI, so `NOTIFY_SOCKET` is ignored there with one WARN line. Deno needs
   * `--unstable-net` and write access to a path.
   *
   * @throws {Error} (rejects) when the socket cannot be reached: no such
   * path, nobody bound to it, or the runtime refused (a permission).
   */
  notify?(socket: string, message: string): Promise<void>;
}

/**
 * Options for {@linkcode Net.connectTls}.
 *
 * @example
 * ```ts
 * import type { TlsConnectOptions } from "mini-balancer";
 * import { net } from "mini-balancer/bun";
 *
 * const options: TlsConnectOptions = { serverName: "example.com", verify: true, signal: AbortSignal.timeout(5000) };
 * const conn = await net.connectTls?.({ hostname: "example.com", port: 443 }, options);
 * ```
 */
export interface TlsConnectOptions {
  /** The SNI name, and the name a verified certificate must hold; none for an IP address. */
  serverName?: string;
  /** Whether the certificate is verified (chain and name); false accepts any. */
  verify: boolean;
  /** Aborting it before the handshake is done closes the socket and rejects. */
  signal?: AbortSignal;
}

/**
 * What {@linkcode Net.dial} reports to.
 *
 * @example
 * ```ts
 * import type { Conn, Dialer } from "mini-balancer";
 * import { net } from "mini-balancer/node";
 *
 * const dialer: Dialer = {
 *   dialed: (conn: Conn, tag) => console.log(`attempt ${tag} connected`, conn.remoteAddress),
 *   dialFailed: (error, tag) => console.error(`attempt ${tag} failed`, error),
 * };
 * net.dial?.({ hostname: "127.0.0.1", port: 8080 }, dialer, 1); // optional: connect() otherwise
 * ```
 */
export interface Dialer {
  /** The connection is open. */
  dialed(conn: Conn, tag: number): void;
  /** It could not be opened; `code` names the reason, as for `connect`. */
  dialFailed(error: unknown, tag: number): void;
}

/**
 * Opens a connection through `net.dial`, or through `net.connect` where the
 * runtime has no `dial`, and reports to `to`.
 */
export function dial(net: Net, endpoint: Endpoint, to: Dialer, tag: number): void {
  if (net.dial !== undefined) return net.dial(endpoint, to, tag);
  net.connect(endpoint).then(
    (conn) => to.dialed(conn, tag),
    (error) => to.dialFailed(error, tag),
  );
}

/** A process started by {@linkcode SpawnProcess}. */
export interface ChildProcessHandle {
  /** Its process id. */
  readonly pid: number;
  /** Resolves once it has exited: its exit code, or the signal that ended it. */
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  /** Sends it a signal; does nothing once it has exited. */
  kill(signal: "SIGTERM" | "SIGHUP" | "SIGKILL"): void;
  /** Writes a line to its standard input (the supervisor's control line). */
  send(line: string): void;
  /**
   * Calls `line` for each line it writes on its standard output (a worker's
   * reports to its supervisor), from now on.
   */
  onLine(line: (text: string) => void): void;
}

/**
 * Starts a process (a supervisor's worker): its standard output is a pipe
 * read line by line (see {@linkcode ChildProcessHandle.onLine}), its errors
 * go to ours; it runs in a process group of its own, so that a terminal's Ctrl-C
 * reaches the supervisor alone (which passes one signal on); and its
 * standard input is a pipe that closes when we exit, however we exit.
 *
 * @throws {Error} when it cannot be started
 */
export type SpawnProcess = (command: readonly string[]) => ChildProcessHandle;
