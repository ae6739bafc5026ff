/**
 * The socket handlers of a Bun TLS listener: a client is reported once its
 * handshake is done, never a silent or a plain-text one.
 *
 * @module
 */
import type { AcceptPause } from "../_accept_pause.ts";
import { DEFAULT_HANDSHAKE_TIMEOUT_MS, isPlainText } from "../_listen.ts";
import { aborted } from "../_tls_connect.ts";
import type { Conn, Endpoint, ListenOptions, TlsConnectOptions } from "../types.ts";
import { BunConn, type BunSocket, type BunSocketHandler, localCause } from "./conn.ts";
import type { BunGlobal } from "./api.ts";

declare const Bun: BunGlobal;

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
export function tlsHandlers(options: ListenOptions, pause: AcceptPause): BunSocketHandler {
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

/**
 * `Net.connectTls` over `Bun.connect`: Bun resolves its promise at
 * the TCP connect, before any TLS byte, and calls `handshake` once the
 * handshake is over (`success` false when `rejectUnauthorized` refused the
 * certificate, its reason as `authorizationError`): the connection is
 * handed over only then. Bun 1.x also reports `success` false, with
 * `rejectUnauthorized` false and the connection working, when the
 * certificate does not verify (a self-signed one, without a `serverName`):
 * unverified, only a failure that is no verification error fails (a
 * plain-text peer: `EPROTO`). Aborting `signal` first terminates the socket.
 */
export function bunConnectTls(endpoint: Endpoint, options: TlsConnectOptions): Promise<Conn> {
  const { signal } = options;
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(aborted());
    let settled = false;
    let socket: BunSocket | undefined;
    const settle = (error: Error | undefined, conn?: BunConn) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener("abort", abort);
      if (error === undefined) return resolve(conn!);
      socket?.terminate();
      reject(error);
    };
    const abort = () => settle(aborted());
    signal?.addEventListener("abort", abort, { once: true });
    Bun.connect({
      hostname: endpoint.hostname,
      port: endpoint.port,
      allowHalfOpen: true,
      tls: { rejectUnauthorized: options.verify, serverName: options.serverName },
      socket: {
        ...BunConn.handlers,
        open(opened) {
          socket = opened;
          opened.data = new BunConn(opened);
          if (settled) opened.terminate();
        },
        connectError(_socket, error) {
          settle(localCause(error));
        },
        handshake(opened, success, error) {
          const unverified = !options.verify && error !== null && isVerifyError(error);
          if (success || unverified) return settle(undefined, opened.data);
          settle(error ?? new Error("TLS handshake failed"));
        },
        close(closed, error) {
          settle(error ?? new Error("connection closed during the TLS handshake"));
          BunConn.handlers.close(closed, error);
        },
      },
    }).catch((error) => settle(error instanceof Error ? localCause(error) : error));
  });
}

/** The codes of certificate verification errors (OpenSSL's X509 ones, Node's name check). */
const VERIFY_ERROR = /CERT|SELF_SIGNED|ISSUER|LEAF_SIGNATURE|HOSTNAME|ALTNAME/;

/** Whether a failed handshake's reason is the certificate's verification only. */
function isVerifyError(error: Error): boolean {
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" && VERIFY_ERROR.test(code);
}
