/**
 * Makes a Unix socket's path ready to listen on: a socket file left behind
 * by a process that died without removing it is taken away, and anything
 * else at the path (a live socket, a regular file) is refused.
 *
 * @module
 */
import { lstat, unlink } from "node:fs/promises";
import type { Net } from "../../runtime/types.ts";

/** Codes that say nobody listens on a socket file (or it just went away). */
const NOBODY_LISTENS = new Set(["ECONNREFUSED", "ENOENT"]);

function errorWithCode(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

/**
 * Removes a stale Unix socket file at `path`, so that a listen there can
 * bind. A socket file is stale when connecting to it is refused.
 *
 * @param net the adapter, to try connecting
 * @param path the socket's path
 * @throws {Error} with `code` `EEXIST` when the path exists and is not a socket
 * @throws {Error} with `code` `EADDRINUSE` when another process listens on it
 * @throws {Error} what `lstat`, `connect` or `unlink` threw for anything else
 *
 * @example
 * ```ts
 * import { prepareUnixSocket } from "mini-balancer";
 * import { net } from "mini-balancer/node";
 *
 * // Removes a stale /run/lb.sock; throws (code EADDRINUSE) when a live process listens on it.
 * await prepareUnixSocket(net, "/run/lb.sock");
 * ```
 */
export async function prepareUnixSocket(net: Net, path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = (await lstat(path)).isSocket();
  } catch (error) {
    if ((error as { code?: unknown }).code === "ENOENT") return;
    throw error;
  }
  if (!isSocket) throw errorWithCode(`${path} exists and is not a socket`, "EEXIST");
  try {
    const conn = await net.connect({ hostname: "", port: 0, path });
    conn.close();
  } catch (error) {
    if (!NOBODY_LISTENS.has((error as { code?: unknown }).code as string)) throw error;
    await unlink(path).catch((error) => {
      if (error.code !== "ENOENT") throw error;
    });
    return;
  }
  throw errorWithCode(`${path} is in use: another process listens on it`, "EADDRINUSE");
}
