/**
 * Which protocol a client speaks, from its first bytes: TLS, HTTP/1, SSH or
 * PostgreSQL, so frontends sharing one address can take each its own. Pure:
 * bytes in, an answer out; the caller buffers and replays the bytes.
 *
 * @module
 */
import { MAX_CLIENT_HELLO_BYTES, parseClientHello } from "./client_hello.ts";
import { parseHttpHead } from "./http_head.ts";
import { parsePostgres } from "./postgres.ts";
import { parseSsh } from "./ssh.ts";

/** A protocol a frontend can ask for by its first bytes. */
export type Protocol = "tls" | "http" | "ssh" | "postgres";

/** Every {@linkcode Protocol}, in the order they are tried. */
export const PROTOCOLS: readonly Protocol[] = ["ssh", "tls", "postgres", "http"];

/** Which protocols an address's frontends ask about, and how deep. */
export interface Wanted {
  /** Read a ClientHello (server name and ALPN). */
  readonly tls: boolean;
  /** HTTP/1: not at all, the request line only, or on to the Host header. */
  readonly http: "no" | "line" | "host";
  /** Read an SSH identification prefix. */
  readonly ssh: boolean;
  /** Read a PostgreSQL first message. */
  readonly postgres: boolean;
}

/** What the first bytes said. protocol undefined: none of the wanted ones (garbage, another protocol). */
export interface Facts {
  /** The wanted protocol the bytes are, or undefined. */
  readonly protocol: Protocol | undefined;
  /** TLS: the SNI host name, lowercased, when the client sent one. */
  readonly serverName?: string;
  /** TLS: the ALPN protocol names in the client's order, when it sent the extension. */
  readonly alpn?: readonly string[];
  /** HTTP: the Host header's host, lowercased and without port, when wanted and found. */
  readonly httpHost?: string;
  /** Why the bytes are none of the wanted protocols, for the log. */
  readonly reason?: string;
}

/** The answer of {@linkcode detect}: wait for more bytes, or what they are. */
export type Detection =
  /**
   * Wait for more bytes; `need`: nothing can be decided before there are at
   * least this many in all (so a reader fed a byte at a time calls again
   * only then, and the cost stays linear); absent: one more byte may decide.
   */
  | { readonly status: "incomplete"; readonly need?: number }
  | { readonly status: "done"; readonly facts: Facts };

/**
 * The most bytes detection ever reads: a ClientHello spread over records
 * (17 KiB); the other protocols decide in fewer (HTTP within 8 KiB).
 */
export const MAX_DETECT_BYTES: number = MAX_CLIENT_HELLO_BYTES;

const INCOMPLETE: Detection = { status: "incomplete" };

/** RFC 9110 tchar, the characters an HTTP method may start with. */
function _tchar(code: number): boolean {
  return (code >= 0x30 && code <= 0x39) || (code >= 0x41 && code <= 0x5a) ||
    (code >= 0x61 && code <= 0x7a) || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(code));
}

/** Whether the bytes begin with a protocol's first signature byte(s), to pick whose reason to log. */
function _looksLike(protocol: Protocol, bytes: Uint8Array): boolean {
  switch (protocol) {
    case "tls":
      return bytes[0] === 0x16 && (bytes.length < 2 || bytes[1] === 3);
    case "ssh":
      return bytes[0] === 0x53 && bytes[1] === 0x53 && bytes[2] === 0x48 && bytes[3] === 0x2d;
    case "postgres":
      return bytes[0] === 0;
    case "http":
      return _tchar(bytes[0]!);
  }
}

function _none(reason: string): Detection {
  return { status: "done", facts: { protocol: undefined, reason } };
}

/**
 * Tells which of the wanted protocols the first bytes of a connection are.
 * Each protocol is recognised by its own signature (never because the others
 * failed), and only the wanted ones are examined. Incomplete as long as the
 * bytes could still become one of them; done with protocol undefined, and a
 * reason, as soon as none can (a malformed or oversized ClientHello too).
 * The answer depends only on the first {@linkcode MAX_DETECT_BYTES} bytes and,
 * once done, stays the same however many more bytes follow, so feeding the
 * bytes in any segments gives the answer of feeding them whole.
 *
 * @param bytes everything received on the connection so far (after any PROXY header)
 * @param wanted the protocols to look for
 * @returns incomplete, or done with the facts
 */
export function detect(bytes: Uint8Array, wanted: Wanted): Detection {
  const head = bytes.length > MAX_DETECT_BYTES ? bytes.subarray(0, MAX_DETECT_BYTES) : bytes;
  if (head.length === 0) return INCOMPLETE;
  const reasons = new Map<Protocol, string>();
  let waiting = false;
  // The fewest bytes before a waiting parser can decide: only a ClientHello knows more than "one more".
  let need = head.length + 1;
  // SSH first: its prefix is decided within 9 bytes, before an HTTP request
  // line (whose method could also start "SSH-") can be, so the order keeps
  // the answer the same for every way of splitting the bytes.
  if (wanted.ssh) {
    const ssh = parseSsh(head);
    if (ssh.status === "done") return { status: "done", facts: { protocol: "ssh" } };
    if (ssh.status === "incomplete") waiting = true;
    else reasons.set("ssh", ssh.reason);
  }
  if (wanted.tls) {
    const hello = parseClientHello(head);
    if (hello.status === "done") {
      const facts: { protocol: Protocol; serverName?: string; alpn?: readonly string[] } = {
        protocol: "tls",
      };
      if (hello.serverName !== undefined) facts.serverName = hello.serverName;
      if (hello.alpn !== undefined) facts.alpn = hello.alpn;
      return { status: "done", facts };
    }
    if (hello.status === "incomplete") {
      need = waiting ? need : hello.need ?? need;
      waiting = true;
    } else reasons.set("tls", hello.reason);
  }
  if (wanted.postgres) {
    const postgres = parsePostgres(head);
    if (postgres.status === "done") return { status: "done", facts: { protocol: "postgres" } };
    if (postgres.status === "incomplete") {
      waiting = true;
      need = head.length + 1;
    } else reasons.set("postgres", postgres.reason);
  }
  if (wanted.http !== "no") {
    const http = parseHttpHead(head, wanted.http === "host");
    if (http.status === "done") {
      return {
        status: "done",
        facts: http.host === undefined
          ? { protocol: "http" }
          : { protocol: "http", httpHost: http.host },
      };
    }
    if (http.status === "incomplete") {
      waiting = true;
      need = head.length + 1;
    } else reasons.set("http", http.reason);
  }
  if (waiting) {
    if (head.length < MAX_DETECT_BYTES) {
      return need > head.length + 1
        ? { status: "incomplete", need: Math.min(need, MAX_DETECT_BYTES) }
        : INCOMPLETE;
    }
    return _none(`no protocol recognised in the first ${MAX_DETECT_BYTES} bytes`);
  }
  if (reasons.size === 0) return _none("no protocol is detected on this address");
  for (const [protocol, reason] of reasons) {
    if (_looksLike(protocol, head)) return _none(reason);
  }
  const first = `0x${head[0]!.toString(16).padStart(2, "0")}`;
  return _none(`not ${[...reasons.keys()].join(", ")}: first byte ${first}`);
}
