/**
 * Binding a `net.Server` synchronously, as the contract's `listen` asks,
 * though Node reports a bind failure (and binds a host) only on the next
 * tick; and what it bound.
 *
 * @module
 */
import { subscribe } from "node:diagnostics_channel";
import net from "node:net";
import type { Endpoint } from "../types.ts";

/** Node's listen backlog: 511, which the kernel rounds up to 512. */
const BACKLOG = 511;

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
export function bind(server: net.Server, endpoint: Endpoint): void {
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
export function boundAddress(server: net.Server): Endpoint {
  const { address, port } = server.address() as net.AddressInfo;
  return { hostname: address, port };
}
