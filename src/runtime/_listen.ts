/**
 * What the adapters do alike around TLS and Unix listeners: take the one
 * certificate a runtime can serve, turn the runtime's certificate errors
 * into one message, refuse TLS on a Unix socket, and set a Unix socket's
 * file mode.
 *
 * @module
 */
import { chmodSync } from "node:fs";
import { type UnixEndpoint, unixEndpoint } from "./_endpoint.ts";
import type { ListenOptions, TlsCertificate, TlsOptions } from "./types.ts";

/**
 * Returns the only certificate of `tls`: neither `Bun.listen` nor
 * `Deno.listenTls` chooses among several by SNI (only `Bun.serve`, an HTTP
 * server, takes a list). Node's `tls.Server` could (`SNICallback`), but
 * serves one too, so that every runtime behaves alike behind the core's
 * `CertificateRouter`.
 *
 * @param tls the listener's TLS options
 * @param runtime the runtime's name, for the message
 * @throws {Error} when there is not exactly one certificate
 */
export function onlyCertificate(tls: TlsOptions, runtime: string): TlsCertificate {
  const [first, ...others] = tls.certificates;
  if (first === undefined) throw new TypeError("Cannot listen with TLS: no certificate given");
  if (others.length > 0) {
    throw new Error(
      `Cannot listen with TLS: several certificates chosen by SNI are not available on ${runtime}: its TLS listener serves one certificate`,
    );
  }
  // The runtimes say only "no start line" for either text: say which one it is.
  if (!/-----BEGIN CERTIFICATE-----/.test(first.cert)) {
    throw new SyntaxError(
      "Cannot listen with TLS: cannot parse the certificate: no PEM CERTIFICATE block",
    );
  }
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(first.key)) {
    throw new SyntaxError("Cannot listen with TLS: cannot parse the key: no PEM PRIVATE KEY block");
  }
  return first;
}

/**
 * Turns what a runtime throws for an unusable certificate into one message.
 * Bun (BoringSSL) says `error:0b000074:X.509 certificate
 * routines:OPENSSL_internal:KEY_VALUES_MISMATCH`, Deno (rustls) `keys may not
 * be consistent: KeyMismatch`, Node (OpenSSL 3) `error:05800074:x509
 * certificate routines::key values mismatch`; the original error is kept as
 * `cause`.
 *
 * @param error what the runtime's listen threw
 * @returns the error to throw: `error` itself when it is not about TLS
 */
export function tlsListenError(error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  if (/KEY_VALUES_MISMATCH|KeyMismatch|key values mismatch/.test(error.message)) {
    return new Error("Cannot listen with TLS: the certificate and key do not match", {
      cause: error,
    });
  }
  if (
    /PEM|certificate|key/i.test(error.message) &&
    !("code" in error && /^E[A-Z]+$/.test(String(error.code)))
  ) {
    return new Error(`Cannot listen with TLS: cannot use the certificate: ${error.message}`, {
      cause: error,
    });
  }
  return error;
}

/** How long a TLS client may take to finish its handshake when the listener is not told. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * Whether a failed TLS handshake failed because the client sent no TLS at
 * all (a plain-text client on a TLS port): its first record was not a TLS
 * record. Bun (BoringSSL) says `HTTP_REQUEST` or `WRONG_VERSION_NUMBER`,
 * Node (OpenSSL 3) `http request` or `wrong version number`, Deno (rustls)
 * `received corrupt message of type InvalidContentType`.
 *
 * @param error what the runtime reported for the handshake
 */
export function isPlainText(error: unknown): boolean {
  return error instanceof Error &&
    /HTTP_REQUEST|WRONG_VERSION_NUMBER|http request|wrong version number|InvalidContentType/
      .test(error.message);
}

/**
 * Returns the Unix socket a listener binds, or undefined for TCP. The
 * adapters terminate no TLS on a Unix socket (`Deno.listenTls` has no Unix
 * transport): each refuses it alike, before binding anything.
 *
 * @param options what the listener was asked for
 * @throws {Error} when both `path` and `tls` are set
 */
export function unixListenEndpoint(options: ListenOptions): UnixEndpoint | undefined {
  const unix = unixEndpoint(options.path);
  if (unix !== undefined && options.tls !== undefined) {
    throw new Error("Cannot listen with TLS on a Unix socket");
  }
  return unix;
}

/**
 * Sets a freshly bound Unix socket's permissions, when asked; closes the
 * listener when that fails, so that a failed listen leaves nothing behind.
 *
 * @param path the socket's file
 * @param mode the permissions (`0o660`), or undefined to leave the umask's
 * @param close closes the listener (which removes the file)
 * @throws {Error} what `chmod` threw
 */
export function applyMode(path: string, mode: number | undefined, close: () => void): void {
  if (mode === undefined) return;
  try {
    chmodSync(path, mode);
  } catch (error) {
    close();
    throw error;
  }
}
