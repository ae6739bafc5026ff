/**
 * A small HTTP/1.1 server over {@linkcode Net.listen}, for the admin
 * listener on a runtime whose own server cannot bound how long a request
 * takes to arrive: `Deno.serve` (Deno 2.9) keeps a connection that sent half
 * a request head open for good, and stops for good at the first accept that
 * fails (out of file descriptors), taking the process with it. Built on the
 * adapter's own listener, it shares its pause when descriptors run out.
 *
 * One request per connection (`connection: close`), a head of at most
 * 16 KiB, a body of at most 1 MiB given by `content-length` (no chunked
 * requests: 411), and {@linkcode HTTP_REQUEST_TIMEOUT_MS} for the request to
 * arrive, and again for the answer to be taken, before the connection is
 * reset. Enough for the admin API, a dashboard and a Prometheus scrape.
 *
 * @module
 */
import {
  type Conn,
  HTTP_REQUEST_TIMEOUT_MS,
  type HttpServeOptions,
  type HttpServer,
  type Net,
} from "./types.ts";

/** The longest request head taken (request line and headers). */
const MAX_HEAD_BYTES = 16 * 1024;
/** The longest request body taken. */
const MAX_BODY_BYTES = 1024 * 1024;

const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\/[^\s]*) HTTP\/1\.[01]$/;
const HEADER_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*(.*?)[ \t]*$/;
const HOST = /^[A-Za-z0-9.\-_]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/;
const HEAD_END = new Uint8Array([13, 10, 13, 10]);
/** Reason phrases of the statuses this module sends itself. */
const REASONS: Record<number, string> = {
  400: "Bad Request",
  411: "Length Required",
  413: "Content Too Large",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
};

const encoder = new TextEncoder();

/**
 * Serves HTTP/1.1 on `net`'s listener (see the module's notes).
 *
 * @param net the runtime's sockets
 * @param options where to listen and what to answer
 * @param timeoutMs how long a request may take to arrive, and its answer to be taken
 * @returns the running server
 * @throws {Error} when the address cannot be bound (as `net.listen`)
 */
export function serveHttp1(
  net: Pick<Net, "listen">,
  options: HttpServeOptions,
  timeoutMs: number = HTTP_REQUEST_TIMEOUT_MS,
): HttpServer {
  const open = new Set<Conn>();
  const listener = net.listen({
    hostname: options.hostname,
    port: options.port,
    onConnection: (conn) => new Exchange(conn, options.fetch, open, timeoutMs),
  });
  return {
    address: listener.address,
    close() {
      listener.close();
      for (const conn of open) conn.reset();
      return Promise.resolve();
    },
  };
}

/** One connection: reads one request, answers it, closes. */
class Exchange {
  readonly #conn: Conn;
  readonly #fetch: HttpServeOptions["fetch"];
  readonly #open: Set<Conn>;
  #chunks: Uint8Array[] = [];
  #length = 0;
  /** The head, once read; then the body's expected length. */
  #head: { method: string; target: string; headers: Headers; bodyLength: number } | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #done = false;
  readonly #timeoutMs: number;

  constructor(
    conn: Conn,
    fetch: HttpServeOptions["fetch"],
    open: Set<Conn>,
    timeoutMs: number,
  ) {
    this.#conn = conn;
    this.#timeoutMs = timeoutMs;
    this.#fetch = fetch;
    this.#open = open;
    open.add(conn);
    this.#arm();
    conn.setHandlers({
      data: (chunk) => this.#data(chunk),
      end: () => this.#ended(),
      drain() {},
      close: () => {
        this.#done = true;
        this.#disarm();
        open.delete(conn);
      },
    });
  }

  /** Resets the connection unless it finishes within the timeout. */
  #arm(): void {
    this.#disarm();
    this.#timer = setTimeout(() => this.#conn.reset(), this.#timeoutMs);
  }
  #disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #data(chunk: Uint8Array): void {
    if (this.#done) return;
    this.#chunks.push(chunk.slice());
    this.#length += chunk.length;
    if (this.#head === undefined) {
      const bytes = this.#bytes();
      const end = indexOf(bytes, HEAD_END);
      if (end < 0) {
        if (this.#length > MAX_HEAD_BYTES) this.#fail(431, "request header fields too large");
        return;
      }
      if (end > MAX_HEAD_BYTES) return this.#fail(431, "request header fields too large");
      const head = parseHead(new TextDecoder().decode(bytes.subarray(0, end)));
      if (typeof head === "number") return this.#fail(head, "cannot parse the request");
      this.#head = head;
      this.#chunks = [bytes.subarray(end + 4)];
      this.#length = this.#chunks[0]!.length;
      if (head.bodyLength > 0 && /100-continue/i.test(head.headers.get("expect") ?? "")) {
        this.#conn.write(encoder.encode("HTTP/1.1 100 Continue\r\n\r\n"));
      }
    }
    if (this.#length >= this.#head.bodyLength) this.#answer();
  }

  #ended(): void {
    // The client finished sending before its request was whole.
    if (!this.#done) this.#fail(400, "incomplete request");
  }

  #bytes(): Uint8Array {
    if (this.#chunks.length === 1) return this.#chunks[0]!;
    const out = new Uint8Array(this.#length);
    let offset = 0;
    for (const chunk of this.#chunks) {
      out.set(chunk, offset);
      offset += chunk.length;
    }
    this.#chunks = [out];
    return out;
  }

  async #answer(): Promise<void> {
    const head = this.#head!;
    this.#done = true;
    this.#disarm();
    this.#conn.pause();
    const body = head.bodyLength > 0 ? this.#bytes().slice(0, head.bodyLength) : undefined;
    let request: Request | undefined;
    try {
      const host = head.headers.get("host") ?? "localhost";
      if (!HOST.test(host)) throw new TypeError("not a host");
      const url = new URL(head.target, `http://${host}`);
      request = new Request(url, { method: head.method, headers: head.headers, body });
    } catch {
      // A target or Host that makes no URL: the client's mistake.
    }
    let response: Response;
    try {
      response = request === undefined
        ? new Response("bad request\n", { status: 400 })
        : await this.#fetch(request, this.#conn.remoteAddress);
    } catch {
      response = new Response(null, { status: 500 });
    }
    let payload: Uint8Array;
    try {
      payload = new Uint8Array(await response.arrayBuffer());
    } catch {
      response = new Response(null, { status: 500 });
      payload = new Uint8Array(0);
    }
    this.#send(response, head.method === "HEAD" ? undefined : payload, payload.length);
  }

  #fail(status: number, text: string): void {
    this.#done = true;
    this.#disarm();
    this.#conn.pause();
    const payload = encoder.encode(`${text}\n`);
    this.#send(new Response(null, { status }), payload, payload.length);
  }

  #send(response: Response, payload: Uint8Array | undefined, length: number): void {
    const reason = response.statusText || REASONS[response.status] || "";
    let head = `HTTP/1.1 ${response.status} ${reason}\r\n`;
    for (const [name, value] of response.headers) {
      if (name === "content-length" || name === "connection" || name === "transfer-encoding") {
        continue;
      }
      head += `${name}: ${value}\r\n`;
    }
    head += `content-length: ${length}\r\nconnection: close\r\n\r\n`;
    this.#conn.write(encoder.encode(head));
    if (payload !== undefined && payload.length > 0) this.#conn.write(payload);
    this.#conn.close();
    // A client that does not take the answer is reset after the timeout.
    this.#arm();
  }
}

/**
 * Parses a request head (without its final empty line).
 *
 * @returns the request's parts, or the HTTP status that refuses it
 */
function parseHead(
  text: string,
): { method: string; target: string; headers: Headers; bodyLength: number } | number {
  const [requestLine, ...lines] = text.split("\r\n");
  const request = REQUEST_LINE.exec(requestLine ?? "");
  if (request === null) return 400;
  const headers = new Headers();
  try {
    for (const line of lines) {
      const header = HEADER_LINE.exec(line);
      if (header === null) return 400;
      headers.append(header[1]!, header[2]!);
    }
  } catch {
    return 400; // a value the Headers class refuses
  }
  if (headers.has("transfer-encoding")) return 411;
  const lengthText = headers.get("content-length");
  let bodyLength = 0;
  if (lengthText !== null) {
    if (!/^\d{1,8}$/.test(lengthText)) return 400;
    bodyLength = Number(lengthText);
    if (bodyLength > MAX_BODY_BYTES) return 413;
  }
  const method = request[1]!;
  if ((method === "GET" || method === "HEAD") && bodyLength > 0) return 400;
  return { method, target: request[2]!, headers, bodyLength };
}

/** Where `needle` starts in `haystack`, or -1. */
function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (haystack[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}
