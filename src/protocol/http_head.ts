/**
 * The head of an HTTP/1.x request, read just far enough to tell that a
 * client speaks HTTP/1 and, when asked, which `Host` it names, so a backend
 * can be chosen by layer-4 routing (the bytes are forwarded untouched).
 * Pure: it parses bytes.
 *
 * @module
 */

/** The answer of {@linkcode parseHttpHead} for the bytes received so far. */
export type HttpHeadParse =
  /** A prefix of a possibly valid head: wait for more bytes. */
  | { readonly status: "incomplete" }
  /** Not an HTTP/1.0 or 1.1 request head; `reason` says why, for logs. */
  | { readonly status: "invalid"; readonly reason: string }
  /**
   * An HTTP/1 request line, and when the host was wanted the `Host` header or
   * the end of the head; `host` is the Host header's host lowercased, its
   * port and any trailing dot removed, an IPv6 literal kept in brackets
   * (`[::1]`); undefined when not wanted, absent, empty, or not found in the
   * first {@linkcode MAX_HTTP_HEAD_BYTES}.
   */
  | { readonly status: "done"; readonly host: string | undefined };

/**
 * The most bytes of a head we read looking for `Host`: nginx's default
 * `large_client_header_buffers` size. A request line must end within it.
 */
export const MAX_HTTP_HEAD_BYTES = 8192;

/** The longest method we accept: the registered ones take at most 17 bytes. */
const MAX_METHOD = 32;
const SP = 0x20;
const HTAB = 0x09;
const CR = 0x0d;
const LF = 0x0a;
const COLON = 0x3a;
const VERSION = "HTTP/1.";
const INCOMPLETE: HttpHeadParse = { status: "incomplete" };

/** RFC 9110 5.6.2 tchar: the characters of a method or a field name. */
const TCHAR: readonly boolean[] = Array.from(
  { length: 256 },
  (_, code) =>
    (code >= 0x30 && code <= 0x39) || (code >= 0x41 && code <= 0x5a) ||
    (code >= 0x61 && code <= 0x7a) || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(code)),
);

function _invalid(reason: string): HttpHeadParse {
  return { status: "invalid", reason: `not an HTTP/1 request: ${reason}` };
}

function _describe(byte: number): string {
  return byte >= 0x21 && byte <= 0x7e
    ? `"${String.fromCharCode(byte)}"`
    : `0x${byte.toString(16).padStart(2, "0")}`;
}

/**
 * Reads an HTTP/1.x request head: `METHOD SP request-target SP HTTP/1.0|1.1`
 * ended by CRLF (or a bare LF, as nginx accepts), then, when `wantHost`, the
 * header lines up to the complete `Host` header or the empty line. Strict:
 * every byte is checked as it arrives, so anything else (HTTP/2's preface,
 * a folded header line, a control character) is invalid as soon as it shows.
 * The request-target's authority (absolute form) is not used.
 *
 * @param bytes everything received on the connection so far
 * @param wantHost whether to read on to the Host header
 * @returns incomplete, invalid with a reason, or done with the host
 */
export function parseHttpHead(bytes: Uint8Array, wantHost: boolean): HttpHeadParse {
  const end = Math.min(bytes.length, MAX_HTTP_HEAD_BYTES);
  let at = 0;
  // The method: 1 to 32 tchars, then one space.
  for (;; at++) {
    if (at === end) return _cut(bytes, false);
    const byte = bytes[at]!;
    if (byte === SP && at > 0) break;
    if (!TCHAR[byte]) return _invalid(`${_describe(byte)} in the method`);
    if (at === MAX_METHOD) return _invalid(`a method longer than ${MAX_METHOD} bytes`);
  }
  // The request-target: visible ASCII, then one space.
  const targetStart = ++at;
  for (;; at++) {
    if (at === end) return _cut(bytes, false);
    const byte = bytes[at]!;
    if (byte === SP && at > targetStart) break;
    if (byte < 0x21 || byte > 0x7e) return _invalid(`${_describe(byte)} in the request-target`);
  }
  at++;
  // The version, then the line's end.
  for (let i = 0; i < VERSION.length + 1; i++, at++) {
    if (at === end) return _cut(bytes, false);
    const byte = bytes[at]!;
    const ok = i < VERSION.length ? byte === VERSION.charCodeAt(i) : byte === 0x30 || byte === 0x31;
    if (!ok) return _invalid(`${_describe(byte)} in the version (HTTP/1.0 or HTTP/1.1 expected)`);
  }
  const line = _lineEnd(bytes, at, end);
  if (typeof line !== "number") return line.status === "incomplete" ? _cut(bytes, false) : line;
  at = line;
  if (!wantHost) return { status: "done", host: undefined };
  // The header lines, up to Host or the empty line.
  for (;;) {
    if (at === end) return _cut(bytes, true);
    if (bytes[at] === CR || bytes[at] === LF) {
      const empty = _lineEnd(bytes, at, end);
      if (typeof empty === "number") return { status: "done", host: undefined };
      return empty.status === "incomplete" ? _cut(bytes, true) : empty;
    }
    const nameStart = at;
    for (;; at++) {
      if (at === end) return _cut(bytes, true);
      const byte = bytes[at]!;
      if (byte === COLON && at > nameStart) break;
      if (!TCHAR[byte]) return _invalid(`${_describe(byte)} in a header field name`);
    }
    const isHost = at - nameStart === 4 && _isHost(bytes, nameStart);
    const valueStart = ++at;
    for (;; at++) {
      if (at === end) return _cut(bytes, true);
      const byte = bytes[at]!;
      if (byte === CR || byte === LF) break;
      if (byte !== HTAB && (byte < 0x20 || byte === 0x7f)) {
        return _invalid(`${_describe(byte)} in a header field value`);
      }
    }
    const valueEnd = at;
    const next = _lineEnd(bytes, at, end);
    if (typeof next !== "number") return next.status === "incomplete" ? _cut(bytes, true) : next;
    at = next;
    if (isHost) return _host(bytes.subarray(valueStart, valueEnd));
  }
}

/** Where the line ending at `at` (CRLF or LF) stops, or incomplete/invalid. */
function _lineEnd(bytes: Uint8Array, at: number, end: number): number | HttpHeadParse {
  if (at === end) return INCOMPLETE;
  if (bytes[at] === LF) return at + 1;
  if (bytes[at] !== CR) return _invalid(`${_describe(bytes[at]!)} where a line should end`);
  if (at + 1 === end) return INCOMPLETE;
  if (bytes[at + 1] === LF) return at + 2;
  return _invalid("a CR without LF");
}

/**
 * What running out of bytes means: wait for more below the limit; past it a
 * head whose request line is whole is HTTP with no host found, a request
 * line that has not ended is not something we accept.
 */
function _cut(bytes: Uint8Array, lineDone: boolean): HttpHeadParse {
  if (bytes.length < MAX_HTTP_HEAD_BYTES) return INCOMPLETE;
  if (lineDone) return { status: "done", host: undefined };
  return _invalid(`a request line longer than ${MAX_HTTP_HEAD_BYTES} bytes`);
}

/** Whether the 4 bytes at `at` spell "host" in any case. */
function _isHost(bytes: Uint8Array, at: number): boolean {
  return (bytes[at]! | 0x20) === 0x68 && (bytes[at + 1]! | 0x20) === 0x6f &&
    (bytes[at + 2]! | 0x20) === 0x73 && (bytes[at + 3]! | 0x20) === 0x74;
}

/** A Host value trimmed, lowercased, without port or trailing dot; invalid unless uri-host [":" port]. */
function _host(value: Uint8Array): HttpHeadParse {
  let start = 0;
  let end = value.length;
  while (start < end && (value[start] === SP || value[start] === HTAB)) start++;
  while (end > start && (value[end - 1] === SP || value[end - 1] === HTAB)) end--;
  const text = String.fromCharCode(...value.subarray(start, end)).toLowerCase();
  if (text === "") return { status: "done", host: undefined };
  // RFC 3986: an IP-literal in brackets, or a reg-name / IPv4 of unreserved, pct-encoded and sub-delims.
  const match = /^(\[[0-9a-z.:%_~!$&'()*+,;=-]+\]|[0-9a-z._~%!$&'()*+,;=-]+)(?::[0-9]*)?$/.exec(
    text,
  );
  if (match === null) return _invalid("a Host header that is not host[:port]");
  let host = match[1]!;
  if (host.length > 1 && host.endsWith(".") && !host.startsWith("[")) host = host.slice(0, -1);
  return { status: "done", host };
}
