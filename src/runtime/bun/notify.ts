/**
 * {@linkcode Net.notify} on Bun, which has no Unix datagram socket
 * (`node:dgram` refuses "unix_dgram", `Bun.connect({ unix })` is a stream):
 * libc's `socket` and `sendto` through `bun:ffi`, loaded at the first
 * message only. One socket per message: systemd hears a few a minute.
 *
 * @module
 */

/** The libc calls used, as `bun:ffi`'s `dlopen` returns them. */
interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  sendto(
    fd: number,
    data: unknown,
    length: number,
    flags: number,
    address: unknown,
    addressLength: number,
  ): number | bigint;
  close(fd: number): number;
  /** Where this thread's `errno` is. */
  __errno_location(): unknown;
}

/** The few `bun:ffi` members used, declared here so that `deno check` covers this file. */
interface BunFfi {
  dlopen(
    path: string,
    symbols: Record<string, { args: string[]; returns: string }>,
  ): { symbols: Libc };
  ptr(data: Uint8Array): unknown;
  read: { i32(pointer: unknown, offset: number): number };
}

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
/** No SIGPIPE, whatever the peer does. */
const MSG_NOSIGNAL = 0x4000;
/**
 * Never wait: the socket is blocking, and a receiver that stops reading
 * fills its queue (`net.unix.max_dgram_qlen`, 10) after which a plain
 * `sendto` would stop the event loop, and every connection with it.
 */
const MSG_DONTWAIT = 0x40;
/** What a failed `sendto` means here, by errno. */
const REASONS: Record<number, string> = {
  2: "no such socket",
  11: "its queue is full (nobody reads it)",
  13: "permission denied",
  111: "nobody receives on it",
};
/** `sun_path`'s size in `struct sockaddr_un`. */
const SUN_PATH = 108;

let loaded: Promise<{ libc: Libc; ptr: BunFfi["ptr"]; errno(): number }> | undefined;

function load() {
  // A specifier in a variable: `deno check` and the Node bundle leave it
  // alone; Bun (and the compiled executable) resolve the builtin at run time.
  const specifier = "bun:ffi";
  return loaded ??= (import(specifier) as Promise<BunFfi>).then((ffi) => {
    const libc = ffi.dlopen("libc.so.6", {
      socket: { args: ["i32", "i32", "i32"], returns: "i32" },
      sendto: { args: ["i32", "ptr", "u64", "i32", "ptr", "u32"], returns: "i64" },
      close: { args: ["i32"], returns: "i32" },
      __errno_location: { args: [], returns: "ptr" },
    }).symbols;
    return { ptr: ffi.ptr, libc, errno: () => ffi.read.i32(libc.__errno_location(), 0) };
  });
}

/**
 * `struct sockaddr_un` for a path, or an abstract name (`@name`, sent with
 * a leading NUL and without a trailing one), and its length.
 */
export function unixAddress(socket: string): { address: Uint8Array; length: number } {
  const abstract = socket.startsWith("@");
  const name = new TextEncoder().encode(abstract ? `\0${socket.slice(1)}` : socket);
  if (name.length === 0 || name.length >= SUN_PATH) {
    throw new RangeError(`notify socket "${socket}" must be 1 to ${SUN_PATH - 1} bytes long`);
  }
  const address = new Uint8Array(2 + SUN_PATH);
  new DataView(address.buffer).setUint16(0, AF_UNIX, true);
  address.set(name, 2);
  return { address, length: 2 + name.length + (abstract ? 0 : 1) };
}

/** Sends `message` to the Unix datagram socket `socket` (a path or `@name`). */
export async function bunNotify(socket: string, message: string): Promise<void> {
  const { address, length } = unixAddress(socket);
  const { libc, ptr, errno } = await load();
  const data = new TextEncoder().encode(message);
  const fd = libc.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new Error("cannot open a Unix datagram socket");
  let sent: number;
  let code = 0;
  try {
    const flags = MSG_NOSIGNAL | MSG_DONTWAIT;
    sent = Number(libc.sendto(fd, ptr(data), data.length, flags, ptr(address), length));
    if (sent < 0) code = errno();
  } finally {
    libc.close(fd);
  }
  if (sent !== data.length) {
    throw new Error(`cannot send to "${socket}": ${REASONS[code] ?? `errno ${code}`}`);
  }
}
