/**
 * {@linkcode Net.notify} on Deno: `Deno.listenDatagram` with the
 * `unixpacket` transport (a Unix datagram socket, despite the name; needs
 * `--unstable-net`), bound to an abstract name of its own so that it leaves
 * no file and needs no write access but to the target's path.
 *
 * @module
 */

/** An address of `Deno.listenDatagram`'s `unixpacket` transport. */
interface UnixPacketAddr {
  transport: "unixpacket";
  path: string;
}
/** The socket `Deno.listenDatagram` returns, as far as it is used here. */
interface UnixPacketConn {
  send(data: Uint8Array, to: UnixPacketAddr): Promise<number>;
  close(): void;
}
/** `Deno.listenDatagram`, an unstable API the stable types leave out. */
type ListenDatagram = (options: UnixPacketAddr) => UnixPacketConn;

let sequence = 0;

/** Sends `message` to the Unix datagram socket `socket` (a path or `@name`). */
export async function denoNotify(socket: string, message: string): Promise<void> {
  const listenDatagram = (Deno as unknown as { listenDatagram?: ListenDatagram }).listenDatagram;
  if (listenDatagram === undefined) {
    throw new Error("sd_notify on Deno needs --unstable-net (Deno.listenDatagram is missing)");
  }
  const path = socket.startsWith("@") ? `\0${socket.slice(1)}` : socket;
  const conn = listenDatagram({
    transport: "unixpacket",
    path: `\0mini-balancer-notify-${Deno.pid}-${sequence++}`,
  });
  try {
    await conn.send(new TextEncoder().encode(message), { transport: "unixpacket", path });
  } finally {
    conn.close();
  }
}
