/**
 * An echo server on mini-balancer's own socket layer: what arrives is sent
 * back, with backpressure, and a client's FIN is answered with ours once the
 * echo is out. Stands in for the original walkthrough's `socat … exec:cat`.
 *
 *     bun examples/echo_server.ts 127.0.0.1:8080 [127.0.0.1:9090 …]
 *     deno run --allow-net examples/echo_server.ts 127.0.0.1:8080
 *
 * @module
 */
import { formatAddress, parseAddress } from "../src/address/address.ts";
import { currentNet } from "../src/runtime/current.ts";
import type { Endpoint, Listener, Net } from "../src/runtime/types.ts";

/**
 * Starts an echo server.
 *
 * @param net the runtime's sockets
 * @param endpoint where to listen (port 0 for a free one)
 * @param onData called with each chunk's size, e.g. to count connections' bytes
 * @returns the listener
 */
export function startEchoServer(
  net: Net,
  endpoint: Endpoint,
  onData?: (size: number) => void,
): Listener {
  return net.listen({
    ...endpoint,
    onConnection(conn) {
      conn.setHandlers({
        data(chunk) {
          onData?.(chunk.length);
          if (!conn.write(chunk)) conn.pause();
        },
        drain: () => conn.resume(),
        end: () => conn.end(),
        close() {},
      });
    },
  });
}

if (import.meta.main) {
  const { argv } = await import("node:process");
  const addresses = argv.slice(2);
  if (addresses.length === 0) addresses.push("127.0.0.1:8080", "127.0.0.1:9090");
  const net = await currentNet();
  for (const address of addresses) {
    const listener = startEchoServer(net, parseAddress(address, { allowPortZero: true }));
    console.log(`echo server listening on ${formatAddress(listener.address)}`);
  }
}
