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

/**
 * How long a send may wait for room in the receiver's queue: Deno waits
 * for as long as it takes when the receiver stops reading.
 */
const SEND_TIMEOUT_MS = 1_000;

/** Sends `message` to the Unix datagram socket `socket` (a path or `@name`). */
export async function denoNotify(socket: string, message: string): Promise<void> {
  const listenDatagram = (Deno as unknown as { listenDatagram?: ListenDatagram }).listenDatagram;
  if (listenDatagram === undefined) {
    throw new Error("sd_notify on Deno needs --unstable-net (Deno.listenDatagram is missing)");
  }
  const abstract = socket.startsWith("@");
  // Asked, not tried: a send without the permission would prompt on a terminal.
  if (
    !abstract && Deno.permissions.querySync({ name: "write", path: socket }).state !== "granted"
  ) {
    throw new Error(`sd_notify on Deno needs --allow-write=${socket}`);
  }
  const path = abstract ? `\0${socket.slice(1)}` : socket;
  const conn = listenDatagram({
    transport: "unixpacket",
    path: `\0mini-balancer-notify-${Deno.pid}-${sequence++}`,
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`cannot send to "${socket}": its queue is full (nobody reads it)`)),
      SEND_TIMEOUT_MS,
    );
  });
  try {
    const sent = conn.send(new TextEncoder().encode(message), { transport: "unixpacket", path });
    sent.catch(() => {}); // rejected by the close below once expired
    await Promise.race([sent, expired]);
  } finally {
    clearTimeout(timer);
    conn.close();
  }
}
