/**
 * First bytes of each protocol for the detector's tests: real ClientHellos,
 * ClientHellos built to order, HTTP heads, SSH banners, PostgreSQL messages.
 *
 * @module
 */
import type { Wanted } from "../../../src/protocol/detect.ts";

/** Latin-1 bytes of a string, so "\r\n" and arbitrary bytes are written plainly. */
export function latin1(text: string): Uint8Array {
  return Uint8Array.from(text, (char) => char.charCodeAt(0));
}

/** Bytes from hex. */
export function hex(text: string): Uint8Array {
  return Uint8Array.from(text.match(/../g) ?? [], (pair) => parseInt(pair, 16));
}

/** The parts one after another. */
export function concat(...parts: ArrayLike<number>[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

const u16 = (n: number) => [n >> 8 & 255, n & 255];
const u24 = (n: number) => [n >> 16 & 255, n >> 8 & 255, n & 255];

/**
 * `openssl s_client -connect 127.0.0.1:PORT -alpn h2,http/1.1 -servername a.test`
 * (OpenSSL 3.0.19), as a plain TCP listener received it: one record, TLS 1.3.
 */
export const OPENSSL_H2_HELLO = hex(
  "160301014501000141030311909f413fe245c4acc12b9277c8c1c9a6af4e520f5133c69cf2efa522ef4f6d20" +
    "3c203fe8659e77031a4a99944a5e83d225c957506c8e698d3fd0821720b44f2c003e130213031301c02cc030" +
    "009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d" +
    "003c0035002f00ff010000ba0000000b0009000006612e74657374000b000403000102000a00160014001d00" +
    "17001e0019001801000101010201030104002300000010000e000c02683208687474702f312e310016000000" +
    "170000000d002a0028040305030603080708080809080a080b0804080508060401050106010303030103020402" +
    "05020602002b0009080304030303020301002d00020101003300260024001d00204a61b28d706b0a726c1684" +
    "39224b0baf91d5fb3e5943746caa68c96822884c42",
);

/** `openssl s_client -alpn http/1.1 -servername b.test -tls1_2` (OpenSSL 3.0.19). */
export const OPENSSL_HTTP1_HELLO = hex(
  "16030100d5010000d103034c848ce0cc1fda5b8e59dc4827e8cb25144b663e59930a4b1248e69cadf8260000" +
    "0038c02cc030009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033" +
    "009d009c003d003c0035002f00ff010000700000000b0009000006622e74657374000b000403000102000a00" +
    "0c000a001d0017001e00190018002300000010000b000908687474702f312e310016000000170000000d002a" +
    "0028040305030603080708080809080a080b080408050806040105010601030303010302040205020602",
);

/** A TLS extension: type, length, data. */
export const extension = (type: number, data: ArrayLike<number>): number[] => [
  ...u16(type),
  ...u16(data.length),
  ...Array.from(data),
];

/** A server_name extension with one host name. */
export function sniExtension(name: string): number[] {
  const entry = [0, ...u16(name.length), ...latin1(name)];
  return extension(0, [...u16(entry.length), ...entry]);
}

/** An ALPN extension listing the names (RFC 7301). */
export function alpnExtension(...names: string[]): number[] {
  const list = names.flatMap((name) => [name.length, ...latin1(name)]);
  return extension(16, [...u16(list.length), ...list]);
}

/** A ClientHello handshake message (header included) with these extensions. */
export function helloMessage(extensions: number[][]): number[] {
  const flat = extensions.flat();
  const body = [
    3,
    3,
    ...new Array(32).fill(7),
    0,
    ...u16(2),
    0x13,
    0x01,
    1,
    0,
    ...u16(flat.length),
    ...flat,
  ];
  return [1, ...u24(body.length), ...body];
}

/** The message as TLS handshake records of at most `size` bytes each. */
export function records(message: ArrayLike<number>, size = 16384): Uint8Array {
  const parts: number[][] = [];
  const all = Array.from(message);
  for (let at = 0; at < all.length; at += size) {
    const chunk = all.slice(at, at + size);
    parts.push([22, 3, 1, ...u16(chunk.length), ...chunk]);
  }
  return concat(...parts);
}

/** A ClientHello in records, with a server name, ALPN names and padding (extension 21) as asked. */
export function hello(
  options: { sni?: string; alpn?: string[]; padding?: number; recordSize?: number } = {},
): Uint8Array {
  const extensions: number[][] = [];
  if (options.sni !== undefined) extensions.push(sniExtension(options.sni));
  if (options.alpn !== undefined) extensions.push(alpnExtension(...options.alpn));
  if (options.padding !== undefined) {
    extensions.push(extension(21, new Array(options.padding).fill(0)));
  }
  return records(helloMessage(extensions), options.recordSize);
}

/** The SSH banner of OpenSSH 9.6 on Ubuntu 24.04. */
export const SSH_BANNER = latin1("SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5\r\n");

/** What curl 8 sends for `curl --resolve h.test:8080:127.0.0.1 http://h.test:8080/`. */
export const CURL_HEAD = latin1(
  "GET / HTTP/1.1\r\nHost: h.test:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
);

/** libpq's SSLRequest (`sslmode=require`). */
export const PG_SSL_REQUEST = Uint8Array.of(0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f);

/** libpq's GSSENCRequest. */
export const PG_GSSENC_REQUEST = Uint8Array.of(0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30);

/** A CancelRequest: length 16, code, process id, secret key. */
export const PG_CANCEL = Uint8Array.of(
  0,
  0,
  0,
  16,
  0x04,
  0xd2,
  0x16,
  0x2e,
  0,
  0,
  0x30,
  0x39,
  1,
  2,
  3,
  4,
);

/** A protocol 3.0 StartupMessage for user "app", database "app" (`sslmode=disable`). */
export function pgStartup(): Uint8Array {
  const params = latin1("user\0app\0database\0app\0\0");
  const length = 8 + params.length;
  return concat(
    [length >>> 24, length >> 16 & 255, length >> 8 & 255, length & 255],
    [0, 3, 0, 0],
    params,
  );
}

/** Every protocol wanted, HTTP to the Host header. */
export const ALL: Wanted = { tls: true, http: "host", ssh: true, postgres: true };
