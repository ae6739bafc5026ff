/**
 * The start of an SSH client's identification string (RFC 4253 4.2), enough
 * to tell SSH from other protocols on a shared port. Pure: it reads bytes.
 *
 * @module
 */

/** The answer of {@linkcode parseSsh} for the bytes received so far. */
export type SshParse =
  /** A prefix of `SSH-2.0-` or `SSH-1.99-`: wait for more bytes. */
  | { readonly status: "incomplete" }
  /** Not an SSH identification string; `reason` says why, for logs. */
  | { readonly status: "invalid"; readonly reason: string }
  /** An SSH 2 client (`SSH-2.0-`, or `SSH-1.99-` for one that also speaks 1); `length` bytes were read. */
  | { readonly status: "done"; readonly version: "2.0" | "1.99"; readonly length: number };

const PREFIXES: readonly ["2.0" | "1.99", string][] = [["2.0", "SSH-2.0-"], ["1.99", "SSH-1.99-"]];

/**
 * Reads the identification prefix a client sends first: `SSH-2.0-` (or
 * `SSH-1.99-`). The rest of the line (software version, comments) is not
 * examined. SSH 1 alone (`SSH-1.5-`) is invalid: no server speaks it today.
 *
 * @param bytes everything received on the connection so far
 * @returns incomplete, invalid with a reason, or done with the version
 */
export function parseSsh(bytes: Uint8Array): SshParse {
  let possible = false;
  for (const [version, prefix] of PREFIXES) {
    const n = Math.min(bytes.length, prefix.length);
    let match = true;
    for (let i = 0; i < n && match; i++) match = bytes[i] === prefix.charCodeAt(i);
    if (!match) continue;
    if (n === prefix.length) return { status: "done", version, length: n };
    possible = true;
  }
  if (possible) return { status: "incomplete" };
  return { status: "invalid", reason: "not SSH: no SSH-2.0- or SSH-1.99- identification" };
}
