/**
 * The floor Deno allows: the smallest round-robin TCP proxy over
 * `Deno.listen`/`Deno.connect`, one read/write loop per direction with a
 * reused 16 KiB buffer and TCP_NODELAY on (as mini-balancer and HAProxy
 * have). No config, logs, health or timeouts. The benchmark runs it as the
 * `deno-minimal` reference beside `bun-minimal` (bench/minimal_proxy.ts).
 *
 * Usage: deno run --allow-net bench/minimal_proxy_deno.ts PORT BACKEND_PORT...
 *
 * @module
 */
const [port, ...backends] = Deno.args.map(Number);
let next = 0;

async function pump(from: Deno.TcpConn, to: Deno.TcpConn): Promise<void> {
  const buffer = new Uint8Array(16 * 1024);
  try {
    for (;;) {
      const n = await from.read(buffer);
      if (n === null) break;
      for (let offset = 0; offset < n;) offset += await to.write(buffer.subarray(offset, n));
    }
    await to.closeWrite();
  } catch {
    // A reset or a closed peer ends this direction.
  }
}

async function serve(client: Deno.TcpConn): Promise<void> {
  client.setNoDelay(true);
  try {
    const server = await Deno.connect({
      hostname: "127.0.0.1",
      port: backends[next++ % backends.length]!,
    });
    server.setNoDelay(true);
    await Promise.all([pump(client, server), pump(server, client)]);
    server.close();
  } catch {
    // Refused: close the client.
  }
  client.close();
}

for await (const conn of Deno.listen({ hostname: "127.0.0.1", port: port! })) serve(conn);
