/**
 * The admin server's HTTP on Bun: `Bun.serve`, stopped and started again
 * while the process is out of file descriptors (see ../_accept_pause.ts).
 *
 * @module
 */
import { AcceptPause, describeAddress, watchDescriptors } from "../_accept_pause.ts";
import type { HttpServeOptions, HttpServer } from "../types.ts";
import { HTTP_REQUEST_TIMEOUT_MS } from "../types.ts";
import type { BunGlobal, BunHttpServer } from "./api.ts";

declare const Bun: BunGlobal;

/** Serves HTTP with `Bun.serve`: the Bun adapter's `Net.serveHttp`. */
export function bunServeHttp(options: HttpServeOptions): HttpServer {
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
}
