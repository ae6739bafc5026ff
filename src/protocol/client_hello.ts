/**
 * The TLS ClientHello, read just far enough to find the server name (SNI)
 * and the application protocols (ALPN) a client asks for, so a backend can
 * be chosen before any TLS is spoken.
 * Pure: it parses bytes, reassembling the hello across records.
 *
 * @module
 */

/** The answer of {@linkcode parseClientHello} for the bytes received so far. */
export type HelloParse =
  /**
   * A prefix of a possibly valid hello: wait for more bytes. `need`: the
   * answer stays incomplete until there are at least this many bytes in all
   * (the end of a record, or of the hello), so a reader fed byte by byte can
   * skip the calls in between; absent: one more byte may decide.
   */
  | { readonly status: "incomplete"; readonly need?: number }
  /** Not TLS, or not a ClientHello we accept; `reason` says why, for logs. */
  | { readonly status: "invalid"; readonly reason: string }
  /**
   * A whole ClientHello; `serverName` is its SNI host name, lowercased, or
   * undefined without one; `alpn` the protocol names of its ALPN extension
   * in the client's order (each byte one Latin-1 character, so any name
   * round-trips), or undefined without the extension.
   */
  | {
    readonly status: "done";
    readonly serverName: string | undefined;
    readonly alpn: readonly string[] | undefined;
  };

/**
 * The largest ClientHello handshake message we accept, its 4-byte header
 * included: one full record's worth (2^14). Hellos in the wild take 200 to
 * 600 bytes, about 1.8 KB with a post-quantum key share (X25519MLKEM768), so
 * this is ample headroom while bounding what one connection makes us buffer.
 */
export const MAX_CLIENT_HELLO_MESSAGE_BYTES = 16_384;

/**
 * The most bytes we read looking for the hello: the largest message plus
 * 1 KiB of 5-byte record headers, room for it split into 200 records (a
 * sender may fragment it at will; real ones use one or two).
 */
export const MAX_CLIENT_HELLO_BYTES: number = MAX_CLIENT_HELLO_MESSAGE_BYTES + 1024;

const HANDSHAKE = 22;
const CLIENT_HELLO = 1;
const SERVER_NAME = 0;
const HOST_NAME = 0;
const ALPN = 16;
const MAX_RECORD = 16_384;
const INCOMPLETE: HelloParse = { status: "incomplete" };

function _invalid(reason: string): HelloParse {
  return { status: "invalid", reason };
}

function _malformed(detail: string): HelloParse {
  return _invalid(`malformed ClientHello: ${detail}`);
}

function _hex(byte: number): string {
  return `0x${byte.toString(16).padStart(2, "0")}`;
}

/** The first `length` bytes of the parts as one array, copying only when they span parts. */
function _join(parts: readonly Uint8Array[], length: number): Uint8Array {
  if (parts[0]!.length >= length) return parts[0]!.subarray(0, length);
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    const take = Math.min(part.length, length - at);
    out.set(part.subarray(0, take), at);
    at += take;
    if (at === length) break;
  }
  return out;
}

/**
 * Finds the server name in a ClientHello arriving as TLS records: each a
 * handshake record (type 22, version 3.x, at most 2^14 bytes), together
 * carrying one ClientHello, possibly fragmented. Every length in the hello is
 * checked against its container; SSLv2-style hellos are refused.
 *
 * @param bytes everything received on the connection so far
 * @returns incomplete, invalid with a reason, or done with the server name
 */
export function parseClientHello(bytes: Uint8Array): HelloParse {
  if (bytes.length === 0) return INCOMPLETE;
  if (bytes[0] !== HANDSHAKE) {
    const sslv2 = (bytes[0]! & 0x80) !== 0 ? " (an SSLv2-style hello)" : "";
    return _invalid(`not TLS: first byte ${_hex(bytes[0]!)}${sslv2}`);
  }
  const parts: Uint8Array[] = [];
  let collected = 0;
  let messageEnd = -1; // the handshake message's size, header included, once known
  for (let at = 0;;) {
    if (at < bytes.length && bytes[at] !== HANDSHAKE) {
      return _malformed(`a record of type ${bytes[at]} came before the hello ended`);
    }
    if (at + 1 < bytes.length && bytes[at + 1] !== 3) {
      return at === 0
        ? _invalid(`not TLS: record version ${bytes[at + 1]}.${bytes[at + 2] ?? "x"}`)
        : _malformed(`record version major ${bytes[at + 1]}`);
    }
    if (at + 5 > bytes.length) return INCOMPLETE;
    const length = bytes[at + 3]! << 8 | bytes[at + 4]!;
    if (length > MAX_RECORD) return _malformed(`a record of ${length} bytes, more than 2^14`);
    if (length === 0) return _malformed("an empty handshake record");
    const wanted = messageEnd < 0 ? length : Math.min(length, messageEnd - collected);
    if (at + 5 + wanted > MAX_CLIENT_HELLO_BYTES) {
      return _invalid(`ClientHello spread over more than ${MAX_CLIENT_HELLO_BYTES} bytes`);
    }
    const part = bytes.subarray(at + 5, at + 5 + length);
    parts.push(part);
    collected += part.length;
    if (collected > 0 && parts[0]![0] !== CLIENT_HELLO) {
      return _malformed(`the first handshake message has type ${parts[0]![0]}, not 1`);
    }
    if (messageEnd < 0 && collected >= 4) {
      const head = _join(parts, 4);
      messageEnd = 4 + (head[1]! << 16 | head[2]! << 8 | head[3]!);
      if (messageEnd > MAX_CLIENT_HELLO_MESSAGE_BYTES) {
        return _invalid(`ClientHello larger than ${MAX_CLIENT_HELLO_MESSAGE_BYTES} bytes`);
      }
      if (
        at + 5 + Math.min(length, messageEnd - (collected - part.length)) > MAX_CLIENT_HELLO_BYTES
      ) {
        return _invalid(`ClientHello spread over more than ${MAX_CLIENT_HELLO_BYTES} bytes`);
      }
    }
    if (messageEnd >= 0 && collected >= messageEnd) {
      return _helloBody(_join(parts, messageEnd).subarray(4));
    }
    if (part.length < length) {
      // Nothing is decided before the record, the hello's 4-byte header or the hello ends.
      const before = collected - part.length;
      const until = collected === 0 ? 1 : messageEnd < 0 ? 4 - before : messageEnd - before;
      return { status: "incomplete", need: at + 5 + Math.min(length, until) };
    }
    at += 5 + length;
  }
}

/** Walks a whole ClientHello body (after the handshake header) to its server name. */
function _helloBody(body: Uint8Array): HelloParse {
  const end = body.length;
  if (end < 2 + 32 + 1) return _malformed("too short for version, random and session id");
  if (body[0] !== 3) return _malformed(`legacy_version ${body[0]}.${body[1]}`);
  let at = 34;
  const sessionId = body[at]!;
  if (sessionId > 32) return _malformed(`a session id of ${sessionId} bytes, more than 32`);
  at += 1 + sessionId;
  if (at + 2 > end) return _malformed("no cipher suites");
  const suites = body[at]! << 8 | body[at + 1]!;
  if (suites < 2 || suites % 2 !== 0) return _malformed(`cipher suites of ${suites} bytes`);
  at += 2 + suites;
  if (at + 1 > end) return _malformed("cipher suites run past the message");
  const compression = body[at]!;
  if (compression < 1) return _malformed("no compression methods");
  at += 1 + compression;
  if (at > end) return _malformed("compression methods run past the message");
  if (at === end) return { status: "done", serverName: undefined, alpn: undefined };
  if (at + 2 > end) return _malformed("a truncated extensions length");
  const extensionsEnd = at + 2 + (body[at]! << 8 | body[at + 1]!);
  if (extensionsEnd !== end) return _malformed("the extensions do not fill the message");
  at += 2;
  const seen = new Set<number>();
  let serverName: string | undefined;
  let alpn: string[] | undefined;
  while (at < end) {
    if (at + 4 > end) return _malformed("a truncated extension header");
    const type = body[at]! << 8 | body[at + 1]!;
    const dataEnd = at + 4 + (body[at + 2]! << 8 | body[at + 3]!);
    if (dataEnd > end) return _malformed(`extension ${type} runs past the message`);
    if (seen.has(type)) return _malformed(`extension ${type} appears twice`);
    seen.add(type);
    if (type === SERVER_NAME) {
      const name = _serverName(body.subarray(at + 4, dataEnd));
      if (typeof name !== "string" && name !== undefined) return name;
      serverName = name;
    } else if (type === ALPN) {
      const names = _alpn(body.subarray(at + 4, dataEnd));
      if (!Array.isArray(names)) return names;
      alpn = names;
    }
    at = dataEnd;
  }
  return { status: "done", serverName, alpn };
}

/** The protocol names in an ALPN extension's data (RFC 7301 3.1), or why it is malformed. */
function _alpn(data: Uint8Array): string[] | HelloParse {
  if (data.length < 2) return _malformed("an ALPN extension too short for its list");
  const end = data.length;
  if (2 + (data[0]! << 8 | data[1]!) !== end) {
    return _malformed("the ALPN list does not fill its extension");
  }
  if (end === 2) return _malformed("an empty ALPN list");
  const names: string[] = [];
  for (let at = 2; at < end;) {
    const length = data[at]!;
    if (length === 0) return _malformed("an empty ALPN protocol name");
    if (at + 1 + length > end) return _malformed("an ALPN protocol name runs past its list");
    names.push(String.fromCharCode(...data.subarray(at + 1, at + 1 + length)));
    at += 1 + length;
  }
  return names;
}

/** The host name in a server_name extension's data, undefined without one, or why it is malformed. */
function _serverName(data: Uint8Array): string | undefined | HelloParse {
  if (data.length < 2) return _malformed("a server_name extension too short for its list");
  const end = data.length;
  if (2 + (data[0]! << 8 | data[1]!) !== end) {
    return _malformed("the server_name list does not fill its extension");
  }
  if (end === 2) return _malformed("an empty server_name list");
  let host: string | undefined;
  for (let at = 2; at < end;) {
    if (at + 3 > end) return _malformed("a truncated server_name entry");
    const type = data[at]!;
    const nameEnd = at + 3 + (data[at + 1]! << 8 | data[at + 2]!);
    if (nameEnd > end) return _malformed("a server name runs past its list");
    if (type === HOST_NAME) {
      if (host !== undefined) return _malformed("two host names in server_name");
      const name = _hostName(data.subarray(at + 3, nameEnd));
      if (name === undefined) return _malformed("the server name is not a plausible host name");
      host = name;
    }
    at = nameEnd;
  }
  return host;
}

/** A host name lowercased without its trailing dot, or undefined unless 1 to 253 printable ASCII bytes. */
function _hostName(bytes: Uint8Array): string | undefined {
  const length = bytes.length > 0 && bytes[bytes.length - 1] === 0x2e
    ? bytes.length - 1
    : bytes.length;
  if (length < 1 || length > 253) return undefined;
  let name = "";
  for (let i = 0; i < length; i++) {
    const code = bytes[i]!;
    if (code < 0x21 || code > 0x7e) return undefined;
    name += String.fromCharCode(code >= 0x41 && code <= 0x5a ? code + 0x20 : code);
  }
  return name;
}
