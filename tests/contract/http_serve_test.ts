/**
 * The admin listener's HTTP server: the runtime's `serveHttp` closes a
 * connection whose request does not arrive within 10 s (issue 17, item 3),
 * and the small HTTP/1.1 server Deno's adapter serves it with (`_http1.ts`)
 * answers what the admin API needs and refuses the rest. Runs under
 * `bun test` and `deno test`, and under Node once bundled
 * (`npm run test:node`).
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { serveHttp1 } from "../../src/runtime/_http1.ts";
import { HTTP_REQUEST_TIMEOUT_MS, type HttpServer } from "../../src/runtime/types.ts";
import { bytes, connect, net, text, within } from "../_helpers/index.ts";

/** Sends raw bytes (optionally half-closing), and resolves with the answer and when it closed. */
async function raw(port: number, request: string, end = true) {
  const client = await connect(port);
  const started = performance.now();
  client.conn.write(bytes(request));
  if (end) client.conn.end();
  // A FIN (then our own close) or a reset: either way the server is done with it.
  await client.ended;
  const ms = performance.now() - started;
  client.conn.close();
  await client.closed;
  return { answer: text(client.received()), ms };
}

const echoRequest = async (request: Request) =>
  new Response(
    `${request.method} ${new URL(request.url).pathname} host=${request.headers.get("host")} ` +
      `body=${await request.text()}`,
    { status: request.method === "DELETE" ? 404 : 200, headers: { "x-test": "yes" } },
  );

describe("the small HTTP/1.1 server (_http1.ts)", () => {
  const servers: HttpServer[] = [];
  after(async () => {
    for (const server of servers) await server.close();
  });
  const start = (timeoutMs = 400) => {
    const server = serveHttp1(
      net,
      { hostname: "127.0.0.1", port: 0, fetch: echoRequest },
      timeoutMs,
    );
    servers.push(server);
    return server.address.port;
  };

  it("answers a fetch, a POST with a body, a HEAD and a 404, each closing its connection", async () => {
    const port = start();
    const response = await fetch(`http://127.0.0.1:${port}/api/status`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("x-test"), "yes");
    assert.equal(await response.text(), `GET /api/status host=127.0.0.1:${port} body=`);
    const posted = await fetch(`http://127.0.0.1:${port}/api/reload`, {
      method: "POST",
      body: "hello",
    });
    assert.equal(await posted.text(), `POST /api/reload host=127.0.0.1:${port} body=hello`);
    const head = await raw(port, "HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert.match(head.answer, /^HTTP\/1\.1 200 \r\n/);
    assert.match(head.answer, /content-length: 20\r\nconnection: close\r\n\r\n$/);
    const missing = await raw(port, "DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert.match(missing.answer, /^HTTP\/1\.1 404 /);
  });

  it("refuses what it does not take: chunked, too large, malformed, a bad Host", async () => {
    const port = start();
    const status = async (request: string) => (await raw(port, request)).answer.slice(0, 12);
    assert.equal(
      await status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
      "HTTP/1.1 411",
    );
    assert.equal(
      await status("POST / HTTP/1.1\r\nContent-Length: 9999999\r\n\r\n"),
      "HTTP/1.1 413",
    );
    assert.equal(
      await status(`GET / HTTP/1.1\r\nX: ${"a".repeat(20_000)}\r\n\r\n`),
      "HTTP/1.1 431",
    );
    assert.equal(await status("GET /\r\n\r\n"), "HTTP/1.1 400");
    assert.equal(await status("GET / HTTP/1.1\r\nbad header\r\n\r\n"), "HTTP/1.1 400");
    assert.equal(await status("GET http://x/ HTTP/1.1\r\n\r\n"), "HTTP/1.1 400");
    assert.equal(await status("GET / HTTP/1.1\r\nHost: a/b@c\r\n\r\n"), "HTTP/1.1 400");
    assert.equal(await status("GET / HTTP/1.1\r\nHost: a\r\n"), "HTTP/1.1 400"); // FIN mid-head
  });

  it("resets a connection whose head or body does not arrive in time", async () => {
    const port = start(400);
    for (
      const request of [
        "GET / HTTP/1.1\r\nHost: a\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc",
      ]
    ) {
      const { answer, ms } = await within(raw(port, request, false), 3_000, "the reset");
      assert.equal(answer, "");
      assert.ok(ms >= 350 && ms < 1_500, `closed after ${Math.round(ms)} ms, not about 400`);
    }
  });
});

describe(`${net.runtime} serveHttp`, () => {
  it("closes a connection whose request head does not arrive within 10 s", async () => {
    const server = net.serveHttp!({ hostname: "127.0.0.1", port: 0, fetch: echoRequest });
    try {
      const { ms } = await within(
        raw(server.address.port, "GET / HTTP/1.1\r\nHost: a\r\n", false),
        20_000,
        "the half-sent request to be closed",
      );
      // Bun's uWS checks its timeouts every 4 s: up to 14 s.
      assert.ok(
        ms >= HTTP_REQUEST_TIMEOUT_MS - 500 && ms < HTTP_REQUEST_TIMEOUT_MS + 5_000,
        `closed after ${Math.round(ms)} ms`,
      );
    } finally {
      await server.close();
    }
  });
});
