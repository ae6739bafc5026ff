/**
 * The admin server's HTTP on Node: `node:http`, its requests and responses
 * turned into web-standard ones, stopped and started again while the
 * process is out of file descriptors (see ../_accept_pause.ts).
 *
 * @module
 */
import { Buffer } from "node:buffer";
import http from "node:http";
import {
  AcceptPause,
  describeAddress,
  isOutOfDescriptors,
  watchDescriptors,
} from "../_accept_pause.ts";
import type { HttpServeOptions, HttpServer } from "../types.ts";
import { HTTP_REQUEST_TIMEOUT_MS } from "../types.ts";
import { bind, boundAddress } from "./bind.ts";

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

/** Serves HTTP with `node:http`: the Node adapter's `Net.serveHttp`. */
export function nodeServeHttp(options: HttpServeOptions): HttpServer {
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
}
